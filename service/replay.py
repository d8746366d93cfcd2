"""Replay: re-decide a stored request with the exact model version that decided it and report any difference.

The recorded model name and version are loaded from the model store (older versions stay loadable after a
newer champion is promoted) with the recorded policy: the version's own (its bundle carries its feature spec,
policy and reason catalog), or a stored candidate policy that was promoted onto the version's model. The recorded ``spec_version``, ``policy_version``, ``catalog_version``, model sha256 and manifest sha256
must equal the loaded bundle's, else that is reported as a difference too. The stored request must still
hash to the recorded ``request_hash`` and pass the version's field checks. The record is read through its
typed payload (any schema version) and decided by the one engine, like a live request.

Compared: decision, score, probability_of_default, risk band, reasons (codes, order, texts, values,
contributions), rules fired and the explanation (attributions, base value, margin); and, when the record
holds them, the recourse (re-derived by the same deterministic search) and the reason-stability flags.
Numbers are compared with an absolute tolerance of 1e-9: the same ONNX graph and the same float64 TreeSHAP
run on the same input give the same numbers (JSON round-trips floats exactly), so the tolerance only
absorbs a different CPU's last-bit rounding, far below anything that could change a score, band or reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from model_store.spec import InvalidValue
from service.core.recorded import PayloadError, RecordedDecision
from service.errors import ModelUnavailable
from service.models import ModelCache
from service.records.model import DecisionRecord
from service.serialize import decision_json

FLOAT_TOLERANCE = 1e-9
COMPARED_FIELDS = (
    "decision",
    "score",
    "probability_of_default",
    "risk_band",
    "reasons",
    "rules_fired",
    "explanation",
    "recourse",
    "reason_stability",
)
VERSION_FIELDS = ("spec_version", "policy_version", "catalog_version")


@dataclass(frozen=True)
class Difference:
    """One field that differs: its dotted path, the recorded and the replayed value."""

    field: str
    recorded: Any
    replayed: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"field": self.field, "recorded": self.recorded, "replayed": self.replayed}

    def describe(self) -> str:
        """One line for the CLI."""
        return f"{self.field}: recorded {self.recorded!r}, replayed {self.replayed!r}"


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of replaying one decision."""

    decision_id: str
    model_name: str
    model_version: str
    differences: tuple[Difference, ...] = field(default=())

    @property
    def identical(self) -> bool:
        """True when nothing differs."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the body of POST /v1/decisions/{id}/replay)."""
        return {
            "decision_id": self.decision_id,
            "identical": self.identical,
            "model": {"name": self.model_name, "version": self.model_version},
            "tolerance": FLOAT_TOLERANCE,
            "differences": [d.to_dict() for d in self.differences],
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(recorded: Any, replayed: Any, path: str, tolerance: float = FLOAT_TOLERANCE) -> list[Difference]:
    """Every leaf where two JSON values differ (numbers within ``tolerance`` are equal; list order matters)."""
    if isinstance(recorded, Mapping) and isinstance(replayed, Mapping):
        found: list[Difference] = []
        for key in sorted(set(recorded) | set(replayed), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in recorded or key not in replayed:
                found.append(Difference(sub, recorded.get(key), replayed.get(key)))
            else:
                found.extend(compare(recorded[key], replayed[key], sub, tolerance))
        return found
    if isinstance(recorded, list) and isinstance(replayed, list):
        if len(recorded) != len(replayed):
            return [Difference(path, recorded, replayed)]
        found = []
        for index, (old, new) in enumerate(zip(recorded, replayed, strict=True)):
            found.extend(compare(old, new, f"{path}[{index}]", tolerance))
        return found
    if _is_number(recorded) and _is_number(replayed):
        same = recorded == replayed or (
            math.isfinite(recorded) and math.isfinite(replayed) and abs(recorded - replayed) <= tolerance
        )
        return [] if same else [Difference(path, recorded, replayed)]
    return [] if recorded == replayed and type(recorded) is type(replayed) else [Difference(path, recorded, replayed)]


def replay_record(record: DecisionRecord, models: ModelCache) -> ReplayReport:
    """Re-decide one stored request with its recorded model version and compare with what was recorded."""
    report = ReplayReport(record.decision_id, record.model_name, record.model_version)
    try:
        recorded = RecordedDecision.of(record)
    except PayloadError as exc:
        return _with(report, [Difference("payload", "a readable decision payload", str(exc))])
    differences: list[Difference] = []
    request = recorded.request
    actual_hash = request.request_hash
    if actual_hash != record.request_hash:
        differences.append(Difference("request_hash", record.request_hash, actual_hash))
    # the recorded policy: the version's own, or a stored candidate policy promoted onto the version's model
    # (a recorded policy that is neither is reported below as a policy_version difference)
    policy = recorded.payload.model.policy_version
    try:
        model = models.deciding(record.model_name, record.model_version, policy)
    except ModelUnavailable as exc:
        differences.append(
            Difference("model", f"{record.model_name} {record.model_version} ({policy})", f"not loadable: {exc}")
        )
        return _with(report, differences)
    info = model.info
    provenance = recorded.payload.model
    differences.extend(compare(provenance.sha256, info.sha256, "model.sha256"))
    differences.extend(compare(provenance.manifest_sha256, info.manifest_sha256, "versions.manifest_sha256"))
    for name in VERSION_FIELDS:
        differences.extend(compare(getattr(provenance, name), getattr(info, name), name))
    # the stored input must still pass the version's own field checks (a tampered one may not)
    problems = []
    for spec_field in model.bundle.spec.fields:
        try:
            spec_field.check(request.applicant.get(spec_field.name))
        except InvalidValue as exc:
            problems.append(f"{spec_field.name}: {exc}")
    if problems:
        differences.append(Difference("request", "a valid application", "; ".join(problems)))
        return _with(report, differences)
    batch = model.engine.decide([dict(request.applicant)])
    decision = batch.decision(0)
    payload = recorded.payload
    replayed = model.recorded(
        decision_id=recorded.decision_id,
        created_at=recorded.created_at,
        request=request,
        decision=decision,
        decided_by=recorded.payload.decided_by,
        latency_ms=payload.latency_ms,
        recourse=None if payload.recourse is None else model.recourse(batch.applications[0]),
        reason_stability=None if payload.reason_stability is None else model.reason_stability(batch, 0),
    )
    before, after = decision_json(recorded), decision_json(replayed)
    for name in COMPARED_FIELDS:  # recourse and reason_stability only where recorded (and so re-derived)
        differences.extend(compare(before.get(name), after.get(name), name))
    return _with(report, differences)


def _with(report: ReplayReport, differences: list[Difference]) -> ReplayReport:
    return ReplayReport(report.decision_id, report.model_name, report.model_version, tuple(differences))
