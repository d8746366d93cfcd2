"""The offline API docs page: plain HTML, CSS and JS served by the app itself (no CDN, no external assets).

The script reads /openapi.json and renders every operation, its request and response schemas (with
enums, ranges and units) and examples, and can send an operation's example to the live service.
"""

from __future__ import annotations

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>credit-decision API</title>
<link rel="stylesheet" href="docs/docs.css">
<script src="docs/docs.js" defer></script>
</head>
<body>
<header><h1 id="title">credit-decision API</h1><p id="description">Loading the OpenAPI document…</p>
<p><a href="openapi.json">openapi.json</a> · <a href="v1/schema">field schema</a></p></header>
<nav id="toc"></nav>
<main id="operations"></main>
<section id="schemas"><h2>Schemas</h2></section>
<noscript>This page needs JavaScript; the raw document is at <a href="openapi.json">openapi.json</a>.</noscript>
</body>
</html>
"""

DOCS_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 70rem;
       padding: 1rem 2rem; color: #1d2330; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccd; padding-bottom: .2rem; margin-top: 2rem; }
code, pre, textarea { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f4f6fa; padding: .7rem; overflow: auto; border-radius: 4px; max-height: 28rem; }
textarea { width: 100%; min-height: 14rem; box-sizing: border-box; }
.op { border: 1px solid #d5dbe6; border-radius: 6px; padding: .6rem 1rem; margin: 1rem 0; }
.method { display: inline-block; min-width: 4rem; font-weight: 700; text-transform: uppercase; }
.method.post { color: #0a6b2c; } .method.get { color: #0b4fa8; }
.path { font-family: ui-monospace, monospace; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0; }
th, td { text-align: left; border-bottom: 1px solid #e3e7ef; padding: .25rem .4rem; vertical-align: top; }
th { background: #f0f3f8; } .muted { color: #5b6475; } .status { font-weight: 700; }
button { font: inherit; padding: .3rem .9rem; cursor: pointer; }
#toc a { margin-right: 1rem; }
"""

