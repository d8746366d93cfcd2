"""The console's lifecycle views in real headless Chromium against a real gunicorn (its own server): a challenger
(the tiny trained scorecard) and a candidate policy put in shadow with an admin key through the API, live decisions
and their shadow twins; then, with the auditor key only, the decision view's shadow panel, the champion vs challenger
comparison and the admin actions. Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "console"
PAGE_SIZE = 25  # the console's page of search results and admin actions
TOGGLES = 13  # challenger stopped and started again: 1 + 2 * 13 admin events, more than one page
NOTE = "scorecard review"
CANDIDATE = "console-candidate-2.0.0"  # a candidate policy: the champion's with stricter cut-offs
ADMIN_PATHS = ("/v1/models", "/v1/serving", "/v1/policies", "/v1/outcomes", "/v1/decisions:batch")


def _call(method: str, url: str, key: str, payload: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:500]!r}") from None


def _candidate_policy(store_root: Path, name: str, version: str) -> dict[str, str]:
    """The version's own policy with every cut-off but the last raised by 25 points, as CANDIDATE, and its catalog."""
    folder = store_root / name / version
    policy = yaml.safe_load((folder / "policy.yaml").read_text(encoding="utf-8"))
    policy["policy_version"] = CANDIDATE
    for band in policy["bands"][:-1]:
        band["min_score"] += 25
    catalog = (folder / "reason_codes.yaml").read_text(encoding="utf-8")
    return {"policy_yaml": yaml.safe_dump(policy, sort_keys=False), "reason_codes_yaml": catalog}


@pytest.fixture(scope="module")
def shadowed(
    console_server: str, api_keys: dict[str, str], german_applications: list[Any], trained_models: Any
) -> dict[str, Any]:
    """One decision before any shadow; the scorecard in shadow (admin key, after 26 on/off toggles) and a candidate
    policy in shadow; 119 decisions whose two twins each are polled until recorded (the shadow runner records them
    off the critical path)."""
    store, result = trained_models
    base, admin, scorer, auditor = console_server, api_keys["admin"], api_keys["scorer"], api_keys["auditor"]
    challenger = {"name": result.baseline.name, "version": result.baseline.version}
    requests = [request for request, _ in german_applications]

    before = _call("POST", f"{base}/v1/decisions", scorer, requests[0])
    _call("PUT", f"{base}/v1/models/challenger", admin, {**challenger, "note": NOTE})
    for _ in range(TOGGLES):
        _call("DELETE", f"{base}/v1/models/challenger?note=pause", admin)
        _call("PUT", f"{base}/v1/models/challenger", admin, {**challenger, "note": "again"})
    candidate = _candidate_policy(Path(store.root), result.champion.name, result.champion.version)
    _call("POST", f"{base}/v1/policies", admin, {**candidate, "note": "stricter cut-offs"})
    _call("PUT", f"{base}/v1/policies/shadow", admin, {"policy": CANDIDATE})
    serving = _call("GET", f"{base}/v1/serving", admin)
    assert serving["state"]["challenger"]["name"] == challenger["name"]
    assert serving["state"]["policy_shadow"] == CANDIDATE
    # one worker: the one that took the admin calls serves the challenger at once
    assert serving["worker"], serving

    decided: list[dict[str, Any]] = []
    for start in range(1, len(requests), 60):
        batch = _call("POST", f"{base}/v1/decisions:batch", scorer, {"applications": requests[start : start + 60]})
        decided += [item["decision"] for item in batch["items"]]
    assert len(decided) == len(requests) - 1

    twins: dict[str, dict[str, dict[str, Any]]] = {}  # decision id -> kind -> its twin
    deadline = time.monotonic() + 60
    while len(twins) < len(decided):
        for d in decided:
            if d["decision_id"] in twins:
                continue
            shadows = _call("GET", f"{base}/v1/decisions/{d['decision_id']}/shadows", auditor)["shadows"]
            if len(shadows) == 2:
                twins[d["decision_id"]] = {s["kind"]: s for s in shadows}
                assert sorted(twins[d["decision_id"]]) == ["challenger", "policy"]
        assert time.monotonic() < deadline, f"only {len(twins)} of {len(decided)} shadow decisions were recorded"
        if len(twins) < len(decided):
            time.sleep(0.2)
    assert _call("GET", f"{base}/v1/decisions/{before['decision_id']}/shadows", auditor)["shadows"] == []

    events = _call("GET", f"{base}/v1/audit/events?limit=100", auditor)["items"]
    assert [e["kind"] for e in events[-2:]] == ["policy_added", "policy_shadow_on"]
    assert len(events) == 1 + 2 * TOGGLES + 2 and events[0]["kind"] == "shadow_on"
    differs = [d for d in decided if twins[d["decision_id"]]["challenger"]["decision"] != d["decision"]]
    agrees = [d for d in decided if all(t["decision"] == d["decision"] for t in twins[d["decision_id"]].values())]
    assert differs and agrees, "the scorecard and the gbt champion agree on all or none of 119 applications"
    return {
        "before": before,
        "decided": decided,
        "twins": twins,
        "differs": differs,
        "agrees": agrees,
        "events": events,
        "champion": f"{result.champion.name} {result.champion.version}",
        "challenger": f"{challenger['name']} {challenger['version']}",
    }


