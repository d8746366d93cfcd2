"""Adapters feeding the report: stored decision records to columns (or rows), ``reference.json`` to a baseline.

The decision store and the model store are read here, at the edge; ``service.reports.core`` only
sees :class:`DecisionColumns` (or :class:`DecisionRow`, turned into the same columns), :class:`Baseline` and
:class:`ReportSettings`. A SQL store's report rows (``service.records.report_rows``) go straight into columns. Monitoring attributes (the
spec's ``monitoring_only`` list) travel in the recorded request's ``monitoring`` object, beside (never
inside) ``applicant``, which is the only part the scoring path encodes; the report reads both.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from service.core.recorded import RecordedDecision
from service.reports.columns import ColumnsBuilder, DecisionColumns
from service.reports.core import (
    DEFAULT_SETTINGS,
    Baseline,
    CategoricalBaseline,
    DecisionRow,
    NumericBaseline,
    Outcome,
    Period,
    PeriodReport,
    ReasonBaseline,
    ReasonRef,
    ReportError,
    ReportSettings,
    ReviewRow,
    build_report,
)


class RecordSource(Protocol):
    """What the report needs of a decision store (``service.records.DecisionStore`` has it)."""

    def search(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Any], str | None]: ...

    def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[Any], str | None]: ...


SEARCH_PAGE = 1000


def records_between(store: RecordSource, since: datetime, until: datetime) -> Iterator[Any]:
    """Every stored record created in ``[since, until)``, page by page."""
    cursor: str | None = None
    while True:
        page, cursor = store.search(since=since, until=until, cursor=cursor, limit=SEARCH_PAGE)
        yield from page
        if cursor is None:
            return


def rows_from_records(stored_records: Iterable[Any], outcomes: Mapping[str, str] | None = None) -> list[DecisionRow]:
    """Decision rows of stored records (``StoredRecord`` or bare ``DecisionRecord``), outcomes joined by id.

    Every record is read through its typed payload (:class:`RecordedDecision`), whatever its schema version.
    """
    outcomes = outcomes or {}
    rows = []
    for item in stored_records:
        recorded = RecordedDecision.of(getattr(item, "record", item))
        decision = recorded.decision
        payload = recorded.payload
        rows.append(
            DecisionRow(
                decision_id=recorded.decision_id,
                created_at=recorded.created_at,
                decision=decision.decision,
                risk_band=decision.risk_band,
                score=decision.score,
                probability_of_default=decision.probability_of_default,
                reasons=tuple(ReasonRef(r.code, r.kind, r.adverse) for r in decision.reasons),
                rules_fired=tuple(rule.code for rule in decision.rules_fired),
                model_name=recorded.model_name,
                model_version=recorded.model_version,
                latency_ms=payload.latency_ms,
                applicant=payload.applicant,
                monitoring=payload.monitoring or {},
                outcome=_outcome(outcomes.get(recorded.decision_id)),
            )
        )
    return rows


def report_columns(
    records: RecordSource, since: datetime, until: datetime, outcomes: Mapping[str, str] | None = None
) -> DecisionColumns:
    """The decisions created in ``[since, until)`` as report columns: the columns of :func:`rows_from_records`.

    A SQL store hands over its report rows (one narrow row per record, written with it; the rows of records stored
    without one are made first, from the whole record), in batches straight into columns: no object per decision
    but its applicant and monitoring mappings. Any other store is read whole, record by record.
    """
    from service.records._sql import SqlDecisionStore

    outcomes = outcomes or {}
    if not isinstance(records, SqlDecisionStore):
        return DecisionColumns.of_rows(rows_from_records(records_between(records, since, until), outcomes))
    builder = ColumnsBuilder()
    consume_overlapped(records.iter_report_rows(since, until), lambda batch: builder.add_report_rows(batch, outcomes))
    return builder.build()


_Batch = TypeVar("_Batch")


def consume_overlapped(batches: Iterator[_Batch], consume: Callable[[_Batch], None]) -> None:
    """``consume`` every batch, in order, in a helper thread while this thread reads the next one: the database read
    (its driver waits with the interpreter lock released) overlaps the Python work on the batch before it. Only the
    calling thread touches the database (its own connection); at most one batch is read ahead. An error on either
    side is raised here."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="credit-decision-report") as pool:
        pending: Future[None] | None = None
        for batch in batches:
            if pending is not None:
                pending.result()
            pending = pool.submit(consume, batch)
        if pending is not None:
            pending.result()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _outcome(value: Any) -> Outcome | None:
    if value == "good":
        return "good"
    if value == "bad":
        return "bad"
    return None


# ---- baseline -----------------------------------------------------------------------------------


