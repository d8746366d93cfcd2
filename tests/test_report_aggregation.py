"""The period report over a SQL store reads its report rows, with exactly the numbers of whole records.

``report_columns`` (the narrow report row written with each record, read in batches into columns) against the
reference: every record read whole through its typed payload (``rows_from_records(records_between(...))``) and the
same pure ``build_report``. Same report, number for number, on SQLite and PostgreSQL; first-version payloads
included; records stored without a report row are counted (their rows are made first); a purge takes the rows of
the records it purges.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store.policy import Policy
from model_store.spec import FeatureSpec
from service.core.engine import Decision, Reason, RuleHit
from service.core.recorded import ApplicationRequest, ModelProvenance, PayloadError, RecordedDecision, ScoreScale
from service.decisions import record_of
from service.records import DecisionRecord, open_decision_store
from service.records.model import parse_timestamp
from service.records.outcomes import ObservedOutcome, latest_outcomes, record_outcomes
from service.reports.columns import ColumnsBuilder, DecisionColumns
from service.reports.core import (
    Baseline,
    CategoricalBaseline,
    DecisionRow,
    NumericBaseline,
    Period,
    ReportSettings,
    build_report,
    categorical_stability,
    to_jsonable,
)
from service.reports.source import records_between, report_columns, report_from_store, rows_from_records

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
    if n % 11 == 0:  # now and then an applicant with other fields
        applicant = {"extra": rng.choice((1, True, "1")), **{k: v for k, v in applicant.items() if k != "own_home"}}
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


def _settings() -> ReportSettings:
    spec = FeatureSpec.load(CONFIG / "feature_spec.yaml")
    settings = ReportSettings.of(spec, Policy.load(CONFIG / "policy.yaml", spec))
    return replace(settings, thresholds=replace(settings.thresholds, min_sample=10))


def _same_reports(store: Any, since: datetime, until: datetime) -> list[DecisionRow]:
    """Assert the report of the store's report rows equals the report of its records read whole; those rows."""
    outcomes = latest_outcomes(store, since, until)
    reference_rows = rows_from_records(records_between(store, since, until), outcomes)
    columns = report_columns(store, since, until, outcomes)
    reference = DecisionColumns.of_rows(reference_rows)
    assert len(columns) == len(reference_rows)
    assert sorted(columns.decision_id) == sorted(reference.decision_id)
    assert np.array_equal(np.sort(columns.probability_of_default), np.sort(reference.probability_of_default))
    settings = _settings()
    for model_name in (None, "gbt", "other"):
        expected = build_report(
            reference_rows, PERIOD, reference_rows, BASELINE, model_name, ("R01", "R02", "R03"), settings=settings
        )
        got = build_report(columns, PERIOD, columns, BASELINE, model_name, ("R01", "R02", "R03"), settings=settings)
        assert to_jsonable(got) == to_jsonable(expected)  # every number, exactly
    return reference_rows


def _report_rows(store: Any) -> int:
    with store._transaction("read") as tx:
        return int(tx.one("SELECT COUNT(*) FROM report_rows")[0])


def test_report_rows_give_the_same_report_as_whole_records(decision_store_url: str) -> None:
    rng = random.Random(12)
    store = open_decision_store(decision_store_url)
    try:
        start = PERIOD.previous.start - timedelta(hours=5)  # some records before both periods
        for n in range(400):
            store.save(_record(rng, n, start + timedelta(minutes=55 * n + rng.randint(0, 60))))
        for record in _v1_records(PERIOD.start + timedelta(days=2)):
            store.save(record)
        assert store.count() == 402 and _report_rows(store) == 402  # written with each record
        observed = datetime(2025, 4, 1, tzinfo=UTC)
        record_outcomes(
            store,
            [ObservedOutcome(f"d-{n:05d}", rng.choice(("good", "bad")), observed) for n in range(0, 400, 3)],
            observed,
        )
        rows = _same_reports(store, PERIOD.previous.start, PERIOD.end)
        assert len(rows) > 250 and {"v1-0", "v1-1"} <= {r.decision_id for r in rows}  # first-version payloads too
        assert sum(r.outcome is not None for r in rows) > 40
        expected = build_report(rows, PERIOD, rows, BASELINE, None, settings=_settings())
        assert expected.summary.decisions > 100 and expected.field_csi and expected.backtest is not None
        assert expected.disparate_impact and all(di.groups for di in expected.disparate_impact)

        # the report the API and the CLI serve reads the report rows
        served = report_from_store(store, Path("/nonexistent-model-store"), PERIOD)
        assert served.summary.decisions == sum(1 for r in rows if PERIOD.contains(r.created_at))
        assert served.summary.approved == sum(
            1 for r in rows if PERIOD.contains(r.created_at) and r.decision == "approve"
        )
    finally:
        store.close()


