"""What this deployment serves, and the admin actions that change it. Transport-free, like the decision service.

The **serving state** names the champion (a model version, optionally with a stored candidate policy promoted
onto its model), a challenger model version in shadow, a candidate policy in shadow on the champion's model,
and the earlier champions (most recent last, for rollback).

Where it lives: in the decision store's hash chain. Every change is an admin audit event (``promotion``,
``rollback``, ``shadow_on``, ``shadow_off``, ``policy_shadow_on``, ``policy_shadow_off``) that carries the whole
state after it, so the latest control event *is* the state: one truth for every worker of every replica that
shares the database, tamper-evident with the decisions, and who changed what and when is recorded by the very
act of changing it. A store without a control event yet serves the model store's registry champion (the version
training promoted) or the version the settings pin (``CREDIT_DECISION_MODEL_NAME`` / ``_MODEL_VERSION``); a
deployment that pins its version refuses promotions (its settings, not the chain, decide what it serves).

Every admin action checks before it records: the version (and policy) must load, verify and pass its
self-check, and a champion or challenger must accept exactly the applicant fields the champion accepts (the
API's request schema and OpenAPI document are built from them; another input contract is a new deployment).
Concurrent admin actions are serialised by the store's append lock; each one computes its state from the
latest control event read just before, so of two racing actions the later one's state wins, and both are
recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from model_store.errors import ContractError
from model_store.store import VersionExistsError
from service.errors import FieldError, ModelUnavailable, NotServable, ServingConflict
from service.models import ModelCache
from service.records import DecisionStore
from service.records.model import AuditEvent, StoredEvent
from service.runtime import ServedModel

#: Earlier champions kept for rollback.
MAX_PREVIOUS = 20


@dataclass(frozen=True)
class Target:
    """A model version to serve, optionally deciding with a stored candidate policy instead of its own."""

    name: str
    version: str
    policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "version": self.version, "policy": self.policy}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        """Inverse of :meth:`to_json`."""
        policy = data.get("policy")
        return cls(str(data["name"]), str(data["version"]), None if policy is None else str(policy))

    def label(self) -> str:
        """``name version`` (``with policy P`` when a candidate policy is promoted onto it)."""
        return f"{self.name} {self.version}" + (f" with policy {self.policy}" if self.policy else "")


def _target(data: Any) -> Target | None:
    return None if data is None else Target.from_json(data)


@dataclass(frozen=True)
class ServingState:
    """The champion, what runs in shadow, and the earlier champions; ``seq`` is the control event's position in
    the chain (0: no control event yet, the bootstrap state)."""

    champion: Target | None
    challenger: Target | None = None
    policy_shadow: str | None = None
    previous: tuple[Target, ...] = ()
    seq: int = field(default=0, compare=False)
    source: str = field(default="registry", compare=False)  # "chain", "registry" or "settings"

    def to_json(self) -> dict[str, Any]:
        """The stored form (what a control event carries)."""
        return {
            "champion": None if self.champion is None else self.champion.to_json(),
            "challenger": None if self.challenger is None else self.challenger.to_json(),
            "policy_shadow": self.policy_shadow,
            "previous": [t.to_json() for t in self.previous],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, seq: int = 0, source: str = "chain") -> ServingState:
        """Inverse of :meth:`to_json`."""
        shadow = data.get("policy_shadow")
        return cls(
            champion=_target(data.get("champion")),
            challenger=_target(data.get("challenger")),
            policy_shadow=None if shadow is None else str(shadow),
            previous=tuple(Target.from_json(t) for t in data.get("previous") or ()),
            seq=seq,
            source=source,
        )

    def view(self) -> dict[str, Any]:
        """JSON for the admin API: the state, where it comes from and the control event's position."""
        return {**self.to_json(), "source": self.source, "seq": self.seq}


Actor = Mapping[str, Any]