def baseline_from_reference(reference: Mapping[str, Any], model_name: str, model_version: str) -> Baseline | None:
    """The training baseline in a version's ``reference.json`` (``reference["baseline"]``), or None if absent.

    Format (written by ``training.metrics.training_baseline``)::

        {"fields": {"<field>": {"kind": "numeric", "edges": [...], "shares": [... len(edges)+1], "missing": share}
                    | {"kind": "categorical", "shares": {"<code>": share, ...}, "missing": share}, ...},
         "score": {"edges": [...], "shares": [...], "band_shares": {"A": share, ...}}}

    Numeric bins are right-closed (``x <= edges[0]``, ``edges[i-1] < x <= edges[i]``, ``x > edges[-1]``).
    ``missing`` is the share of training rows whose value was missing (None); every share is a share of
    all training rows, so a field's ``shares`` and ``missing`` sum to 1. A baseline written before
    fields could be missing has no ``missing`` key: it reads as a missing share of 0.
    """
    raw = reference.get("baseline")
    if not isinstance(raw, Mapping):
        return None
    try:
        fields: list[tuple[str, NumericBaseline | CategoricalBaseline]] = []
        for name, spec in sorted(_mapping(raw.get("fields")).items()):
            if spec.get("kind") == "categorical":
                shares = _mapping(spec.get("shares"))
                fields.append(
                    (
                        name,
                        CategoricalBaseline(
                            tuple((str(c), float(s)) for c, s in shares.items()), float(spec.get("missing", 0.0))
                        ),
                    )
                )
            else:
                fields.append((name, _numeric(spec)))
        score_raw = _mapping(raw.get("score"))
        score = _numeric(score_raw) if "edges" in score_raw else None
        bands = tuple((str(b), float(s)) for b, s in _mapping(score_raw.get("band_shares")).items())
    except (TypeError, ValueError, AttributeError) as exc:
        raise ReportError(f"reference.json of {model_name} {model_version} has a malformed baseline: {exc}") from exc
    reasons = ReasonBaseline.of(raw.get("reasons"), f"reference.json of {model_name} {model_version}: baseline.reasons")
    return Baseline(model_name, model_version, tuple(fields), score, bands, reasons)


def _numeric(spec: Mapping[str, Any]) -> NumericBaseline:
    return NumericBaseline(
        tuple(float(e) for e in spec["edges"]),
        tuple(float(s) for s in spec["shares"]),
        float(spec.get("missing", 0.0)),
    )


@dataclass(frozen=True)
class ModelContext:
    """What the report takes from a model version in the model store.

    ``settings``: the policy's monitoring thresholds and the spec's monitoring attributes and fairness
    bands (the defaults, with no disparate-impact attributes, when the version is not available).
    """

    baseline: Baseline | None
    rule_codes: tuple[str, ...]
    notes: tuple[str, ...]
    settings: ReportSettings = DEFAULT_SETTINGS


def load_model_context(model_store_root: Path, model_name: str, model_version: str) -> ModelContext:
    """Baseline, policy rule codes and report settings of a model version, with a note for whatever is missing."""
    from model_store.policy import Policy
    from model_store.spec import FeatureSpec
    from model_store.store import POLICY_FILE, REFERENCE_FILE, SPEC_FILE

    folder = model_store_root / model_name / model_version
    if not (folder / REFERENCE_FILE).is_file():
        return ModelContext(
            None, (), (f"Model version {model_name} {model_version} is not in the model store at {model_store_root}.",)
        )
    reference = json.loads((folder / REFERENCE_FILE).read_text(encoding="utf-8"))
    baseline = baseline_from_reference(reference, model_name, model_version)
    notes = () if baseline is not None else (f"reference.json of {model_name} {model_version} has no baseline.",)
    spec = FeatureSpec.load(folder / SPEC_FILE)
    policy = Policy.load(folder / POLICY_FILE, spec)
    return ModelContext(baseline, tuple(rule.code for rule in policy.rules), notes, ReportSettings.of(spec, policy))


def stored_outcomes(records: RecordSource, since: datetime, until: datetime) -> dict[str, str]:
    """Outcomes posted back (``POST /v1/outcomes``) for decisions created in ``[since, until)``; {} if none."""
    from service.records._sql import SqlDecisionStore
    from service.records.outcomes import latest_outcomes

    if not isinstance(records, SqlDecisionStore):
        return {}
    return dict(latest_outcomes(records, since, until))


def report_from_store(
    records: RecordSource,
    model_store_root: Path,
    period: Period,
    model_name: str | None = None,
    outcomes: Mapping[str, str] | None = None,
) -> PeriodReport:
    """The period report of a decision store, measured against the most-used model version's baseline.

    The thresholds, monitoring attributes and fairness bands are that version's (its policy and spec).
    Back-testing uses ``outcomes`` (decision_id -> good|bad) if given, else the outcomes posted to the store.
    """
    if outcomes is None:
        outcomes = stored_outcomes(records, period.previous.start, period.end)
    columns = report_columns(records, period.previous.start, period.end, outcomes)
    current = columns.take(columns.in_period(period, model_name))
    context = ModelContext(None, (), ())
    used = {label: int(n) for label, n in zip(current.model.labels, current.model.counts(), strict=True) if n}
    if used:
        # the most-used version; ties go to the later version
        name, version = max(used, key=lambda k: (used[k], k[0], _version_number(k[1])))
        context = load_model_context(model_store_root, name, version)
    return build_report(
        columns,
        period,
        columns,
        context.baseline,
        model_name,
        context.rule_codes,
        context.notes,
        settings=context.settings,
        reviews=review_rows(records, period),
    )


