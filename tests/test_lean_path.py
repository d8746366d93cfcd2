"""The lean decision path: the schema-version-4 record payload (nothing said twice, the reasons' texts kept once per
catalog, read back exactly, older versions still read) and the one-pass applicant validation (the same values and
the same errors as marshmallow's load)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import marshmallow as ma
import pytest

from service.api.schemas import request_schemas
from service.core.canonical import canonical_json
from service.core.recorded import (
    ApplicationRequest,
    DecisionPayload,
    PayloadError,
    RecordedDecision,
    reason_to_json,
)
from service.core.texts import ReasonTexts
from service.runtime import ServedModel


@pytest.fixture(scope="module")
def served(trained_models: Any) -> ServedModel:
    store, result = trained_models
    return ServedModel.load(store, result.champion.name, result.champion.version)


def _recorded(served: ServedModel, applicant: dict[str, Any]) -> RecordedDecision:
    batch = served.engine.decide([applicant])
    return served.recorded(
        decision_id="d" * 32,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        request=ApplicationRequest("APP-1", applicant),
        decision=batch.decision(0),
        decided_by={"key_id": "k" * 12, "label": "test", "role": "scorer"},
        latency_ms=1.5,
        reason_stability=served.reason_stability(batch, 0),
    )


def _as_v2(payload: dict[str, Any], recorded: RecordedDecision) -> dict[str, Any]:
    """The same decision as schema version 2 wrote it (every reason in full)."""
    return {
        **payload,
        "schema_version": 2,
        "reasons": [reason_to_json(r) for r in recorded.decision.reasons],
        "attributions": dict(recorded.decision.attributions),
    }


def _texts(recorded: RecordedDecision) -> Any:
    """The lookup of the texts document a new record names (what its store does for a stored one)."""
    texts = recorded.payload.reason_texts
    assert texts is not None
    return texts.find


def _applicants(served: ServedModel) -> list[dict[str, Any]]:
    return [dict(a) for a in served.bundle.reference["applications"]]


def _json_types_only(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_types_only(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_v4_says_nothing_twice_and_reads_back_exactly(served: ServedModel) -> None:
    model_reasons = 0
    texts = served.engine.reason_texts
    for applicant in _applicants(served):
        recorded = _recorded(served, applicant)
        payload = recorded.payload.to_json()
        assert payload["schema_version"] == 4
        # the texts are named, not repeated: the catalog's document, every code of it
        assert payload["model"]["reason_texts_sha256"] == texts.sha256
        assert set(texts.texts) == {code.code for code in served.catalog.all_codes}
        for stored, reason in zip(payload["reasons"], recorded.decision.reasons, strict=True):
            # the paths the SQL report projection reads are where they were
            assert (stored["code"], stored["kind"], stored["adverse"]) == (reason.code, reason.kind, reason.adverse)
            assert "customer_text" not in stored and "auditor_text" not in stored
            assert texts.texts[reason.code] == (reason.customer_text, reason.auditor_text)
            assert all(set(v) == {"field", "label"} for v in stored["values"])  # the value is the applicant's
            assert "contribution" not in stored  # rules have none; a model reason's is derived from attributions
            model_reasons += reason.kind == "model"
        # the attributions: one number per applicant field, in the order of their names (as the object's keys are
        # ordered once stored as canonical JSON)
        assert payload["attributions"] == [dict(recorded.decision.attributions)[n] for n in sorted(applicant)]
        # made of JSON's own types only, so it is what reads back (the store hands it back without parsing it again)
        assert _json_types_only(payload) and json.loads(canonical_json(payload)) == payload
        read = RecordedDecision.of(_columns(recorded, json.loads(canonical_json(payload))))
        in_name_order = tuple(sorted(recorded.decision.attributions))
        assert read.decision == dataclasses.replace(recorded.decision, attributions=in_name_order)
        assert read.payload == dataclasses.replace(recorded.payload, attributions=in_name_order)
        # without its texts document it is unreadable, and says which document it lacks
        with pytest.raises(PayloadError, match=rf"payload\.model\.reason_texts_sha256: .* {texts.sha256}"):
            DecisionPayload.from_json(payload)
        # without a document to name, the texts are written in each reason (read with no lookup)
        inline = dataclasses.replace(recorded.payload, reason_texts=None).to_json()
        assert "reason_texts_sha256" not in inline["model"]
        assert DecisionPayload.from_json(inline).reasons == recorded.decision.reasons
        assert len(canonical_json(inline)) > len(canonical_json(payload))
        # version 2 of the same decision reads to the same decision, and is larger
        old = DecisionPayload.from_json(_as_v2(payload, recorded))
        assert old.schema_version == 2 and old.reasons == recorded.decision.reasons
    assert model_reasons > 0


def test_v4_texts_found_must_be_the_ones_named(served: ServedModel) -> None:
    recorded = _recorded(served, _applicants(served)[0])
    payload = recorded.payload.to_json()
    texts = served.engine.reason_texts
    # a lookup answering with another document (a store whose document was changed) does not word the reasons
    changed = ReasonTexts(texts.catalog_version, {**texts.texts, "X": ("x", "y")})
    with pytest.raises(PayloadError, match=r"reason_texts_sha256: the decision store holds no reason texts"):
        DecisionPayload.from_json(payload, lambda sha: changed)
    # a document without one of the record's codes
    code = payload["reasons"][0]["code"]
    short = ReasonTexts(texts.catalog_version, {k: v for k, v in texts.texts.items() if k != code})
    named = {**payload, "model": {**payload["model"], "reason_texts_sha256": short.sha256}}
    with pytest.raises(PayloadError, match=rf"payload\.reasons\[0\]: code '{code}' has no texts"):
        DecisionPayload.from_json(named, short.find)
    # a reason worded otherwise than its document keeps its own texts, and reads back as it was
    first = recorded.decision.reasons[0]
    reworded = (dataclasses.replace(first, customer_text="other words"), *recorded.decision.reasons[1:])
    kept = dataclasses.replace(recorded.payload, reasons=reworded).to_json()
    assert kept["reasons"][0]["customer_text"] == "other words"
    assert "customer_text" not in kept["reasons"][-1] or len(reworded) == 1
    assert DecisionPayload.from_json(kept, texts.find).reasons == reworded
    # the document's sha256 is of its canonical JSON, which reads back to the same document
    assert ReasonTexts.from_body(texts.body) == texts and ReasonTexts.from_body(texts.body).sha256 == texts.sha256


def test_a_contribution_the_attributions_do_not_derive_is_kept(served: ServedModel) -> None:
    recorded, index = next(
        (r, i)
        for a in _applicants(served)
        for r in [_recorded(served, a)]
        for i, reason in enumerate(r.decision.reasons)
        if reason.kind == "model"
    )
    reason = recorded.decision.reasons[index]
    assert reason.contribution_log_odds is not None
    nudged = dataclasses.replace(reason, contribution_log_odds=reason.contribution_log_odds + 1e-12)
    reasons = tuple(nudged if i == index else r for i, r in enumerate(recorded.decision.reasons))
    payload = dataclasses.replace(recorded.payload, reasons=reasons).to_json()
    assert payload["reasons"][index]["contribution"]["log_odds"] == nudged.contribution_log_odds
    assert DecisionPayload.from_json(payload, _texts(recorded)).reasons == reasons


def test_a_value_other_than_the_applicants_is_kept(served: ServedModel) -> None:
    recorded = _recorded(served, _applicants(served)[0])
    first = recorded.decision.reasons[0]
    other = dataclasses.replace(first.values[0], value="not the applicant's")
    reasons = (dataclasses.replace(first, values=(other, *first.values[1:])), *recorded.decision.reasons[1:])
    payload = dataclasses.replace(recorded.payload, reasons=reasons).to_json()
    assert payload["reasons"][0]["values"][0]["value"] == "not the applicant's"
    assert DecisionPayload.from_json(payload, _texts(recorded)).reasons == reasons


def test_attributions_not_aligned_with_the_applicant_are_an_object(served: ServedModel) -> None:
    recorded = _recorded(served, _applicants(served)[0])
    dropped = recorded.decision.attributions[0][0]
    applicant = {k: v for k, v in recorded.payload.applicant.items() if k != dropped}
    payload = dataclasses.replace(recorded.payload, applicant=applicant).to_json()
    assert payload["attributions"] == dict(recorded.decision.attributions)
    assert DecisionPayload.from_json(payload, _texts(recorded)).attributions == recorded.decision.attributions


def test_unreadable_v4_payloads_are_named(served: ServedModel) -> None:
    recorded = _recorded(served, _applicants(served)[0])
    payload = recorded.payload.to_json()
    texts = _texts(recorded)
    with pytest.raises(PayloadError, match=r"payload\.attributions: expected a list of \d+ numbers"):
        DecisionPayload.from_json({**payload, "attributions": payload["attributions"][1:]}, texts)
    with pytest.raises(PayloadError, match=r"payload\.attributions\[2\]: expected a finite number"):
        DecisionPayload.from_json(
            {**payload, "attributions": [*payload["attributions"][:2], "x", *payload["attributions"][3:]]}, texts
        )
    # a model reason's contribution left out, its field's attribution gone (an object without it): not derivable
    model_reason = next(i for i, r in enumerate(payload["reasons"]) if r["kind"] == "model")
    field = payload["reasons"][model_reason]["values"][0]["field"]
    names = sorted(recorded.payload.applicant)
    partial = {n: a for n, a in zip(names, payload["attributions"], strict=True) if n != field}
    with pytest.raises(PayloadError, match=rf"payload\.reasons\[{model_reason}\]\.contribution"):
        DecisionPayload.from_json({**payload, "attributions": partial}, texts)


def _columns(recorded: RecordedDecision, payload: dict[str, Any]) -> Any:
    from service.decisions import record_of

    return dataclasses.replace(record_of(recorded, None, recorded.request.request_hash), payload=payload)


# ---- the applicant's validation ---------------------------------------------------------------------------------


def _plain_nested(served: ServedModel) -> ma.Schema:
    """The same request schema with marshmallow's own Nested load of the applicant (what the one pass replaces)."""
    schema = request_schemas(served.bundle.spec, None, 10).decision_request
    fast = schema.fields["applicant"]
    plain = ma.fields.Nested(fast.schema, required=True)
    return ma.Schema.from_dict({**schema.declared_fields, "applicant": plain}, name="PlainDecisionRequest")()