def test_console_shadow_panel_comparison_and_admin_actions(
    console_server: str, api_keys: dict[str, str], shadowed: dict[str, Any], browser: Any
) -> None:
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": 1360, "height": 1000}, device_scale_factor=1, accept_downloads=True
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    external: list[str] = []
    calls: list[tuple[str, str]] = []

    def on_request(req: Any) -> None:
        if req.url.startswith(f"{console_server}/v1/"):
            calls.append((req.method, req.url[len(console_server) :]))
        elif not req.url.startswith((console_server, "blob:", "data:")):
            external.append(req.url)

    page.on("request", on_request)

    def open_hash(fragment: str) -> None:
        page.evaluate("fragment => { location.hash = fragment; }", fragment)

    page.goto(f"{console_server}/console/")
    for hidden in ("#view-compare", "#view-events", "#nav-compare", "#nav-events", "#events-more", "#compare-panel"):
        assert page.locator(hidden).is_hidden(), f"{hidden} is shown although hidden"
    page.get_by_label("API key").fill(api_keys["auditor"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#results-body tr")

    # a decision made before any shadow ran: the panel says none was recorded
    open_hash(f"#/decision/{shadowed['before']['decision_id']}")
    page.wait_for_selector("#shadows-none")
    assert "None recorded" in page.inner_text("#shadows-panel")

    # a decision the scorecard decided otherwise: the twin, flagged, with its decision, score, band and reasons
    champion = shadowed["differs"][0]
    twins = shadowed["twins"][champion["decision_id"]]
    twin = twins["challenger"]
    open_hash(f"#/decision/{champion['decision_id']}")
    page.wait_for_selector(f"#d-id:has-text('{champion['decision_id']}')")
    page.locator("#shadows .twin").first.wait_for()
    assert page.locator("#shadows .twin").count() == 2
    card = page.locator("#shadows .twin[data-kind='challenger']")
    assert card.get_attribute("data-decision") == twin["decision"]
    assert "differs" in (card.get_attribute("class") or "").split()
    heading = page.get_by_role("heading", name=f"Challenger model: {shadowed['challenger']}")
    assert heading.is_visible()
    flag = card.locator(".flag").inner_text()
    assert flag == f"Decision differs: champion {champion['decision']}, challenger model {twin['decision']}"
    assert card.locator("td[data-field='Decision']").text_content() == twin["decision"]
    assert card.locator("td[data-field='Score']").inner_text().startswith(str(twin["score"]))
    assert card.locator("td[data-field='Risk band']").inner_text() == twin["risk_band"]
    assert shadowed["challenger"] in card.locator("td[data-field='Model']").inner_text()
    assert card.locator("td[data-field='Policy version']").inner_text() == twin["policy_version"]
    reasons = card.locator(".twin-reasons li")
    assert reasons.count() == min(4, len(twin["reasons"]))
    for i, reason in enumerate(twin["reasons"][:4]):
        assert reasons.nth(i).inner_text() == f"{reason['code']} {reason['customer_text']}"
    assert twin["record_hash"] in card.inner_text()
    # the candidate policy's twin: the champion's model with the candidate's cut-offs
    policy_twin, policy_card = twins["policy"], page.locator("#shadows .twin[data-kind='policy']")
    assert page.get_by_role(
        "heading", name=f"Candidate policy: policy {CANDIDATE} on {shadowed['champion']}"
    ).is_visible()
    assert policy_card.locator("td[data-field='Decision']").text_content() == policy_twin["decision"]
    assert policy_card.locator("td[data-field='Policy version']").inner_text() == CANDIDATE
    policy_differs = policy_twin["decision"] != champion["decision"]
    assert ("differs" in (policy_card.get_attribute("class") or "").split()) == policy_differs
    card.scroll_into_view_if_needed()
    page.locator("#shadows-panel").screenshot(path=str(ARTIFACTS / "decision-shadows.png"))

    # a decision both decided alike: no flag of a difference
    same = shadowed["agrees"][0]
    open_hash(f"#/decision/{same['decision_id']}")
    page.wait_for_selector(f"#shadows .twin[data-decision='{same['decision']}']")
    page.wait_for_function("() => document.querySelectorAll('#shadows .twin').length === 2")
    assert page.locator("#shadows .twin.differs").count() == 0
    assert page.locator("#shadows .twin .flag").all_inner_texts() == ["Same decision as the champion"] * 2

    # champion vs challenger over today: the comparison report in a frame, named by both versions; JSON download
    page.get_by_role("link", name="Champion vs challenger").click()
    page.wait_for_selector("#view-compare:not([hidden])")
    assert page.get_attribute("#nav-compare", "aria-current") == "page"
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    form = page.get_by_role("form", name="Comparison period")
    form.get_by_label("From (UTC)").fill(today.isoformat())
    form.get_by_label("To (UTC, exclusive)").fill(tomorrow.isoformat())
    form.get_by_label("Shadow").select_option("challenger")
    page.get_by_role("button", name="Show comparison").click()
    report = page.frame_locator("#compare-frame")
    report.locator("h1").wait_for(timeout=30_000)
    title = report.locator("h1").inner_text()
    assert shadowed["champion"] in title and shadowed["challenger"] in title, title
    page.wait_for_function("t => document.getElementById('compare-frame').title === t", arg=title)
    summary = report.locator("#summary").inner_text()
    assert "Pairs compared" in summary and str(len(shadowed["decided"])) in summary
    assert (page.get_attribute("#compare-open", "href") or "").startswith("blob:")
    page.screenshot(path=str(ARTIFACTS / "compare.png"))
    with page.expect_download() as download_info:
        form.get_by_role("button", name="JSON").click()
    download = download_info.value
    assert download.suggested_filename == f"credit-decision-challenger-comparison_{today}_{tomorrow}.json"
    comparison = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert comparison["kind"] == "challenger" and comparison["counts"]["pairs"] == len(shadowed["decided"])
    # the same period, the candidate policy against the current one
    form.get_by_label("Shadow").select_option("policy")
    page.get_by_role("button", name="Show comparison").click()
    page.wait_for_function("() => document.getElementById('compare-frame').title.includes('" + CANDIDATE + "')")
    assert CANDIDATE in report.locator("h1").inner_text()

    # admin actions: chain order, a page of 25 then "Load more" to the end; who and what of each
    page.get_by_role("link", name="Admin actions").click()
    page.wait_for_selector("#events-body tr.event")
    assert page.get_attribute("#nav-events", "aria-current") == "page"
    rows = page.locator("#events-body tr.event")
    assert rows.count() == PAGE_SIZE
    first = rows.first
    event = shadowed["events"][0]
    assert first.get_attribute("data-kind") == "shadow_on"
    assert first.get_attribute("data-seq") == str(event["seq"])
    assert "env:admin" in first.locator("td.who").inner_text()
    assert event["actor"]["key_id"] in first.locator("td.who").inner_text()
    assert first.locator("td.what").inner_text() == f"challenger {shadowed['challenger']} in shadow ({NOTE})"
    assert rows.nth(1).locator("td.what").inner_text() == f"stopped challenger {shadowed['challenger']} (pause)"
    load_more = page.locator("#events-more")
    assert load_more.is_visible()
    load_more.click()
    page.wait_for_function(f"() => document.querySelectorAll('#events-body tr.event').length > {PAGE_SIZE}")
    assert load_more.is_hidden()
    seqs = [int(s) for s in page.eval_on_selector_all("#events-body tr.event", "rows => rows.map(r => r.dataset.seq)")]
    assert seqs == [e["seq"] for e in shadowed["events"]] and seqs == sorted(set(seqs))
    what = rows.locator("td.what").all_inner_texts()
    assert what[-2].startswith(f"stored candidate policy {CANDIDATE} (catalog ") and what[-2].endswith(
        "(stricter cut-offs)"
    )
    assert what[-1] == f"candidate policy {CANDIDATE} in shadow"

    # a row expands (keyboard) to its full details and hashes
    toggle = first.get_by_role("button", name=f"Details of event #{event['seq']}")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.focus()
    page.keyboard.press("Enter")
    detail = page.locator(f"#event-detail-{event['seq']}")
    detail.wait_for()
    assert toggle.get_attribute("aria-expanded") == "true"
    text = detail.inner_text()
    assert event["record_hash"] in text and event["prev_hash"] in text and event["event_id"] in text
    details_json = json.loads(detail.locator("pre.json").nth(1).inner_text())
    assert details_json == event["details"]
    assert json.loads(detail.locator("pre.json").nth(2).inner_text()) == event["serving_state"]
    page.screenshot(path=str(ARTIFACTS / "events.png"))
    toggle.click()
    assert detail.is_hidden() and toggle.get_attribute("aria-expanded") == "false"

    # filters: by kind, and a period with none
    filters = page.get_by_role("form", name="Admin action filters")
    filters.get_by_label("Kind").select_option("shadow_off")
    filters.get_by_role("button", name="Search").click()
    page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#events-body tr.event')];"
        " return rows.length > 0 && rows.every(r => r.dataset.kind === 'shadow_off'); }"
    )
    assert rows.count() == TOGGLES and load_more.is_hidden()
    filters.get_by_label("Kind").select_option("")
    filters.get_by_label("To (UTC, exclusive)").fill(today.isoformat())
    filters.get_by_role("button", name="Search").click()
    page.wait_for_selector("#events-empty:not([hidden])")
    assert rows.count() == 0

    context.close()
    assert not problems, problems
    assert not external, f"the console fetched external resources: {external}"
    # the console is read-only: only GETs (the auditor's endpoints), never an admin endpoint
    assert calls and all(method == "GET" for method, _ in calls), calls
    assert not [path for _, path in calls if path.startswith(ADMIN_PATHS)], calls
    assert time.monotonic() - started < 60
