"""The console's review queue in real headless Chromium against a real gunicorn (its own server): referrals decided
through the API with the scorer key; a reviewer-only key signs in, sees only the queue, opens the oldest referral
(its reasons, attributions and inputs), records a final decision with a justification code and a note; the review is
an audit event in the chain, the automated record is unchanged, and the queue no longer holds it. Screenshots go to
test-artifacts/console/.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "console"
NOTE = "Income verified from six payslips; employer confirmed by phone."


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


def test_a_reviewer_takes_a_referral_from_the_queue_to_a_final_decision(
    console_server: str, api_keys: dict[str, str], german_applications: list[Any], browser: Any
) -> None:
    base = console_server
    requests = [request for request, _ in german_applications[:60]]
    decided = _call("POST", f"{base}/v1/decisions:batch", api_keys["scorer"], {"applications": requests})["items"]
    referred = [item["decision"] for item in decided if item["decision"]["decision"] == "refer"]
    assert len(referred) >= 2, "the tiny model referred fewer than 2 of 60 real applications"
    queue = _call("GET", f"{base}/v1/reviews/queue?limit=100", api_keys["reviewer"])["items"]
    assert [q["decision_id"] for q in queue][: len(referred)] == [r["decision_id"] for r in referred]
    oldest = queue[0]
    before = _call("GET", f"{base}/v1/decisions/{oldest['decision_id']}", api_keys["auditor"])

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1360, "height": 1100}, device_scale_factor=1)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.goto(f"{base}/console/")
    page.get_by_label("API key").fill(api_keys["reviewer"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#queue-body tr")
    problems.clear()  # the auditor probe's 403 is logged as a failed resource load
    # a reviewer-only key sees the queue and nothing of the auditor's
    assert page.locator("#nav-reviews").is_visible()
    for hidden in ("#nav-decisions", "#nav-report", "#nav-compare", "#nav-events"):
        assert page.locator(hidden).is_hidden(), hidden
    assert "a reviewer key" in page.inner_text("#session-label")
    rows = page.locator("#queue-body tr")
    if len(queue) > 25:  # a page of 25, then the rest
        assert rows.count() == 25
        page.get_by_role("button", name="Load more").click()
        page.wait_for_function(f"() => document.querySelectorAll('#queue-body tr').length === {len(queue)}")
        assert page.locator("#queue-more").is_hidden()
    assert rows.count() == len(queue)
    assert rows.first.get_attribute("data-decision-id") == oldest["decision_id"]

    # open the oldest: what the automated decision was and why
    rows.first.get_by_role("button", name=f"Review application {oldest['application_id']}").click()
    page.wait_for_selector("#review-panel:not([hidden])")
    assert page.inner_text("#review-title") == f"Review of application {oldest['application_id']}"
    reasons = page.locator("#review-reasons li")
    assert reasons.count() == len(oldest["response"]["reasons"])
    for i, reason in enumerate(oldest["response"]["reasons"]):
        assert reasons.nth(i).inner_text().startswith(f"{reason['code']} {reason['customer_text']}")
    assert page.locator("#review-attributions tr").count() == min(
        6, len(oldest["response"]["explanation"]["attributions"])
    )
    assert page.locator("#review-inputs tr").count() == len(oldest["request"]["applicant"])
    # the justification codes follow the final decision chosen
    page.select_option("#rv-final", "approve")
    approve_codes = page.locator("#rv-code option").all_inner_texts()
    page.select_option("#rv-final", "decline")
    decline_codes = page.locator("#rv-code option").all_inner_texts()
    assert any(t.startswith("J01 ") for t in approve_codes) and not any(t.startswith("J01 ") for t in decline_codes)
    assert any(t.startswith("J04 ") for t in decline_codes) and not any(t.startswith("J04 ") for t in approve_codes)
    page.select_option("#rv-final", "approve")
    page.select_option("#rv-code", "J01")
    page.fill("#rv-note", NOTE)
    page.locator("#review-panel").screenshot(path=str(ARTIFACTS / "review-panel.png"))
    page.get_by_role("button", name="Record final decision").click()
    page.wait_for_selector(f"#status:has-text('Recorded: application {oldest['application_id']} → approve (J01)')")
    assert page.locator("#review-panel").is_hidden()
    assert page.locator(f"#queue-body tr[data-decision-id='{oldest['decision_id']}']").count() == 0
    assert rows.count() == len(queue) - 1
    page.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)
    assert not problems, problems
    context.close()

    # the review is an audit event naming the reviewer; the automated record is unchanged
    review = _call("GET", f"{base}/v1/decisions/{oldest['decision_id']}/review", api_keys["reviewer"])
    assert review["kind"] == "review" and review["actor"]["role"] == "reviewer"
    details = review["details"]
    assert (details["final_decision"], details["override"], details["note"]) == ("approve", True, NOTE)
    assert details["automated"]["decision"] == "refer" and details["justification"]["code"] == "J01"
    assert _call("GET", f"{base}/v1/decisions/{oldest['decision_id']}", api_keys["auditor"]) == before
    events = _call("GET", f"{base}/v1/audit/events?kind=review", api_keys["auditor"])["items"]
    assert [e["event_id"] for e in events] == [review["event_id"]]
    left = _call("GET", f"{base}/v1/reviews/queue?limit=100", api_keys["reviewer"])["items"]
    assert oldest["decision_id"] not in {q["decision_id"] for q in left} and len(left) == len(queue) - 1