DOCS_JS = r"""
"use strict";
(function () {
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "class") { node.className = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function refName(ref) { return ref.split("/").pop(); }
  function resolve(doc, schema) {
    if (schema && schema.$ref) { return doc.components.schemas[refName(schema.$ref)] || {}; }
    return schema || {};
  }
  function typeOf(prop) {
    if (prop.$ref) { return refName(prop.$ref); }
    if (prop.allOf && prop.allOf.length) { return typeOf(prop.allOf[0]); }
    if (prop.type === "array") { return "array of " + typeOf(prop.items || {}); }
    return Array.isArray(prop.type) ? prop.type.join(" | ") : (prop.type || "any");
  }
  function constraints(prop) {
    var out = [];
    if (prop.enum) {
      var labels = prop["x-labels"] || {};
      out.push("one of: " + prop.enum.map(function (v) { return labels[v] ? v + " (" + labels[v] + ")" : v; }).join(", "));
    }
    if (prop.minimum !== undefined || prop.maximum !== undefined) {
      out.push("range " + (prop.minimum !== undefined ? prop.minimum : "…") + " to " +
               (prop.maximum !== undefined ? prop.maximum : "…"));
    }
    if (prop.minLength !== undefined || prop.maxLength !== undefined) {
      out.push("length " + (prop.minLength || 0) + " to " + (prop.maxLength !== undefined ? prop.maxLength : "…"));
    }
    if (prop.pattern) { out.push("pattern " + prop.pattern); }
    if (prop["x-unit"]) { out.push("unit: " + prop["x-unit"]); }
    return out.join("; ");
  }
  function schemaTable(doc, schema) {
    var s = resolve(doc, schema);
    var required = s.required || [];
    var rows = Object.keys(s.properties || {}).map(function (name) {
      var p = s.properties[name];
      return el("tr", {}, [
        el("td", {}, [el("code", {}, [name])]),
        el("td", {}, [typeOf(p)]),
        el("td", {}, [required.indexOf(name) >= 0 ? "yes" : "no"]),
        el("td", {}, [constraints(p)]),
        el("td", {class: "muted"}, [p.description || ""])
      ]);
    });
    return el("table", {}, [
      el("tr", {}, ["field", "type", "required", "allowed values / range", "description"].map(function (h) {
        return el("th", {}, [h]);
      }))
    ].concat(rows));
  }
  function tryIt(method, path, example) {
    var box = el("textarea", {spellcheck: "false"}, []);
    box.value = JSON.stringify(example, null, 2);
    var out = el("pre", {}, ["(response appears here)"]);
    var button = el("button", {type: "button"}, ["Send to this service"]);
    button.addEventListener("click", function () {
      out.textContent = "…";
      fetch(path.replace(/^\//, ""), {method: method.toUpperCase(), headers: {"Content-Type": "application/json"},
                                      body: box.value})
        .then(function (r) {
          return r.text().then(function (t) {
            var text = t;
            try { text = JSON.stringify(JSON.parse(t), null, 2); } catch (e) { /* not JSON */ }
            out.textContent = r.status + " " + r.statusText + "\n" + (r.headers.get("Content-Type") || "") + "\n\n" + text;
          });
        })
        .catch(function (e) { out.textContent = "request failed: " + e; });
    });
    return el("div", {}, [el("h4", {}, ["Try it"]), box, button, out]);
  }
  function operation(doc, path, method, op) {
    var id = (op.operationId || method + path).replace(/[^A-Za-z0-9]/g, "-");
    var parts = [
      el("h3", {id: id}, [el("span", {class: "method " + method}, [method]), " ", el("span", {class: "path"}, [path])]),
      el("p", {}, [op.summary || ""]),
      el("p", {class: "muted"}, [op.description || ""])
    ];
    (op.parameters || []).forEach(function (p) {
      parts.push(el("p", {}, [el("code", {}, [p.name]), " (" + p.in + (p.required ? ", required" : "") + ") ",
                              p.description || ""]));
    });
    var body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
    if (body) {
      parts.push(el("h4", {}, ["Request body: " + typeOf(body.schema)]));
      parts.push(schemaTable(doc, body.schema));
      if (body.example) {
        parts.push(el("h4", {}, ["Example"]));
        parts.push(el("pre", {}, [JSON.stringify(body.example, null, 2)]));
        parts.push(tryIt(method, path, body.example));
      }
    }
    var rows = Object.keys(op.responses || {}).map(function (status) {
      var r = op.responses[status];
      var content = r.content || {};
      var types = Object.keys(content).map(function (ct) {
        return ct + (content[ct].schema ? " → " + typeOf(content[ct].schema) : "");
      });
      return el("tr", {}, [el("td", {class: "status"}, [status]), el("td", {}, [r.description || ""]),
                           el("td", {}, [types.join(", ")])]);
    });
    parts.push(el("h4", {}, ["Responses"]));
    parts.push(el("table", {}, [el("tr", {}, [el("th", {}, ["status"]), el("th", {}, ["meaning"]),
                                              el("th", {}, ["body"])])].concat(rows)));
    return {id: id, node: el("div", {class: "op"}, parts)};
  }
  function render(doc) {
    document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
    document.getElementById("description").textContent = doc.info.description || "";
    var toc = document.getElementById("toc");
    var ops = document.getElementById("operations");
    Object.keys(doc.paths).forEach(function (path) {
      Object.keys(doc.paths[path]).forEach(function (method) {
        var o = operation(doc, path, method, doc.paths[path][method]);
        ops.appendChild(o.node);
        toc.appendChild(el("a", {href: "#" + o.id}, [method.toUpperCase() + " " + path]));
      });
    });
    var schemas = document.getElementById("schemas");
    Object.keys(doc.components.schemas).forEach(function (name) {
      schemas.appendChild(el("h3", {id: "schema-" + name}, [name]));
      schemas.appendChild(schemaTable(doc, doc.components.schemas[name]));
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    fetch("openapi.json")
      .then(function (r) {
        if (!r.ok) { throw new Error("GET openapi.json answered " + r.status); }
        return r.json();
      })
      .then(render)
      .catch(function (e) { document.getElementById("description").textContent = "Cannot load the API: " + e; });
  });
})();
"""