def test_records_without_report_rows_are_counted_and_get_their_rows(decision_store_url: str) -> None:
    """Records stored before migration 0005, by an older replica or by a bulk load have no report row: the
    report makes them (from the whole record) before it reads, so nothing is left out."""
    rng = random.Random(5)
    store = open_decision_store(decision_store_url)
    try:
        for n in range(120):
            store.save(_record(rng, n, PERIOD.start + timedelta(minutes=50 * n)))
        with store._transaction("write") as tx:  # as if stored without them
            gone = [seq for seq in range(1, 121) if seq % 3 or seq > 100]
            tx.run(f"DELETE FROM report_rows WHERE seq IN ({', '.join('?' * len(gone))})", gone)
        left = _report_rows(store)
        assert 0 < left < 120
        since, until = PERIOD.previous.start, PERIOD.end
        _same_reports(store, since, until)
        assert _report_rows(store) == 120  # filled, so the next report reads them
        assert store.fill_report_rows(since, until) == 0
        report = report_from_store(store, Path("/nonexistent-model-store"), PERIOD)
        assert report.summary.decisions == 120

        # a record whose payload the report cannot read is stored without a row; the report says so, as before
        store.save(replace(_record(rng, 999, PERIOD.start + timedelta(hours=1)), payload={"unreadable": True}))
        assert store.count() == 121 and _report_rows(store) == 120
        with pytest.raises(PayloadError):
            report_from_store(store, Path("/nonexistent-model-store"), PERIOD)
    finally:
        store.close()


def test_a_purge_takes_the_report_rows_of_the_purged_records(decision_store_url: str) -> None:
    rng = random.Random(7)
    store = open_decision_store(decision_store_url)
    try:
        for n in range(40):
            store.save(_record(rng, n, PERIOD.start + timedelta(hours=3 * n)))
        cutoff = PERIOD.start + timedelta(hours=3 * 25)
        purged = store.purge_before(cutoff)
        assert purged.purged_records == 25 and _report_rows(store) == 15
        report = report_from_store(store, Path("/nonexistent-model-store"), PERIOD)
        assert report.summary.decisions == sum(1 for n in range(25, 40) if 3 * n < 7 * 24)
    finally:
        store.close()


def test_columns_of_rows_and_of_report_rows_agree_on_awkward_values() -> None:
    """The row path and the report-row path fill one builder: the same codes, arrays and mappings."""
    from service.records.report_rows import report_row

    rng = random.Random(3)
    records = [_record(rng, n, PERIOD.start + timedelta(minutes=n)) for n in range(200)]
    outcomes = {f"d-{n:05d}": "bad" if n % 2 else "good" for n in range(0, 200, 7)}
    builder = ColumnsBuilder()
    for start in range(0, 200, 64):  # several batches: codes stay the same across them
        builder.add_report_rows([report_row(i + 1, r) for i, r in enumerate(records[start : start + 64])], outcomes)
    from_report_rows = builder.build()
    from_rows = DecisionColumns.of_rows(rows_from_records(records, outcomes))
    for name in ("decision_id", "created_us", "score", "probability_of_default", "outcome"):
        assert list(getattr(from_report_rows, name)) == list(getattr(from_rows, name)), name
    for kind in ("applicant", "monitoring"):  # the same fields, the same values of the same types
        a, b = getattr(from_report_rows, kind), getattr(from_rows, kind)
        assert sorted(a) == sorted(b) and len(a) >= 2, kind  # (report rows hold the fields in name order)
        for name in a:
            values_a = [a[name].labels[c] for c in a[name].codes]
            values_b = [b[name].labels[c] for c in b[name].codes]
            assert [(type(v), v) for v in values_a] == [(type(v), v) for v in values_b], (kind, name)
    assert np.array_equal(from_report_rows.latency_ms, from_rows.latency_ms, equal_nan=True)
    for name in ("decision", "risk_band", "model", "reasons", "rules"):
        a, b = getattr(from_report_rows, name), getattr(from_rows, name)
        assert [a.labels[c] for c in a.codes] == [b.labels[c] for c in b.codes], name