def _outcome(schema: ma.Schema, body: Any) -> tuple[str, Any]:
    try:
        loaded = schema.load(body)
    except ma.ValidationError as exc:
        return "invalid", exc.messages
    return "valid", (loaded, list(loaded["applicant"]))


def test_the_one_pass_gives_what_marshmallow_gives(served: ServedModel) -> None:
    fast = request_schemas(served.bundle.spec, None, 10).decision_request
    plain = _plain_nested(served)
    spec = served.bundle.spec
    base = _applicants(served)[0]
    numeric = next(f.name for f in spec.fields if f.kind == "numeric")
    categorical = next(f.name for f in spec.fields if f.kind == "categorical")
    nullable = [f.name for f in spec.fields if f.missing]
    applicants: list[Any] = [
        base,
        {**base, numeric: "12"},
        {**base, numeric: True},
        {**base, categorical: "no such code"},
        {**base, "unknown_field": 1},
        {k: v for k, v in base.items() if k != numeric},
        {k: v for k, v in base.items() if k not in nullable},
        {**base, **dict.fromkeys(nullable)},
        [],
        "text",
        None,
        {},
    ]
    for applicant in applicants:
        body = {"application_id": "APP-1", "applicant": applicant}
        assert _outcome(fast, body) == _outcome(plain, body), applicant
    assert _outcome(fast, {"application_id": "APP-1", "applicant": base})[0] == "valid"


