"""The period report over a SQL store reads a projection of each payload, with exactly the numbers of before.

``report_rows`` (the database extracts the report's parts of each payload) against the reference: every record
read whole through its typed payload (``rows_from_records(records_between(...))``) and the same pure
``build_report``. Same rows, same report, number for number, on SQLite and PostgreSQL; first-version payloads
included.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from model_store.policy import Policy
from model_store.spec import FeatureSpec
from service.core.engine import Decision, Reason, RuleHit
from service.core.recorded import ApplicationRequest, ModelProvenance, RecordedDecision, ScoreScale
from service.decisions import record_of
from service.records import DecisionRecord, open_decision_store
from service.records.model import parse_timestamp
from service.records.outcomes import ObservedOutcome, latest_outcomes, record_outcomes
from service.reports.core import (
    Baseline,
    CategoricalBaseline,
    NumericBaseline,
    Period,
    ReportSettings,
    build_report,
    to_jsonable,
)
from service.reports.source import records_between, report_from_store, report_rows, rows_from_records

CONFIG = Path(__file__).resolve().parents[1] / "config" / "german_credit"
V1_RECORDS = Path(__file__).parent / "data" / "records_schema_v1.json"
PERIOD = Period(datetime(2025, 3, 8, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC))
REASONS = (
    ("C01", "model"), ("C02", "model"), ("C03", "model"), ("C04", "model"), ("C07", "model"),
    ("R01", "rule"), ("R02", "rule"), ("R03", "rule"), ("R04", "rule"), ("R05", "rule"), ("R06", "rule"),
)  # fmt: skip
BASELINE = Baseline(
    "gbt",
    "v2",
    (
        ("age_years", NumericBaseline((25.0, 35.0, 50.0), (0.2, 0.3, 0.3, 0.2), 0.01)),
        ("credit_amount", NumericBaseline((1000.0, 3000.0), (0.3, 0.4, 0.3))),
        ("purpose", CategoricalBaseline((("car_new", 0.5), ("business", 0.3), ("other", 0.2)), 0.02)),
    ),
    NumericBaseline((500.0, 600.0, 700.0), (0.2, 0.3, 0.3, 0.2)),
    (("A", 0.3), ("B", 0.3), ("C", 0.2), ("D", 0.2)),
)


def _record(rng: random.Random, n: int, created_at: datetime) -> DecisionRecord:
    """A decision record as the decision service writes it, with awkward values: None, floats, unicode, no data."""
    decision = rng.choice(("approve", "approve", "refer", "decline"))
    cited = rng.sample(REASONS, rng.randint(0, 3) if n % 40 else 11)  # now and then more than the SQL reads by index
    applicant: dict[str, Any] = {
        "age_years": rng.choice((None, 19, 24, 25, 34.5, 35, 49, 50, 64, 65, 80)),
        "credit_amount": rng.choice((250, 1000, 1000.0, 2999.99, 0.1 + 0.2, 3000, 12_000.5)),
        "purpose": rng.choice((None, "car_new", "business", "other", "yacht", "Prüfung ✓")),
        "own_home": rng.choice((True, False)),
    }
    monitoring = rng.choice((None, {}, {"sex": "female"}, {"sex": "male", "foreign_worker": "no"}, {"sex": "x"}))
    request = ApplicationRequest(f"app-{n}", applicant, monitoring)
    recorded = RecordedDecision.new(
        decision_id=f"d-{n:05d}",
        created_at=created_at,
        request=request,
        decision=Decision(
            decision=decision,  # type: ignore[arg-type]
            score=rng.randint(300, 850),
            probability_of_default=rng.random() / 3 + (1e-7 if n % 7 == 0 else 0.0),
            margin=0.0,
            base_value=0.0,
            risk_band=rng.choice("ABCDE"),
            reasons=tuple(
                Reason(code, kind, None, "text", "audit", (), None, None, decision != "approve")  # type: ignore[arg-type]
                for code, kind in cited
            ),
            rules_fired=tuple(RuleHit(c, "credit_amount", "gt", 0, "refer", "rule") for c, k in cited if k == "rule"),
            attributions=(),
        ),
        model_name="gbt",
        model_version=rng.choice(("v1", "v2", "v2")),
        provenance=ModelProvenance("a" * 64, "b" * 64, "gbt", "spec-1", "policy-1", "catalog-1"),
        score_scale=ScoreScale(300, 850, 57.7),
        decided_by={},
        latency_ms=rng.choice((None, 0.25, 3.125, 7.0, rng.random() * 200)),
    )
    return record_of(recorded, None, request.request_hash)


def _v1_records(created_at: datetime) -> list[DecisionRecord]:
    """The first version's records (tests/data), moved into the period."""
    out = []
    for i, data in enumerate(json.loads(V1_RECORDS.read_text(encoding="utf-8"))):
        assert parse_timestamp(data["created_at"]) and "schema_version" not in data["payload"]
        out.append(
            DecisionRecord(
                decision_id=f"v1-{i}",
                application_id=data["application_id"],
                created_at=created_at + timedelta(minutes=i),
                idempotency_key=None,
                request_hash=data["request_hash"],
                decision=data["decision"],
                risk_band=data["risk_band"],
                score=data["score"],
                model_name=data["model_name"],
                model_version=data["model_version"],
                reason_codes=tuple(data["reason_codes"]),
                payload=data["payload"],
            )
        )
    return out


