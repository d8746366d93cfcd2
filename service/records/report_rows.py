"""The report row of a decision record: the narrow copy of what the period report reads, kept beside the chain.

Every decision record gets one row in ``report_rows`` (migration 0005), written in the transaction that appends
the record (:meth:`SqlDecisionStore.save`) and, for records stored without one (before the migration, by an
older replica during a rolling upgrade, by a bulk load), by the report itself before it reads
(:meth:`SqlDecisionStore.iter_report_rows`). Both go through :func:`report_row`, which reads the record through
its typed payload (:class:`RecordedDecision`), so the row never depends on the payload's JSON layout or version.

The table is not part of the hash chain: it is derived data, rebuilt from the records whenever it is missing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from service.core.recorded import RecordColumns, RecordedDecision

#: The columns of ``report_rows``, in the order :func:`report_row` gives them.
REPORT_ROW_COLUMNS = (
    "seq",
    "decision_id",
    "created_us",
    "score",
    "probability_of_default",
    "latency_ms",
    "applicant_values",
    "profile",
)
INSERT_REPORT_ROW = (
    f"INSERT INTO report_rows ({', '.join(REPORT_ROW_COLUMNS)}) "  # noqa: S608 (constant column names)
    f"VALUES ({', '.join('?' * len(REPORT_ROW_COLUMNS))}) ON CONFLICT (seq) DO NOTHING"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_us(moment: datetime) -> int:
    """A timezone-aware moment as whole microseconds since 1970-01-01 UTC (what ``created_us`` holds)."""
    return (moment - _EPOCH) // _MICROSECOND


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def report_row(seq: int, record: RecordColumns) -> tuple[Any, ...]:
    """The ``report_rows`` values of the record at ``seq`` (columns :data:`REPORT_ROW_COLUMNS`).

    ``applicant_values`` is the compact JSON array of the recorded applicant's values; ``profile`` the compact JSON
    of what many decisions share, ``[model_name, model_version, decision, risk_band, [[reason code, kind, adverse],
    ...], [fired rule code, ...], [applicant field name, ...], monitoring object]`` (the field names in the order of
    the values; ``{}`` when no monitoring data was sent).
    """
    # A new record made by the decision service carries the typed decision its payload was made from: read that
    # instead of parsing the payload (DecisionRecord.made_from)
    made_from = getattr(record, "made_from", None)
    recorded = made_from if isinstance(made_from, RecordedDecision) else RecordedDecision.of(record)
    decision = recorded.decision
    payload = recorded.payload
    # the fields in name order, as the stored (canonical) payload holds them, whatever order the request had
    applicant = sorted(payload.applicant.items())
    profile = [
        recorded.model_name,
        recorded.model_version,
        decision.decision,
        decision.risk_band,
        [[r.code, r.kind, bool(r.adverse)] for r in decision.reasons],
        [rule.code for rule in decision.rules_fired],
        [name for name, _ in applicant],
        dict(payload.monitoring or {}),
    ]
    return (
        seq,
        recorded.decision_id,
        epoch_us(recorded.created_at),
        int(decision.score),
        float(decision.probability_of_default),
        None if payload.latency_ms is None else float(payload.latency_ms),
        _compact([value for _, value in applicant]),
        _compact(profile),
    )