def test_a_worker_freezes_its_start_up_objects_and_a_serving_switch_freezes_again(tmp_path: Path) -> None:
    """gunicorn runs ``post_worker_init`` once the worker's app is built: the start-up objects leave the garbage
    collector's reach (a full collection over them stalled a request for some 40 ms); a switch freezes the new ones."""
    from gunicorn.config import Config

    assert "post_worker_init" in Config().settings  # the name gunicorn looks the hook up by in the config file
    code = (
        "import gc, json\n"
        "from service import gunicorn_conf\n"
        "from service.live import settle_heap\n"
        "before = gc.get_freeze_count()\n"
        "settle_heap()\n"  # a process that never froze anything is left alone
        "untouched = gc.get_freeze_count()\n"
        "gunicorn_conf.post_worker_init(None)\n"
        "frozen = gc.get_freeze_count()\n"
        "model = [[i] for i in range(5000)]\n"  # what a switch loads
        "settle_heap()\n"
        "print(json.dumps([before, untouched, frozen, gc.get_freeze_count(), len(gc.get_objects())]))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}  # the config would make a folder of its own
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    before, untouched, frozen, after, tracked = json.loads(done.stdout.strip().splitlines()[-1])
    assert before == 0 and untouched == 0
    assert frozen > 1000
    assert after > frozen
    assert tracked < 1000  # the 5,000 lists are frozen too: the collector walks only what was made since