def test_report_projection_gives_the_same_rows_and_the_same_report(decision_store_url: str) -> None:
    rng = random.Random(12)
    store = open_decision_store(decision_store_url)
    try:
        start = PERIOD.previous.start - timedelta(hours=5)  # some records before both periods
        for n in range(260):
            store.save(_record(rng, n, start + timedelta(minutes=83 * n + rng.randint(0, 60))))
        for record in _v1_records(PERIOD.start + timedelta(days=2)):
            store.save(record)
        assert store.count() == 262
        observed = datetime(2025, 4, 1, tzinfo=UTC)
        record_outcomes(
            store,
            [ObservedOutcome(f"d-{n:05d}", rng.choice(("good", "bad")), observed) for n in range(0, 260, 3)],
            observed,
        )
        since, until = PERIOD.previous.start, PERIOD.end
        outcomes = latest_outcomes(store, since, until)
        reference_rows = rows_from_records(records_between(store, since, until), outcomes)
        rows = report_rows(store, since, until, outcomes)
        assert len(rows) > 150 and {"v1-0", "v1-1"} <= {r.decision_id for r in rows}  # first-version payloads too
        assert sorted(rows, key=lambda r: r.decision_id) == sorted(reference_rows, key=lambda r: r.decision_id)
        assert sum(r.outcome is not None for r in rows) > 20

        spec = FeatureSpec.load(CONFIG / "feature_spec.yaml")
        settings = ReportSettings.of(spec, Policy.load(CONFIG / "policy.yaml", spec))
        settings = replace(settings, thresholds=replace(settings.thresholds, min_sample=10))
        for model_name in (None, "gbt"):
            expected = build_report(
                reference_rows, PERIOD, reference_rows, BASELINE, model_name, ("R01", "R02", "R03"), settings=settings
            )
            got = build_report(rows, PERIOD, rows, BASELINE, model_name, ("R01", "R02", "R03"), settings=settings)
            assert to_jsonable(got) == to_jsonable(expected)  # every number, exactly
            assert expected.summary.decisions > 50 and expected.field_csi and expected.backtest is not None

        # the report the API and the CLI serve goes through the projection
        served = report_from_store(store, Path("/nonexistent-model-store"), PERIOD)
        assert served.summary.decisions == sum(1 for r in reference_rows if PERIOD.contains(r.created_at))
        assert served.summary.approved == sum(
            1 for r in reference_rows if PERIOD.contains(r.created_at) and r.decision == "approve"
        )
    finally:
        store.close()
