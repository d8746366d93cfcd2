/* Auditor console: vanilla JS, no dependencies, no external resources.
 * The page holds no data of its own: it calls the JSON API with the auditor key the user enters,
 * kept in sessionStorage (this tab only). */
(function () {
  "use strict";

  var KEY_STORAGE = "credit-decision.auditor-key";
  var ROLES_STORAGE = "credit-decision.roles";  // the roles the key holds among auditor and reviewer
  var SVG_NS = "http://www.w3.org/2000/svg";
  var state = { schema: null, record: null, blobs: {} };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    });
  }

  function append(node, children) {
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function fmt(value, digits) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return value.toFixed(digits === undefined ? 3 : digits);
  }

  function signed(value, digits) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return (value > 0 ? "+" : value < 0 ? "−" : "±") + Math.abs(value).toFixed(digits === undefined ? 3 : digits);
  }

  function humanize(name) {
    var text = String(name).replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function pill(decision, large) {
    return el("span", { "class": "pill pill-" + decision + (large ? " pill-lg" : ""), text: decision });
  }

  // ---- status, key and API --------------------------------------------------------------------------------

  function setStatus(message, isError) {
    var box = $("status");
    box.textContent = message || "";
    box.className = "status" + (isError ? " is-error" : "");
  }

  function apiKey() { return window.sessionStorage.getItem(KEY_STORAGE); }

  function ApiError(status, problem) {
    this.status = status;
    this.problem = problem || {};
    var detail = this.problem.detail || this.problem.title || ("HTTP " + status);
    var fields = (this.problem.errors || []).map(function (e) { return e.field + ": " + e.message; });
    this.message = detail + (fields.length ? " (" + fields.join("; ") + ")" : "");
  }

  function api(path, options) {
    options = options || {};
    var headers = { "Authorization": "Bearer " + (options.key || apiKey() || "") };
    if (options.accept) headers.Accept = options.accept;
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: options.method || "GET",
      headers: headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      credentials: "omit",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) {
          var problem = null;
          try { problem = JSON.parse(text); } catch (e) { problem = { detail: text.slice(0, 200) }; }
          if (response.status === 401 && !options.key) signOut("Your key was not accepted; sign in again.");
          throw new ApiError(response.status, problem);
        });
      }
      if (options.as === "blob") return response.blob();
      if (options.as === "text") return response.text();
      return response.json();
    });
  }

  function signOut(message) {
    window.sessionStorage.removeItem(KEY_STORAGE);
    window.sessionStorage.removeItem(ROLES_STORAGE);
    Object.keys(state.blobs).forEach(function (k) { URL.revokeObjectURL(state.blobs[k]); });
    state.blobs = {};
    route();
    if (message) $("signin-error").textContent = message;
  }

  function onSignIn(event) {
    event.preventDefault();
    var key = $("api-key").value.trim();
    var button = $("signin-button");
    $("signin-error").textContent = "";
    if (!key) return;
    button.disabled = true;
    api("/v1/me", { key: key }).then(function (me) {
      var roles = me.roles || [];
      var held = [roles.indexOf("auditor") >= 0, roles.indexOf("reviewer") >= 0];
      if (!held[0] && !held[1]) {
        $("signin-error").textContent = "This key holds neither the auditor nor the reviewer role.";
        return;
      }
      window.sessionStorage.setItem(KEY_STORAGE, key);
      window.sessionStorage.setItem(ROLES_STORAGE, (held[0] ? "auditor " : "") + (held[1] ? "reviewer" : ""));
      $("api-key").value = "";
      if (!location.hash || location.hash === "#/signin") location.hash = held[0] ? "#/decisions" : "#/reviews";
      else route();
    }).catch(function (error) {
      $("signin-error").textContent = error.status === 401 ? "This key is not valid." : ("Sign-in failed: " + error.message);
    }).then(function () { button.disabled = false; });
  }

  // ---- routing --------------------------------------------------------------------------------------------

  // the nav link marked current for each view
  var VIEWS = {
    "view-signin": null, "view-decisions": "nav-decisions", "view-decision": "nav-decisions",
    "view-report": "nav-report", "view-compare": "nav-compare", "view-events": "nav-events",
    "view-reviews": "nav-reviews"
  };

  function hasRole(role) {
    return (" " + (window.sessionStorage.getItem(ROLES_STORAGE) || "auditor") + " ").indexOf(" " + role + " ") >= 0;
  }

  function show(view) {
    Object.keys(VIEWS).forEach(function (id) {
      $(id).hidden = id !== view;
      if (VIEWS[id]) $(VIEWS[id]).removeAttribute("aria-current");
    });
    var signedIn = view !== "view-signin";
    $("nav").hidden = !signedIn;
    $("session").hidden = !signedIn;
    if (VIEWS[view]) $(VIEWS[view]).setAttribute("aria-current", "page");
  }

  function route() {
    setStatus("");
    var hash = location.hash || "#/decisions";
    if (!apiKey()) { show("view-signin"); $("api-key").focus(); return; }
    var auditor = hasRole("auditor"), reviewer = hasRole("reviewer");
    $("session-label").textContent = "Signed in with " + (auditor && reviewer ? "an auditor and reviewer key"
      : auditor ? "an auditor key" : "a reviewer key");
    ["nav-decisions", "nav-report", "nav-compare", "nav-events"].forEach(function (id) { $(id).hidden = !auditor; });
    $("nav-reviews").hidden = !reviewer;
    if (hash === "#/reviews" || !auditor) {
      if (!reviewer) { show("view-signin"); return; }
      if (hash !== "#/reviews") { location.hash = "#/reviews"; return; }
      show("view-reviews");
      openQueue();
      return;
    }
    var match = /^#\/decision\/([A-Za-z0-9_-]+)$/.exec(hash);
    if (match) { show("view-decision"); openDecision(match[1]); return; }
    if (hash === "#/report") { show("view-report"); return; }
    if (hash === "#/compare") { show("view-compare"); return; }
    if (hash === "#/events") { show("view-events"); search(LISTS.events, false); return; }  // always fresh
    show("view-decisions");
    if (LISTS.decisions.query === null) search(LISTS.decisions, false);
  }

  // ---- paged searches: decisions and admin audit events ------------------------------------------------------
  // Both endpoints page in chain order with an opaque cursor (`next_cursor`); "Load more" follows it.

  function searchParams(form, names) {
    var params = new URLSearchParams();
    names.forEach(function (name) {
      var value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    });
    var from = form.elements.from.value;
    var to = form.elements.to.value;
    if (from) params.set("from", from + "T00:00:00Z");
    if (to) params.set("to", to + "T00:00:00Z");
    params.set("limit", "25");
    return params;
  }

  var LISTS = {
    decisions: {
      path: "/v1/decisions", form: "search-form", body: "results-body", empty: "results-empty", more: "load-more",
      button: "search-button", what: "Search",
      filters: ["application_id", "decision", "risk_band", "reason_code", "model_version"],
      rows: function (item) { return [resultRow(item)]; },
      query: null, cursor: null, generation: 0
    },
    events: {
      path: "/v1/audit/events", form: "events-form", body: "events-body", empty: "events-empty", more: "events-more",
      button: "events-button", what: "Loading the admin actions", filters: ["kind"],
      rows: function (item) { return eventRows(item); },
      query: null, cursor: null, generation: 0
    }
  };

  function search(list, more) {
    if (more && !list.cursor) {  // no next page: never fetch page 1 again (it would duplicate the rows)
      $(list.more).hidden = true;
      return Promise.resolve();
    }
    if (!more) {
      list.query = searchParams($(list.form), list.filters);
      list.cursor = null;
      list.generation += 1;  // a page of an earlier search that arrives late is dropped
      clear($(list.body));
    }
    var generation = list.generation;
    var params = new URLSearchParams(list.query);
    if (more) params.set("cursor", list.cursor);
    var button = more ? $(list.more) : $(list.button);
    button.disabled = true;
    return api(list.path + "?" + params.toString()).then(function (body) {
      if (generation !== list.generation) return;
      var items = body.items || [];
      list.cursor = body.next_cursor || null;
      items.forEach(function (item) { append($(list.body), list.rows(item)); });
      $(list.empty).hidden = $(list.body).children.length > 0;
      $(list.more).hidden = !list.cursor;
    }).catch(function (error) {
      setStatus(list.what + " failed: " + error.message, true);
    }).then(function () { button.disabled = false; });
  }

  function resultRow(item) {
    var href = "#/decision/" + encodeURIComponent(item.decision_id);
    var created = String(item.created_at || "").replace("T", " ").replace(/\.\d+Z$/, "Z");
    var row = el("tr", { "data-decision-id": item.decision_id }, [
      el("td", {}, [el("a", { href: href, "aria-label": "Open decision " + item.decision_id, text: created })]),
      el("td", { "class": "mono", text: item.application_id }),
      el("td", {}, [pill(item.decision)]),
      el("td", { text: item.risk_band }),
      el("td", { "class": "num", text: item.score }),
      el("td", { text: (item.model_name || "") + " " + (item.model_version || "") }),
      el("td", {}, (item.reason_codes || []).map(function (code) { return el("span", { "class": "code", text: code }); })
        .reduce(function (acc, node) { if (acc.length) acc.push(" "); acc.push(node); return acc; }, []))
    ]);
    row.addEventListener("click", function (event) {
      if (event.target.tagName !== "A") location.hash = href;
    });
    return row;
  }

  // ---- the review queue (reviewer role) --------------------------------------------------------------------

  var queue = { cursor: null, generation: 0, codes: [], item: null };

  function openQueue() {
    queue.generation += 1;
    queue.cursor = null;
    queue.item = null;
    $("review-panel").hidden = true;
    clear($("queue-body"));
    api("/v1/reviews/codes").then(function (body) {
      queue.codes = body.codes || [];
      fillCodes();
    }).catch(function (error) { setStatus("Loading the justification codes failed: " + error.message, true); });
    return loadQueue(false);
  }

  function loadQueue(more) {
    var generation = queue.generation;
    var params = new URLSearchParams({ limit: "25" });
    if (more && queue.cursor) params.set("cursor", queue.cursor);
    $("queue-more").disabled = true;
    return api("/v1/reviews/queue?" + params.toString()).then(function (body) {
      if (generation !== queue.generation) return;
      (body.items || []).forEach(function (item) { $("queue-body").appendChild(queueRow(item)); });
      queue.cursor = body.next_cursor || null;
      $("queue-more").hidden = !queue.cursor;
      $("queue-empty").hidden = $("queue-body").children.length > 0;
    }).catch(function (error) {
      setStatus("Loading the review queue failed: " + error.message, true);
    }).then(function () { $("queue-more").disabled = false; });
  }

  function queueRow(item) {
    var response = item.response || {};
    var created = String(item.created_at || "").replace("T", " ").replace(/\.\d+Z$/, "Z");
    var open = el("button", { type: "button", "class": "btn", text: "Review",
      "aria-label": "Review application " + item.application_id });
    open.addEventListener("click", function () { openReview(item); });
    return el("tr", { "data-decision-id": item.decision_id }, [
      el("td", { text: created }),
      el("td", { "class": "mono", text: item.application_id }),
      el("td", { text: item.risk_band }),
      el("td", { "class": "num", text: item.score }),
      el("td", {}, (response.reasons || []).map(function (r) { return el("span", { "class": "code", text: r.code }); })
        .reduce(function (acc, node) { if (acc.length) acc.push(" "); acc.push(node); return acc; }, [])),
      el("td", {}, [open])
    ]);
  }

  function fillCodes() {
    var final = $("rv-final").value;
    var select = $("rv-code");
    clear(select);
    queue.codes.filter(function (c) { return (c.outcomes || []).indexOf(final) >= 0; }).forEach(function (c) {
      select.appendChild(el("option", { value: c.code, text: c.code + " · " + c.text }));
    });
  }

  function openReview(item) {
    queue.item = item;
    var response = item.response || {};
    var request = item.request || {};
    var explanation = response.explanation || {};
    $("review-title").textContent = "Review of application " + item.application_id;
    $("review-sub").textContent = "Decision " + item.decision_id + " · decided " + item.created_at + " by " +
      item.model_name + " " + item.model_version + " · policy " + (response.policy_version || "");
    var summary = $("review-summary");
    clear(summary);
    append(summary, [pill(item.decision), " score ", el("strong", { text: item.score }), " · band ",
      el("strong", { text: item.risk_band }), " · probability of default " +
      fmt(100 * response.probability_of_default, 1) + " %"]);
    var reasons = $("review-reasons");
    clear(reasons);
    (response.reasons || []).forEach(function (r) {
      reasons.appendChild(el("li", {}, [el("span", { "class": "code", text: r.code }), " " + r.customer_text,
        el("div", { "class": "muted small", text: r.auditor_text })]));
    });
    var attributions = explanation.attributions || {};
    var names = Object.keys(attributions).sort(function (a, b) {
      return Math.abs(attributions[b]) - Math.abs(attributions[a]) || (a < b ? -1 : 1);
    }).slice(0, 6);
    var body = $("review-attributions").tBodies[0];
    clear(body);
    names.forEach(function (name) {
      var value = attributions[name];
      body.appendChild(el("tr", {}, [el("th", { scope: "row", text: humanize(name) }),
        el("td", { "class": "num " + (value > 0 ? "pos" : value < 0 ? "neg" : ""), text: signed(value, 4) })]));
    });
    var inputs = $("review-inputs").tBodies[0];
    clear(inputs);
    Object.keys(request.applicant || {}).forEach(function (name) {
      inputs.appendChild(el("tr", {}, [el("th", { scope: "row", text: humanize(name) }),
        el("td", { text: valueLabel(name, request.applicant[name]) })]));
    });
    $("review-form").reset();
    fillCodes();
    $("review-error").textContent = "";
    $("review-panel").hidden = false;
    $("review-title").focus();
  }

  function submitReview(event) {
    event.preventDefault();
    var item = queue.item;
    if (!item) return;
    var body = { final_decision: $("rv-final").value, justification_code: $("rv-code").value,
      note: $("rv-note").value };
    $("review-submit").disabled = true;
    $("review-error").textContent = "";
    api("/v1/decisions/" + encodeURIComponent(item.decision_id) + "/review", { method: "POST", body: body })
      .then(function (recorded) {
        var row = $("queue-body").querySelector("tr[data-decision-id='" + item.decision_id + "']");
        if (row) row.parentNode.removeChild(row);
        $("queue-empty").hidden = $("queue-body").children.length > 0;
        $("review-panel").hidden = true;
        queue.item = null;
        setStatus("Recorded: application " + item.application_id + " → " + body.final_decision + " (" +
          body.justification_code + "), audit event #" + recorded.seq + ".");
      }).catch(function (error) {
        $("review-error").textContent = "Not recorded: " + error.message;
      }).then(function () { $("review-submit").disabled = false; });
  }

  // ---- one decision ---------------------------------------------------------------------------------------

  function openDecision(decisionId) {
    state.record = null;
    clear($("shadows"));
    $("replay-result").textContent = "";
    $("notice-panel").hidden = true;
    $("d-id").textContent = decisionId;
    return api("/v1/decisions/" + encodeURIComponent(decisionId)).then(function (record) {
      state.record = record;
      renderDecision(record);
      loadShadows(record);
      $("decision-title").setAttribute("tabindex", "-1");
      $("decision-title").focus();
    }).catch(function (error) {
      setStatus("Could not open decision " + decisionId + ": " + error.message, true);
    });
  }

  function fieldInfo(name) {
    var fields = (state.schema && state.schema.fields) || [];
    for (var i = 0; i < fields.length; i++) if (fields[i].name === name) return fields[i];
    return null;
  }

  function valueLabel(name, value) {
    var info = fieldInfo(name);
    if (info && info.allowed_values) {
      for (var i = 0; i < info.allowed_values.length; i++) {
        if (info.allowed_values[i].code === value) return info.allowed_values[i].label;
      }
    }
    if (info && info.unit && typeof value === "number") return value + " " + info.unit;
    return String(value);
  }

  function shortLabel(name, value) {
    var info = fieldInfo(name);
    // long units ("band (1 = under 20 %, ...)") make the chart unreadable: the inputs table has them in full
    if (info && info.unit && info.unit.length > 12 && typeof value === "number") return String(value);
    var text = valueLabel(name, value);
    return text.length > 30 ? text.slice(0, 29) + "…" : text;
  }

  function renderDecision(record) {
    // the API derives these views from the stored payload, whatever its schema version
    var response = record.response || {};
    var request = record.request || {};
    var score = response.score || { value: record.score };
    $("d-sub").textContent = "Application " + record.application_id + " · decided " + record.created_at +
      " · record #" + record.seq;
    var badge = $("d-decision");
    badge.className = "pill pill-lg pill-" + record.decision;
    badge.textContent = record.decision;
    $("d-score").textContent = score.value;
    $("d-range").textContent = "range " + score.min + "–" + score.max + " (higher = lower risk)";
    var share = (score.value - score.min) / Math.max(1, score.max - score.min);
    $("d-scale-mark").style.left = "calc(" + (Math.max(0, Math.min(1, share)) * 100).toFixed(1) + "% - 2px)";
    $("d-band").textContent = record.risk_band;
    $("d-band-note").textContent = bandNote(record.risk_band);
    $("d-pd").textContent = fmt(100 * response.probability_of_default, 1) + " %";
    var explanation = response.explanation || {};
    var margin = explanation.margin;
    $("d-margin").textContent = "margin (log-odds) " + fmt(margin, 4);

    var attributions = explanation.attributions || {};
    var base = explanation.base_value;
    drawWaterfall($("waterfall"), attributions, base, margin, score.value, record.decision, request.applicant || {});
    renderReasons(response.reasons || []);
    renderRules(response.rules_fired || []);
    renderInputs(request.applicant || {}, attributions, request.monitoring);
    renderVersions(record, record.versions || {}, response);
    renderNoticeArea(record);
  }

  function bandNote(band) {
    var bands = (state.schema && state.schema.risk_bands) || [];
    for (var i = 0; i < bands.length; i++) {
      if (bands[i].band === band) return "score ≥ " + bands[i].min_score + " → " + bands[i].decision;
    }
    return "";
  }

  function renderReasons(reasons) {
    var box = $("reasons");
    clear(box);
    if (!reasons.length) { box.appendChild(el("p", { "class": "muted", text: "No reasons recorded." })); return; }
    reasons.forEach(function (reason, index) {
      var values = (reason.values || []).map(function (v) { return v.label || String(v.value); }).join("; ");
      var contribution = reason.contribution
        ? signed(reason.contribution.log_odds, 3) + " log-odds · " + signed(reason.contribution.score_points, 1) +
          " score points"
        : "policy rule";
      box.appendChild(el("div", { "class": "reason " + (reason.adverse ? "adverse" : "benign") }, [
        el("div", { "class": "head" }, [
          el("span", { "class": "muted", text: (index + 1) + "." }),
          el("span", { "class": "code", text: reason.code }),
          el("span", { "class": "customer", text: reason.customer_text })
        ]),
        el("div", { "class": "auditor", text: "Auditor: " + reason.auditor_text }),
        el("div", { "class": "meta", text: (reason.adverse ? "adverse" : "not adverse (main risk factor)") +
          " · " + reason.kind + (values ? " · value: " + values : "") + " · " + contribution })
      ]));
    });
  }

  function renderRules(rules) {
    var box = $("rules");
    clear(box);
    if (!rules.length) { box.appendChild(el("p", { "class": "muted", text: "No policy rule fired." })); return; }
    var list = el("ul", {});
    rules.forEach(function (rule) {
      list.appendChild(el("li", {}, [
        el("span", { "class": "code", text: rule.code }), " ", rule.description + " ",
        el("span", { "class": "muted", text: "(" + rule.field + " " + rule.operator + " " + rule.threshold +
          " → " + rule.action + ")" })
      ]));
    });
    box.appendChild(list);
  }

  function renderInputs(applicant, attributions, monitoring) {
    var body = $("inputs").tBodies[0];
    clear(body);
    Object.keys(applicant).forEach(function (name) {
      var value = attributions[name];
      body.appendChild(el("tr", {}, [
        el("th", { scope: "row", title: (fieldInfo(name) || {}).description || "", text: humanize(name) }),
        el("td", { text: valueLabel(name, applicant[name]) }),
        el("td", { "class": "num " + (value > 0 ? "pos" : value < 0 ? "neg" : ""), text: signed(value, 4) })
      ]));
    });
    var box = $("monitoring");
    clear(box);
    var keys = Object.keys(monitoring || {});
    if (!keys.length) {
      box.appendChild(el("p", { "class": "muted small", text: "None supplied." }));
      return;
    }
    var table = el("table", { "class": "kv" }, [el("tbody", {}, keys.map(function (name) {
      return el("tr", {}, [el("th", { scope: "row", text: humanize(name) }), el("td", { text: String(monitoring[name]) })]);
    }))]);
    box.appendChild(table);
  }

  function renderVersions(record, versions, response) {
    var model = response.model || {};
    var rows = [
      ["Model", (versions.model_name || record.model_name) + " " + (versions.model_version || record.model_version) +
        (versions.model_family || model.family ? " (" + (versions.model_family || model.family) + ")" : "")],
      ["Model sha256", versions.model_sha256 || model.sha256],
      ["Manifest sha256", versions.manifest_sha256],
      ["Policy version", versions.policy_version || response.policy_version],
      ["Reason catalog version", versions.catalog_version || response.catalog_version],
      ["Feature spec version", versions.spec_version || response.spec_version],
      ["Record seq", record.seq],
      ["Record hash", record.record_hash],
      ["Previous hash", record.prev_hash],
      ["Request hash", record.request_hash]
    ];
    var body = $("versions").tBodies[0];
    clear(body);
    rows.forEach(function (row) {
      if (row[1] === undefined || row[1] === null) return;
      var mono = /hash|sha256/i.test(row[0]);
      body.appendChild(el("tr", {}, [el("th", { scope: "row", text: row[0] }),
        el("td", { "class": mono ? "mono" : "", text: String(row[1]) })]));
    });
  }

  // ---- shadow decisions -----------------------------------------------------------------------------------

  var SHADOW_KINDS = { challenger: "Challenger model", policy: "Candidate policy" };

  function loadShadows(record) {
    var box = $("shadows");
    clear(box);
    box.appendChild(el("p", { "class": "muted small", text: "Loading the shadow decisions…" }));
    return api("/v1/decisions/" + encodeURIComponent(record.decision_id) + "/shadows").then(function (body) {
      if (state.record === record) renderShadows(record, body.shadows || []);
    }).catch(function (error) {
      if (state.record !== record) return;
      clear(box);
      box.appendChild(el("p", { "class": "error", text: "Could not load the shadow decisions: " + error.message }));
    });
  }

  function renderShadows(record, shadows) {
    var box = $("shadows");
    clear(box);
    if (!shadows.length) {
      box.appendChild(el("p", { "class": "muted", id: "shadows-none",
        text: "None recorded: no challenger model or candidate policy decided this request in shadow." }));
      return;
    }
    shadows.forEach(function (shadow) { box.appendChild(shadowTwin(record, shadow)); });
  }

  function modelLabel(model) {
    if (!model) return "–";
    return model.name + " " + model.version + (model.family ? " (" + model.family + ")" : "");
  }

  function shadowTwin(record, shadow) {
    var response = record.response || {};
    var versions = record.versions || {};
    var kindLabel = SHADOW_KINDS[shadow.kind] || shadow.kind;
    var differs = shadow.decision !== record.decision;
    var champion = {
      decision: record.decision,
      score: response.score && typeof response.score === "object" ? response.score.value : record.score,
      band: record.risk_band,
      pd: response.probability_of_default,
      model: { name: versions.model_name || record.model_name, version: versions.model_version || record.model_version,
        family: versions.model_family },
      policy: versions.policy_version || response.policy_version,
      catalog: versions.catalog_version || response.catalog_version
    };
    var subject = shadow.kind === "policy"
      ? "policy " + shadow.policy_version + " on " + shadow.model.name + " " + shadow.model.version
      : shadow.model.name + " " + shadow.model.version;
    var headingId = "shadow-" + shadow.shadow_id;
    var scoreDelta = shadow.score - champion.score;
    var rows = [
      ["Decision", pill(champion.decision), pill(shadow.decision), differs],
      ["Score", String(champion.score), shadow.score + (scoreDelta ? " (" + signed(scoreDelta, 0) + ")" : ""),
        scoreDelta !== 0],
      ["Risk band", champion.band, shadow.risk_band, champion.band !== shadow.risk_band],
      ["Probability of default", fmt(100 * champion.pd, 1) + " %", fmt(100 * shadow.probability_of_default, 1) + " %",
        false],
      ["Model", modelLabel(champion.model), modelLabel(shadow.model),
        champion.model.name !== shadow.model.name || champion.model.version !== shadow.model.version],
      ["Policy version", champion.policy, shadow.policy_version, champion.policy !== shadow.policy_version],
      ["Reason catalog", champion.catalog, shadow.catalog_version, champion.catalog !== shadow.catalog_version]
    ];
    var table = el("table", { "class": "kv twin-table" }, [
      el("caption", { "class": "sr-only", text: "Champion and " + kindLabel.toLowerCase() + " side by side" }),
      el("thead", {}, [el("tr", {}, [
        el("th", { scope: "col" }, [el("span", { "class": "sr-only", text: "Field" })]),
        el("th", { scope: "col", text: "Champion" }),
        el("th", { scope: "col", text: kindLabel })
      ])]),
      el("tbody", {}, rows.map(function (row) {
        return el("tr", { "class": row[3] ? "diff" : null }, [
          el("th", { scope: "row", text: row[0] }),
          el("td", {}, [row[1] === undefined || row[1] === null ? "–" : row[1]]),
          el("td", { "data-field": row[0] }, [row[2] === undefined || row[2] === null ? "–" : row[2]])
        ]);
      }))
    ]);
    var reasons = (shadow.reasons || []).slice(0, 4);
    var reasonList = reasons.length
      ? el("ol", { "class": "twin-reasons" }, reasons.map(function (reason) {
        return el("li", { title: "Auditor: " + reason.auditor_text }, [
          el("span", { "class": "code", text: reason.code }), " ", reason.customer_text
        ]);
      }))
      : el("p", { "class": "muted small", text: "No reasons recorded." });
    var rules = (shadow.rules_fired || []).map(function (rule) { return rule.code; });
    return el("article", {
      "class": "twin" + (differs ? " differs" : ""), "aria-labelledby": headingId,
      "data-kind": shadow.kind, "data-decision": shadow.decision
    }, [
      el("div", { "class": "twin-head" }, [
        el("h3", { id: headingId, text: kindLabel + ": " + subject }),
        differs
          ? el("span", { "class": "flag flag-differs", text: "Decision differs: champion " + champion.decision + ", " +
            kindLabel.toLowerCase() + " " + shadow.decision })
          : el("span", { "class": "flag flag-same", text: "Same decision as the champion" })
      ]),
      table,
      el("div", { "class": "kpi-label twin-label", text: "Top reasons of the " + kindLabel.toLowerCase() }),
      reasonList,
      el("p", { "class": "muted small", text: "Rules fired: " + (rules.length ? rules.join(", ") : "none") }),
      el("p", { "class": "muted small twin-meta" }, [
        "Recorded " + String(shadow.created_at).replace("T", " ") + " · record #" + shadow.seq + " · hash ",
        el("span", { "class": "mono", text: shadow.record_hash })
      ])
    ]);
  }

  // ---- waterfall ------------------------------------------------------------------------------------------

  function niceStep(span, count) {
    var raw = span / Math.max(1, count);
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (raw <= steps[i] * power) return steps[i] * power;
    return 10 * power;
  }

  function drawWaterfall(container, attributions, base, margin, score, decision, applicant) {
    clear(container);
    var fields = Object.keys(attributions).map(function (name) { return { name: name, value: Number(attributions[name]) }; });
    // largest impact first; ties by field name so the chart is deterministic
    fields.sort(function (a, b) {
      return Math.abs(b.value) - Math.abs(a.value) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
    var rows = [{ kind: "base", name: "Base value", sub: "expected log-odds", start: 0, end: base }];
    var running = base;
    fields.forEach(function (f) {
      rows.push({ kind: "field", name: humanize(f.name), sub: shortLabel(f.name, applicant[f.name]), field: f.name,
        start: running, end: running + f.value, value: f.value });
      running += f.value;
    });
    rows.push({ kind: "total", name: "Final margin", sub: "score " + score + " · " + decision, start: 0, end: margin });

    var rowH = 26, top = 30, bottom = 36, labelW = 270, valueW = 86, width = 960;
    var height = top + rows.length * rowH + bottom;
    var lo = 0, hi = 0;
    rows.forEach(function (r) { lo = Math.min(lo, r.start, r.end); hi = Math.max(hi, r.start, r.end); });
    var pad = (hi - lo) * 0.04 || 0.1;
    lo -= pad; hi += pad;
    var plotL = labelW, plotR = width - valueW;
    function x(v) { return plotL + (v - lo) / (hi - lo) * (plotR - plotL); }

    var chart = svg("svg", {
      viewBox: "0 0 " + width + " " + height, role: "img", "aria-labelledby": "wf-title wf-desc",
      "data-fields": fields.length, "class": "wf"
    });
    chart.appendChild(svg("title", { id: "wf-title", text: "Waterfall of attributions" }));
    chart.appendChild(svg("desc", { id: "wf-desc", text: "From the base value " + fmt(base, 3) + " through " +
      fields.length + " field attributions to the final margin " + fmt(margin, 3) + " (score " + score + ")." }));

    var step = niceStep(hi - lo, 8);
    var axisY = top + rows.length * rowH + 6;
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-12; t += step) {
      var tx = x(t);
      chart.appendChild(svg("line", { x1: tx, x2: tx, y1: top - 6, y2: axisY, "class": "wf-grid" }));
      chart.appendChild(svg("text", { x: tx, y: axisY + 16, "text-anchor": "middle", "class": "wf-tick",
        text: fmt(Math.abs(t) < 1e-12 ? 0 : t, step < 0.1 ? 2 : 1) }));
    }
    chart.appendChild(svg("line", { x1: x(0), x2: x(0), y1: top - 6, y2: axisY, "class": "wf-zero" }));
    chart.appendChild(svg("line", { x1: plotL, x2: plotR, y1: axisY, y2: axisY, "class": "wf-axis" }));
    chart.appendChild(svg("text", { x: (plotL + plotR) / 2, y: height - 2, "text-anchor": "middle", "class": "wf-tick",
      text: "log-odds of default  (← lower risk · higher risk →)" }));
    chart.appendChild(svg("text", { x: plotR + 8, y: top - 12, "class": "wf-tick", text: "log-odds" }));

    rows.forEach(function (r, i) {
      var y = top + i * rowH;
      var x0 = x(Math.min(r.start, r.end)), x1 = x(Math.max(r.start, r.end));
      var cls = r.kind === "base" ? "wf-base" : r.kind === "total" ? "wf-total" : (r.value > 0 ? "wf-up" : "wf-down");
      var amount = r.kind === "field" ? r.value : r.end;
      var group = svg("g", { "class": "wf-row", "data-kind": r.kind, "data-field": r.field || null });
      group.appendChild(svg("text", { x: 8, y: y + rowH / 2 + 1, "class": "wf-label", "dominant-baseline": "middle" }, [
        svg("tspan", { text: r.name }),
        svg("tspan", { "class": "wf-sub", dx: 6, text: r.sub || "" })
      ]));
      var bar = svg("rect", {
        x: x0, y: y + 4, width: Math.max(1.5, x1 - x0), height: rowH - 8, rx: 2,
        "class": "wf-bar " + cls, "data-kind": r.kind, "data-value": amount
      });
      bar.appendChild(svg("title", { text: r.name + ": " + (r.kind === "field" ? signed(amount, 4) : fmt(amount, 4)) }));
      group.appendChild(bar);
      group.appendChild(svg("text", { x: plotR + 8, y: y + rowH / 2 + 1, "class": "wf-value", "dominant-baseline": "middle",
        text: r.kind === "field" ? signed(amount, 3) : fmt(amount, 3) }));
      chart.appendChild(group);
      if (i < rows.length - 1 && r.kind !== "total") {
        var next = rows[i + 1];
        var joinX = x(r.end);
        if (next.kind !== "total") {
          chart.appendChild(svg("line", { x1: joinX, x2: joinX, y1: y + rowH - 4, y2: y + rowH + 4,
            "class": "wf-connector" }));
        }
      }
    });
    container.appendChild(chart);
  }

  // ---- replay and notice ----------------------------------------------------------------------------------

  function replay() {
    if (!state.record) return;
    var button = $("replay-button");
    var out = $("replay-result");
    button.disabled = true;
    out.textContent = "Replaying with the recorded model, policy and catalog versions…";
    api("/v1/decisions/" + encodeURIComponent(state.record.decision_id) + "/replay", { method: "POST" })
      .then(function (result) {
        clear(out);
        if (result.identical) {
          out.appendChild(el("span", { "class": "replay-ok", id: "replay-verdict", text: "✓ Replay matched" }));
          out.appendChild(document.createTextNode(" — identical score, band, decision and reasons."));
        } else {
          out.appendChild(el("span", { "class": "replay-bad", id: "replay-verdict", text: "✗ Replay differs" }));
          var list = el("ul", {});
          (result.differences || []).forEach(function (d) {
            list.appendChild(el("li", { text: d.field + ": recorded " + JSON.stringify(d.recorded) +
              ", replayed " + JSON.stringify(d.replayed) }));
          });
          out.appendChild(list);
        }
      }).catch(function (error) {
        out.textContent = "Replay failed: " + error.message;
      }).then(function () { button.disabled = false; });
  }

  function renderNoticeArea(record) {
    var box = $("notice-area");
    clear(box);
    if (record.decision !== "decline") {
      box.appendChild(el("p", { "class": "muted", text: "No adverse-action notice is required for a " +
        record.decision + " (only declines get one)." }));
      return;
    }
    var button = el("button", { type: "button", "class": "btn", id: "notice-button", text: "Open adverse-action notice" });
    button.addEventListener("click", openNotice);
    box.appendChild(button);
  }

  function showBlob(slot, blob, frame, link) {
    if (state.blobs[slot]) URL.revokeObjectURL(state.blobs[slot]);
    var url = URL.createObjectURL(blob);
    state.blobs[slot] = url;
    frame.src = url;
    link.href = url;
  }

  function openNotice() {
    if (!state.record) return;
    var path = "/v1/decisions/" + encodeURIComponent(state.record.decision_id) + "/notice?format=html";
    api(path, { as: "blob", accept: "text/html" }).then(function (blob) {
      showBlob("notice", new Blob([blob], { type: "text/html" }), $("notice-frame"), $("notice-open"));
      $("notice-panel").hidden = false;
      $("notice-panel").scrollIntoView({ block: "start" });
      $("notice-close").focus();
    }).catch(function (error) { setStatus("Could not open the notice: " + error.message, true); });
  }

  // ---- reports: the period report and the champion vs challenger comparison ---------------------------------
  // Both are fetched with the key as blobs: HTML shown in a frame (and a new tab), PDF, CSV and JSON downloaded.

  function isoDay(date) { return date.toISOString().slice(0, 10); }

  var REPORTS = {
    report: {
      path: "/v1/reports", form: "report-form", show: "report-show", panel: "report-panel", frame: "report-frame",
      open: "report-open", noun: "report",
      params: function (form) {
        var model = form.elements.model.value.trim();
        return model ? { model: model } : {};
      },
      fileName: function (form, format) {
        return "credit-decision-report_" + form.elements.from.value + "_" + form.elements.to.value + "." + format;
      }
    },
    compare: {
      path: "/v1/reports/challenger", form: "compare-form", show: "compare-show", panel: "compare-panel",
      frame: "compare-frame", open: "compare-open", noun: "comparison",
      params: function (form) { return { kind: form.elements.kind.value }; },
      fileName: function (form, format) {
        return "credit-decision-" + form.elements.kind.value + "-comparison_" + form.elements.from.value + "_" +
          form.elements.to.value + "." + format;
      }
    }
  };

  function reportPath(spec, format) {
    var form = $(spec.form);
    var params = new URLSearchParams({ from: form.elements.from.value, to: form.elements.to.value });
    var extra = spec.params(form);
    Object.keys(extra).forEach(function (name) { params.set(name, extra[name]); });
    params.set("format", format);
    return spec.path + "?" + params.toString();
  }

  function showReport(spec, event) {
    event.preventDefault();
    var button = $(spec.show);
    button.disabled = true;
    setStatus("Building the " + spec.noun + "…");
    api(reportPath(spec, "html"), { as: "blob" }).then(function (blob) {
      setStatus("");
      showBlob(spec.frame, new Blob([blob], { type: "text/html" }), $(spec.frame), $(spec.open));
      $(spec.panel).hidden = false;
    }).catch(function (error) {
      setStatus("Could not build the " + spec.noun + ": " + error.message, true);
    }).then(function () { button.disabled = false; });
  }

  function downloadReport(spec, format) {
    var form = $(spec.form);
    if (!form.reportValidity()) return;
    api(reportPath(spec, format), { as: "blob" }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var link = el("a", { href: url, download: spec.fileName(form, format) });
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    }).catch(function (error) { setStatus("Could not download the " + spec.noun + ": " + error.message, true); });
  }

  function wireReport(spec) {
    var form = $(spec.form);
    var frame = $(spec.frame);
    var defaultTitle = frame.title;
    form.addEventListener("submit", function (event) { showReport(spec, event); });
    Array.prototype.forEach.call(form.querySelectorAll("[data-format]"), function (button) {
      button.addEventListener("click", function () { downloadReport(spec, button.getAttribute("data-format")); });
    });
    // the frame is named by the document it shows (the report's own title names the period and the versions)
    frame.addEventListener("load", function () {
      var doc = null;
      try { doc = frame.contentDocument; } catch (e) { doc = null; }
      frame.title = (doc && doc.title) || defaultTitle;
    });
  }

  // ---- admin audit events ---------------------------------------------------------------------------------

  function target(t) {
    if (!t) return "none";
    return t.name + " " + t.version + (t.policy ? " with policy " + t.policy : "");
  }

  function actorParts(actor) {
    actor = actor || {};
    if (actor.cli) return [actor.cli, "command line"];
    if (actor.key_id || actor.label) {
      return [actor.label || ("key " + actor.key_id),
        (actor.label && actor.key_id ? "key " + actor.key_id : "") + (actor.role ? " · " + actor.role : "")];
    }
    return [JSON.stringify(actor), ""];
  }

  function eventSummary(event) {
    var d = event.details || {};
    var before = d.before || {};
    var text;
    switch (event.kind) {
      case "promotion":
        text = "promoted " + target(d.to) + (before.champion ? " over " + target(before.champion) : "");
        break;
      case "rollback":
        text = "rolled back to " + target(d.to) + (before.champion ? " from " + target(before.champion) : "");
        break;
      case "shadow_on": text = "challenger " + target(d.challenger) + " in shadow"; break;
      case "shadow_off": text = "stopped challenger " + target(d.challenger); break;
      case "policy_shadow_on": text = "candidate policy " + d.policy + " in shadow"; break;
      case "policy_shadow_off": text = "stopped candidate policy " + d.policy; break;
      case "policy_added":
        text = "stored candidate policy " + d.policy + " (catalog " + d.catalog_version + ", checked against spec " +
          d.validated_with_spec + ")";
        break;
      case "purge":
        text = "purged " + d.purged_records + " records, " + (d.purged_events || 0) + " audit events and " +
          (d.purged_shadows || 0) + " shadow decisions created before " + d.cutoff +
          (d.retention_days !== undefined ? " (retention " + d.retention_days + " days)" : "");
        break;
      case "key_created":
        text = "created " + (d.role ? d.role + " " : "") + "key " + d.key_id + (d.label ? " “" + d.label + "”" : "");
        break;
      case "key_revoked":
        text = "revoked key " + d.key_id + (d.roles ? " (" + [].concat(d.roles).join(", ") + ")" : "") +
          (d.label ? " “" + d.label + "”" : "");
        break;
      default: {
        var json = JSON.stringify(d);
        text = json.length > 120 ? json.slice(0, 119) + "…" : json;
      }
    }
    return text + (d.note ? " (" + d.note + ")" : "");
  }

  function jsonBlock(value) {
    return el("pre", { "class": "json", text: JSON.stringify(value, null, 2) });
  }

  function eventRows(event) {
    var detailId = "event-detail-" + event.seq;
    var who = actorParts(event.actor);
    var created = String(event.created_at || "").replace("T", " ").replace(/\.\d+Z$/, "Z");
    var toggle = el("button", { type: "button", "class": "btn btn-small", "aria-expanded": "false",
      "aria-controls": detailId, "aria-label": "Details of event #" + event.seq, text: "Details" });
    var row = el("tr", { "class": "event", "data-seq": event.seq, "data-kind": event.kind }, [
      el("td", { "class": "nowrap", text: created }),
      el("td", {}, [el("span", { "class": "code", text: event.kind })]),
      el("td", { "class": "who" }, [el("span", { text: who[0] }), who[1] ? el("span", { "class": "muted small",
        text: " " + who[1] }) : null]),
      el("td", { "class": "what", text: eventSummary(event) }),
      el("td", { "class": "num", text: event.seq }),
      el("td", {}, [toggle])
    ]);
    var facts = [
      ["Event id", event.event_id], ["Created (UTC)", event.created_at], ["Seq", event.seq],
      ["Record hash", event.record_hash], ["Previous hash", event.prev_hash]
    ];
    var detail = el("tr", { "class": "event-detail", id: detailId }, [el("td", { colspan: 6 }, [
      el("table", { "class": "kv" }, [el("tbody", {}, facts.map(function (fact) {
        return el("tr", {}, [el("th", { scope: "row", text: fact[0] }),
          el("td", { "class": /hash|id/i.test(fact[0]) ? "mono" : "", text: String(fact[1]) })]);
      }))]),
      el("div", { "class": "grid two event-json" }, [
        el("div", {}, [el("h3", { text: "Actor" }), jsonBlock(event.actor),
          el("h3", { text: "Details" }), jsonBlock(event.details)]),
        el("div", {}, [el("h3", { text: "Serving state after" }),
          event.serving_state ? jsonBlock(event.serving_state)
            : el("p", { "class": "muted small", text: "Not a control event: the serving state did not change." })])
      ])
    ])]);
    detail.hidden = true;
    toggle.addEventListener("click", function () {
      detail.hidden = !detail.hidden;
      toggle.setAttribute("aria-expanded", String(!detail.hidden));
      toggle.textContent = detail.hidden ? "Details" : "Hide";
    });
    return [row, detail];
  }

  // ---- start ----------------------------------------------------------------------------------------------

  function init() {
    var today = new Date();
    var tomorrow = new Date(today.getTime() + 86400000);
    var monthAgo = new Date(today.getTime() - 30 * 86400000);
    ["r-from", "c-from"].forEach(function (id) { $(id).value = isoDay(monthAgo); });
    ["r-to", "c-to"].forEach(function (id) { $(id).value = isoDay(tomorrow); });

    $("signin-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", function () { signOut(""); });
    Object.keys(LISTS).forEach(function (name) {
      var list = LISTS[name];
      $(list.form).addEventListener("submit", function (event) { event.preventDefault(); search(list, false); });
      $(list.form).addEventListener("reset", function () { setTimeout(function () { search(list, false); }, 0); });
      $(list.more).addEventListener("click", function () { search(list, true); });
    });
    $("rv-final").addEventListener("change", fillCodes);
    $("review-form").addEventListener("submit", submitReview);
    $("review-cancel").addEventListener("click", function () { $("review-panel").hidden = true; queue.item = null; });
    $("queue-more").addEventListener("click", function () { loadQueue(true); });
    $("replay-button").addEventListener("click", replay);
    $("notice-close").addEventListener("click", function () { $("notice-panel").hidden = true; $("notice-button").focus(); });
    $("notice-print").addEventListener("click", function () { $("notice-frame").contentWindow.print(); });
    Object.keys(REPORTS).forEach(function (name) { wireReport(REPORTS[name]); });
    window.addEventListener("hashchange", route);

    fetch("/v1/schema", { credentials: "omit" }).then(function (r) { return r.ok ? r.json() : null; })
      .catch(function () { return null; })
      .then(function (schema) {
        state.schema = schema;
        ((schema && schema.risk_bands) || []).forEach(function (band) {
          $("f-band").appendChild(el("option", { value: band.band, text: band.band + " (" + band.decision + ")" }));
        });
        if (state.record) renderDecision(state.record);
      });
    route();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