class Lifecycle:
    """Reads the serving state and performs the admin actions that change it (each one an audit event)."""

    def __init__(
        self,
        *,
        store: DecisionStore,
        models: ModelCache,
        pinned: Target | None = None,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
    ) -> None:
        self.store = store
        self.models = models
        self.pinned = pinned
        self._clock = clock
        self._new_id = new_id

    # ---- reading ------------------------------------------------------------------------------------
    def state(self) -> ServingState:
        """The deployment's serving state: the latest control event's, else the pinned or registry champion."""
        latest = self.store.latest_serving_state()
        recorded = None
        if latest is not None and latest.event.serving_state is not None:
            recorded = ServingState.from_json(latest.event.serving_state, seq=latest.seq)
        if self.pinned is not None:  # the settings name the champion; shadows still follow the chain
            return replace(recorded or ServingState(None), champion=self.pinned, source="settings")
        if recorded is not None:
            return recorded
        champion = self.models.store.champion()
        return ServingState(None if champion is None else Target(*champion), source="registry")

    # ---- actions --------------------------------------------------------------------------------------
    def promote(self, target: Target, *, actor: Actor, note: str = "") -> StoredEvent:
        """Make ``target`` the champion; the current champion goes on the rollback stack."""
        if self.pinned is not None:
            raise ServingConflict(
                f"this deployment pins {self.pinned.label()} by its settings (CREDIT_DECISION_MODEL_NAME / "
                "_MODEL_VERSION); change the settings and restart to serve another version"
            )
        current = self.state()
        if current.champion == target and current.source == "chain":
            raise ServingConflict(f"{target.label()} is already the champion")
        # (promoting the model store's registry champion records it in the chain: the deployment's first promotion)
        self._servable(target, current)
        previous = current.previous
        if current.champion is not None and current.champion != target:
            previous = (*previous, current.champion)
        new = replace(
            current,
            champion=target,
            challenger=None if current.challenger == replace(target, policy=None) else current.challenger,
            policy_shadow=None
            if target.policy is not None and target.policy == current.policy_shadow
            else current.policy_shadow,
            previous=previous[-MAX_PREVIOUS:],
        )
        return self._record("promotion", actor, note, current, new, {"to": target.to_json()})

    def rollback(self, *, actor: Actor, note: str = "") -> StoredEvent:
        """Restore the champion before the current one."""
        if self.pinned is not None:
            raise ServingConflict(f"this deployment pins {self.pinned.label()} by its settings; nothing to roll back")
        current = self.state()
        if not current.previous:
            raise ServingConflict("there is no earlier champion to roll back to")
        target = current.previous[-1]
        self._servable(target, current)
        new = replace(current, champion=target, previous=current.previous[:-1])
        return self._record("rollback", actor, note, current, new, {"to": target.to_json()})

    def shadow_on(self, target: Target, *, actor: Actor, note: str = "") -> StoredEvent:
        """Run ``target`` (a model version with its own policy) in shadow on every live decision."""
        current = self.state()
        if current.champion is not None and (target.name, target.version) == (
            current.champion.name,
            current.champion.version,
        ):
            raise ServingConflict(f"{target.label()} is the champion; a challenger must be another model version")
        if current.challenger == target:
            raise ServingConflict(f"{target.label()} already runs in shadow")
        self._servable(target, current)
        new = replace(current, challenger=target)
        return self._record("shadow_on", actor, note, current, new, {"challenger": target.to_json()})

    def shadow_off(self, *, actor: Actor, note: str = "") -> StoredEvent:
        """Stop the challenger."""
        current = self.state()
        if current.challenger is None:
            raise ServingConflict("no challenger runs in shadow")
        new = replace(current, challenger=None)
        return self._record("shadow_off", actor, note, current, new, {"challenger": current.challenger.to_json()})

    def policy_shadow_on(self, policy: str, *, actor: Actor, note: str = "") -> StoredEvent:
        """Run a stored candidate policy (and its catalog) in shadow on the champion's model."""
        current = self.state()
        if current.champion is None:
            raise ServingConflict("no champion is served, so there is no model to run a policy on")
        if current.policy_shadow == policy:
            raise ServingConflict(f"policy {policy} already runs in shadow")
        self._servable(replace(current.champion, policy=policy), current, field_name="policy")
        new = replace(current, policy_shadow=policy)
        return self._record("policy_shadow_on", actor, note, current, new, {"policy": policy})

    def policy_shadow_off(self, *, actor: Actor, note: str = "") -> StoredEvent:
        """Stop the candidate policy."""
        current = self.state()
        if current.policy_shadow is None:
            raise ServingConflict("no candidate policy runs in shadow")
        new = replace(current, policy_shadow=None)
        return self._record("policy_shadow_off", actor, note, current, new, {"policy": current.policy_shadow})

    def add_policy(self, policy_yaml: bytes, catalog_yaml: bytes, *, actor: Actor, note: str = "") -> StoredEvent:
        """Store a candidate policy and its reason catalog (validated against the champion's feature spec) in the
        model store, and record that in an audit event (a policy version, like a model version, never changes)."""
        current = self.state()
        if current.champion is None:
            raise ServingConflict("no champion is served, so there is no feature spec to validate a policy against")
        try:
            spec = self.load(current.champion).bundle.spec
        except ModelUnavailable as exc:
            raise ServingConflict(f"the champion cannot be loaded to validate the policy against: {exc}") from None
        try:
            stored = self.models.store.add_policy(policy_yaml, catalog_yaml, spec, note=note)
        except VersionExistsError as exc:
            raise ServingConflict(str(exc)) from None
        except ContractError as exc:
            raise NotServable(str(exc), [FieldError(_upload_field(str(exc)), str(exc))]) from None
        except OSError as exc:  # e.g. a model store mounted read-only, as in the container
            raise ServingConflict(
                f"the model store cannot store a policy here ({exc.strerror or exc}): add candidate policies with "
                "`credit-decision policies add` against a writable model store"
            ) from None
        event = AuditEvent(
            event_id=self._new_id(),
            created_at=self._clock(),
            kind="policy_added",
            actor=dict(actor),
            details={
                "policy": stored.policy_version,
                "catalog_version": stored.catalog_version,
                "files": dict(stored.manifest.get("files", {})),
                "validated_with_spec": spec.version,
                "note": note,
            },
        )
        return self.store.append_event(event)

    # ---- helpers ---------------------------------------------------------------------------------------
    def load(self, target: Target) -> ServedModel:
        """The self-checked model of a target (ModelUnavailable if it cannot be served)."""
        return self.models.get(target.name, target.version, target.policy)

    def _servable(self, target: Target, current: ServingState, field_name: str = "version") -> ServedModel:
        try:
            model = self.load(target)
        except ModelUnavailable as exc:
            raise NotServable(str(exc), [FieldError(field_name, str(exc))]) from None
        if current.champion is not None and current.champion != target:
            try:
                champion = self.load(current.champion)
            except ModelUnavailable:
                return model  # the current champion is broken: anything servable may replace it
            if model.bundle.spec.input_contract() != champion.bundle.spec.input_contract():
                message = (
                    f"{target.label()} accepts other applicant fields (spec {model.bundle.spec.version}) than the "
                    f"champion {current.champion.label()} (spec {champion.bundle.spec.version}); a new input "
                    "contract is a new deployment"
                )
                raise NotServable(message, [FieldError(field_name, message)])
        return model

    def _record(
        self,
        kind: str,
        actor: Actor,
        note: str,
        before: ServingState,
        after: ServingState,
        details: Mapping[str, Any],
    ) -> StoredEvent:
        event = AuditEvent(
            event_id=self._new_id(),
            created_at=self._clock(),
            kind=kind,
            actor=dict(actor),
            details={**details, "note": note, "before": before.to_json()},
            serving_state=after.to_json(),
        )
        return self.store.append_event(event)


def _upload_field(message: str) -> str:
    """Which uploaded file an error is about (the loader names it first)."""
    return "reason_codes_yaml" if message.startswith("reason_codes") else "policy_yaml"