def test_coded_values_keep_their_types() -> None:
    """Equal values of different types (1, 1.0, True) stay apart, so categories and numbers read them as before."""
    from service.reports.columns import encode

    cases: list[list[Any]] = [
        [1, None, 3, 1, 2**60, 5],  # integers beyond a float's exact range
        [1, None, 3, 1],
        [0.5, 0.5, 2.0],
        [None, None],
        ["a", None, "a"],
        ["a", None, "a", 1, True],
        [True, 1, 1.0, "1", None, False, 0, 0.0],
        ["a", [1], [1]],  # unhashable
        [],
    ]
    for values in cases:
        column = encode(values)
        decoded = [column.labels[c] for c in column.codes]
        assert [(type(v), v) for v in decoded] == [(type(v), v) for v in values]
        assert len(set(column.codes.tolist())) == len(column.labels)
    base = CategoricalBaseline((("1", 0.5), ("true", 0.3), ("1.0", 0.2)), 0.1)
    index = categorical_stability("f", base, [True, 1, 1.0, "1", None, "x"])
    assert [(b.label, b.count) for b in index.bins] == [
        ("1", 2),
        ("true", 1),
        ("1.0", 1),
        ("(other)", 1),
        ("(missing)", 1),
    ]


def test_a_new_decisions_report_row_from_its_typed_decision_equals_the_row_read_from_its_payload(
    api_make_app: Any, example_application: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service hands the store its typed decision with the record (no payload parse for the report row); the row
    written that way is the row the stored payload gives, for decisions with and without monitoring data."""
    from service.records import _sql
    from service.records.report_rows import report_row
    from service.state import get_state

    written: list[tuple[Any, ...]] = []

    def spy(seq: int, record: Any) -> tuple[Any, ...]:
        assert record.typed is not None, "the service's record carries its typed decision"
        row = report_row(seq, record)
        written.append(row)
        return row

    monkeypatch.setattr(_sql, "report_row", spy)
    app = api_make_app()
    client = app.test_client()
    monitoring = {"sex": "female", "foreign_worker": "yes"}
    for i, extra in enumerate(({}, {"monitoring": monitoring})):
        body = {**example_application, "application_id": f"TY-{i}", **extra}
        assert client.post("/v1/decisions", json=body).status_code == 201, body
    store = get_state(app).store
    for row in written:
        stored = store.get(row[1])
        assert stored is not None and stored.record.typed is None
        assert report_row(stored.seq, stored.record) == row
    assert len(written) == 2


def test_report_batches_are_consumed_in_order_beside_the_read_and_errors_reach_the_caller() -> None:
    """The report reads its next batch while a helper thread consumes the one before: every batch consumed once, in
    order, never two at a time; an error while consuming, or while reading, is raised to the caller."""
    import threading

    from service.reports.source import consume_overlapped

    seen: list[int] = []
    busy = threading.Lock()

    def consume(batch: int) -> None:
        assert busy.acquire(blocking=False), "two batches consumed at once"
        try:
            seen.append(batch)
        finally:
            busy.release()

    consume_overlapped(iter(range(50)), consume)
    assert seen == list(range(50))

    def failing(batch: int) -> None:
        if batch == 3:
            raise ValueError("bad batch 3")

    with pytest.raises(ValueError, match="bad batch 3"):
        consume_overlapped(iter(range(10)), failing)

    def reader() -> Any:
        yield 1
        raise OSError("read failed")

    with pytest.raises(OSError, match="read failed"):
        consume_overlapped(reader(), lambda batch: None)
