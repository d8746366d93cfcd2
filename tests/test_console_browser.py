"""The auditor console in real headless Chromium against a real gunicorn: sign in, search, open a decision,
see the waterfall, replay, open the notice, open the period report. Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "console"
N_FIELDS = 18  # applicant fields of config/german_credit/feature_spec.yaml


def _post(url: str, payload: Any, key: str) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def seeded(console_server: str, api_keys: dict[str, str], german_applications: list[Any]) -> dict[str, Any]:
    """120 real applications decided through the API, their observed outcomes posted back."""
    requests = [request for request, _ in german_applications]
    decided = []
    for start in range(0, len(requests), 60):
        batch = _post(
            f"{console_server}/v1/decisions:batch", {"applications": requests[start : start + 60]}, api_keys["scorer"]
        )
        decided += [item["decision"] for item in batch["items"]]
    assert len(decided) == len(requests)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    outcomes = [
        {"decision_id": d["decision_id"], "outcome": outcome, "observed_at": now}
        for d, (_, outcome) in zip(decided, german_applications, strict=True)
    ]
    assert _post(f"{console_server}/v1/outcomes", {"outcomes": outcomes}, api_keys["admin"])["stored"] == len(outcomes)
    declined = [d for d in decided if d["decision"] == "decline"]
    assert declined, "the tiny model declined none of the first 120 German applications"
    return {"decided": decided, "declined": declined}


def test_console_search_decision_waterfall_replay_notice_report(
    console_server: str, api_keys: dict[str, str], seeded: dict[str, Any], browser: Any
) -> None:
    started = time.monotonic()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    external: list[str] = []
    page.on(
        "request",
        lambda req: external.append(req.url) if not req.url.startswith((console_server, "blob:", "data:")) else None,
    )

    # sign in: a wrong key is refused, the auditor key is accepted
    page.goto(f"{console_server}/console/")
    # what carries the `hidden` attribute is not shown, whatever display the style sheet gives it
    for hidden in ("#nav", "#session", "#view-decisions", "#load-more", "#notice-panel"):
        assert page.locator(hidden).is_hidden(), f"{hidden} is shown although hidden"
    page.get_by_label("API key").fill(api_keys["scorer"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#signin-error:has-text('neither the auditor nor the reviewer role')")
    page.get_by_label("API key").fill(api_keys["auditor"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#results-body tr")
    problems.clear()  # the refused key's 403 was logged as a failed resource load
    assert page.locator("#results-body tr").count() == 25
    # this tab keeps the key and the roles it holds (an auditor key: not a reviewer's), nothing else
    assert page.evaluate("Object.keys(sessionStorage).sort()") == [
        "credit-decision.auditor-key",
        "credit-decision.roles",
    ]
    assert page.evaluate("sessionStorage.getItem('credit-decision.roles')").split() == ["auditor"]
    assert page.locator("#nav-reviews").is_hidden()
    assert page.locator("#results-empty").is_hidden() and page.locator("#view-signin").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "search.png"))

    # "Load more" follows the cursor to the last page and then goes away: every decision once, none twice
    load_more = page.get_by_role("button", name="Load more")
    while load_more.is_visible():
        shown = page.locator("#results-body tr").count()
        load_more.click()
        page.wait_for_function(
            f"() => document.querySelectorAll('#results-body tr').length > {shown}"
            " || document.getElementById('load-more').hidden"
        )
    ids = page.eval_on_selector_all("#results-body tr", "rows => rows.map(r => r.dataset.decisionId)")
    assert len(ids) == len(set(ids)) == len(seeded["decided"])
    assert load_more.is_hidden()

    # search the declines; open the first one with the keyboard
    page.get_by_role("form", name="Search filters").get_by_label("Decision").select_option("decline")
    page.get_by_role("button", name="Search").click()
    page.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('#results-body tr td:nth-child(3)')];"
        " return cells.length > 0 && cells.every(td => td.textContent === 'decline'); }"
    )
    rows = page.locator("#results-body tr")
    assert rows.count() == min(25, len(seeded["declined"]))
    first = seeded["declined"][0]
    assert rows.first.get_attribute("data-decision-id") == first["decision_id"]
    rows.first.locator("a").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#waterfall svg")

    # the decision: summary, waterfall, reasons with both texts, versions with hashes
    assert page.text_content("#d-decision") == "decline"
    assert page.inner_text("#d-score") == str(first["score"]["value"])
    assert page.inner_text("#d-band") == first["risk_band"]
    bars = page.locator("#waterfall svg rect.wf-bar")
    assert bars.count() == N_FIELDS + 2
    kinds = [bars.nth(i).get_attribute("data-kind") for i in range(bars.count())]
    assert kinds == ["base"] + ["field"] * N_FIELDS + ["total"]
    values = [float(bars.nth(i).get_attribute("data-value") or "nan") for i in range(bars.count())]
    explanation = first["explanation"]
    assert values[0] == pytest.approx(explanation["base_value"], abs=1e-12)
    assert values[-1] == pytest.approx(explanation["margin"], abs=1e-12)
    assert values[0] + sum(values[1:-1]) == pytest.approx(explanation["margin"], abs=1e-5)
    impacts = [abs(v) for v in values[1:-1]]
    assert impacts == sorted(impacts, reverse=True)  # sorted by impact
    fields = [bars.nth(i).evaluate("b => b.parentNode.dataset.field") for i in range(1, N_FIELDS + 1)]
    assert sorted(fields) == sorted(explanation["attributions"])
    reasons = page.locator("#reasons .reason")
    assert reasons.count() == len(first["reasons"])
    for i, reason in enumerate(first["reasons"]):
        text = reasons.nth(i).inner_text()
        assert reason["customer_text"] in text and reason["auditor_text"] in text
    versions = page.inner_text("#versions")
    assert first["model"]["sha256"] in versions and first["policy_version"] in versions
    assert first["catalog_version"] in versions

    # replay with the recorded versions
    page.get_by_role("button", name="Replay decision").click()
    page.wait_for_selector("#replay-verdict")
    assert "Replay matched" in page.inner_text("#replay-verdict")
    page.screenshot(path=str(ARTIFACTS / "decision.png"), full_page=True)

    # the adverse-action notice of this decline
    page.get_by_role("button", name="Open adverse-action notice").click()
    notice = page.frame_locator("#notice-frame")
    notice.locator("#principal-reasons li").first.wait_for()
    assert notice.locator("#principal-reasons li").count() == min(4, len(first["reasons"]))
    assert first["reasons"][0]["customer_text"] in notice.locator("#principal-reasons").inner_text()
    assert "no record of credit inquiries" in notice.locator("#inquiries-note").inner_text()
    page.locator("#notice-panel").screenshot(path=str(ARTIFACTS / "notice.png"))

    # the period report, embedded
    page.get_by_role("link", name="Period report").click()
    today = datetime.now(UTC).date()
    page.locator("#r-from").fill((today - timedelta(days=6)).isoformat())
    page.locator("#r-to").fill((today + timedelta(days=1)).isoformat())
    page.get_by_role("button", name="Show report").click()
    report = page.frame_locator("#report-frame")
    report.locator("h1").wait_for(timeout=30_000)
    assert "Key figures" in report.locator("#summary").inner_text()
    assert "120" in report.locator("#summary").inner_text()
    page.screenshot(path=str(ARTIFACTS / "report-in-console.png"))
    report_url = page.get_attribute("#report-open", "href")
    assert report_url and report_url.startswith("blob:")
    standalone = context.new_page()
    standalone.set_viewport_size({"width": 1100, "height": 1500})
    standalone.goto(report_url)
    standalone.wait_for_selector("#summary")
    standalone.screenshot(path=str(ARTIFACTS / "report.png"))

    # signing out forgets the key
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#view-signin:not([hidden])")
    assert page.evaluate("sessionStorage.length") == 0

    context.close()
    assert not problems, problems
    assert not external, f"the console fetched external resources: {external}"
    assert time.monotonic() - started < 60