def review_rows(records: RecordSource, period: Period) -> list[ReviewRow]:
    """The human reviews recorded in ``period`` (audit events of kind ``review``), as report rows."""
    rows: list[ReviewRow] = []
    cursor: str | None = None
    while True:
        page, cursor = records.events(kind="review", since=period.start, until=period.end, cursor=cursor, limit=500)
        for stored in page:
            event = stored.event
            details = _mapping(event.details)
            before = _mapping(details.get("automated"))
            codes = before.get("reason_codes") or []
            actor = _mapping(event.actor)
            rows.append(
                ReviewRow(
                    reviewer=str(actor.get("label") or actor.get("key_id") or actor.get("cli") or "unknown"),
                    risk_band=str(before.get("risk_band", "")),
                    top_reason=str(codes[0]) if codes else "",
                    automated=str(before.get("decision", "")),
                    final=str(details.get("final_decision", "")),
                    justification=str(_mapping(details.get("justification")).get("code", "")),
                )
            )
        if cursor is None:
            return rows


def _version_number(version: str) -> int:
    return int(version[1:]) if version[1:].isdigit() else 0


# ---- champion vs shadow --------------------------------------------------------------------------------


def _side(decision: Any, model_name: str, model_version: str, policy_version: str, catalog_version: str) -> Any:
    from service.reports.challenger import DecisionSide

    return DecisionSide(
        decision=decision.decision,
        risk_band=decision.risk_band,
        score=decision.score,
        probability_of_default=decision.probability_of_default,
        reasons=tuple(r.code for r in decision.reasons),
        adverse_reasons=tuple(r.code for r in decision.reasons if r.adverse),
        rules_fired=tuple(r.code for r in decision.rules_fired),
        model_name=model_name,
        model_version=model_version,
        policy_version=policy_version,
        catalog_version=catalog_version,
    )


def comparison_pairs(pairs: Iterable[tuple[Any, Any]], outcomes: Mapping[str, str]) -> list[Any]:
    """Comparison pairs of (stored champion record, stored shadow record) pairs, outcomes joined by id."""
    from service.core.recorded import ShadowDecision
    from service.reports.challenger import ComparisonPair

    out = []
    for champion_stored, shadow_stored in pairs:
        recorded = RecordedDecision.of(champion_stored.record)
        shadow = ShadowDecision.of(shadow_stored.record)
        provenance = recorded.payload.model
        out.append(
            ComparisonPair(
                decision_id=recorded.decision_id,
                created_at=recorded.created_at,
                champion=_side(
                    recorded.decision,
                    recorded.model_name,
                    recorded.model_version,
                    provenance.policy_version,
                    provenance.catalog_version,
                ),
                shadow=_side(
                    shadow.decision,
                    shadow.model_name,
                    shadow.model_version,
                    shadow.model.policy_version,
                    shadow.model.catalog_version,
                ),
                applicant=dict(recorded.payload.applicant),
                monitoring=dict(recorded.payload.monitoring or {}),
                outcome=_outcome(outcomes.get(recorded.decision_id)),
            )
        )
    return out


def comparison_from_store(records: Any, model_store_root: Path, period: Period, kind: str) -> Any:
    """Champion vs shadow (``kind``: challenger or policy) over the decisions of ``period`` that were shadowed.

    Settings (monitoring attributes, fairness bands, thresholds), band order and rule codes are those of the
    champion version that decided most of them (its spec and policy).
    """
    from service.reports.challenger import build_comparison

    outcomes = stored_outcomes(records, period.start, period.end)
    pairs = comparison_pairs(records.iter_shadow_pairs(since=period.start, until=period.end, kind=kind), outcomes)
    used = Counter((p.champion.model_name, p.champion.model_version) for p in pairs)
    settings = DEFAULT_SETTINGS
    bands: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    if used:
        name, version = max(used, key=lambda k: (used[k], k[0], _version_number(k[1])))
        context = load_model_context(model_store_root, name, version)
        settings, rules = context.settings, context.rule_codes
        bands = _band_names(model_store_root, name, version)
    return build_comparison(
        pairs, period, kind="policy" if kind == "policy" else "challenger", settings=settings, bands=bands,
        rule_codes=rules, decisions=records.count(since=period.start, until=period.end),
    )  # fmt: skip


def _band_names(model_store_root: Path, model_name: str, model_version: str) -> tuple[str, ...]:
    from model_store.policy import Policy
    from model_store.spec import FeatureSpec
    from model_store.store import POLICY_FILE, SPEC_FILE

    folder = model_store_root / model_name / model_version
    if not (folder / POLICY_FILE).is_file():
        return ()
    return tuple(b.band for b in Policy.load(folder / POLICY_FILE, FeatureSpec.load(folder / SPEC_FILE)).bands)
