"""Model and policy lifecycle: what is served, promotion and rollback, shadows, candidate policies, audit events.

Admin (role ``admin``), each action an audit event in the decision store's hash chain naming the key:

- ``GET /v1/serving``: the deployment's serving state and what the answering worker serves;
- ``POST /v1/models/champion`` ``{name, version, policy?, note?}``: promote (every worker of every replica
  switches within its poll interval, without dropping or delaying a request);
- ``POST /v1/models/champion:rollback`` ``{note?}``: back to the previous champion;
- ``PUT /v1/models/challenger`` ``{name, version, note?}`` / ``DELETE /v1/models/challenger``: a challenger
  model version in shadow on every live decision;
- ``GET /v1/policies``, ``POST /v1/policies`` ``{policy_yaml, reason_codes_yaml, note?}``: candidate policies;
- ``PUT /v1/policies/shadow`` ``{policy, note?}`` / ``DELETE /v1/policies/shadow``: a candidate policy in shadow.

Auditor (role ``auditor``): ``GET /v1/audit/events`` (the admin actions, in chain order) and
``GET /v1/decisions/{id}/shadows`` (what the shadows decided for a live decision).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request

from service.api.audit import store_filters
from service.api.decisions import DECISION_ID_PARAMETER
from service.api.framework import Blueprint, guarded, problems, responds
from service.api.schemas import (
    AuditEventPageSchema,
    ChallengerSchema,
    EventSearchSchema,
    LifecycleResultSchema,
    NoteSchema,
    PolicyListSchema,
    PolicyShadowSchema,
    PolicyUploadSchema,
    PromoteSchema,
    ServingSchema,
    ShadowListSchema,
)
from service.auth import current_principal
from service.records.model import StoredEvent
from service.serialize import event_json, shadow_json
from service.serving import Lifecycle, ServingState, Target
from service.state import get_state


def _actor() -> dict[str, str]:
    principal, role = current_principal()
    return principal.record(role)


def _result(event: StoredEvent, state: ServingState, status: int = 200) -> Response:
    response = jsonify({"event": event_json(event), "state": state.view()})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _change(action: Any) -> Response:
    event, state = get_state().service.change_serving(action)
    return _result(event, state)


def blueprint() -> Blueprint:
    """The lifecycle endpoints."""
    bp = Blueprint("lifecycle", __name__, url_prefix="/v1", description="Model and policy lifecycle")
    s409 = "The serving state does not allow it (already so, nothing to roll back to, version pinned by settings)"
    s422 = "Invalid body, or the version or policy cannot be served (absent, fails its checks, other applicant fields)"

    @bp.route("/serving", methods=["GET"])
    @responds(200, ServingSchema, description="The serving state and this worker's view of it")
    @problems(503)
    @guarded("admin")
    def get_serving() -> Response:
        """What is served

        The deployment's serving state (champion, challenger, candidate policy in shadow, earlier champions) as
        the latest control event in the audit chain records it, and what the answering worker serves now.
        """
        service = get_state().service
        state = service.require_lifecycle().state()
        return jsonify({"state": state.view(), "worker": service.serving.view()})

    @bp.route("/models/champion", methods=["POST"])
    @responds(200, LifecycleResultSchema, description="Promoted: the audit event and the new serving state")
    @problems(400, 409, 413, 415, 422, 503, s409=s409, s422=s422)
    @guarded("admin")
    @bp.arguments(PromoteSchema)
    def promote(body: dict[str, Any]) -> Response:
        """Promote a model version to champion

        Loads and self-checks the version (with the named stored policy, if any), checks it accepts the same
        applicant fields as the champion, and records the promotion in the audit chain. Every worker switches
        within its poll interval; requests in flight finish with the version that started them.
        """
        target = Target(body["name"], body["version"], body.get("policy"))
        return _change(lambda lc: lc.promote(target, actor=_actor(), note=body["note"]))

    @bp.route("/models/champion:rollback", methods=["POST"])
    @responds(200, LifecycleResultSchema, description="Rolled back: the audit event and the new serving state")
    @problems(400, 409, 413, 415, 422, 503, s409=s409, s422=s422)
    @guarded("admin")
    @bp.arguments(NoteSchema)
    def rollback(body: dict[str, Any]) -> Response:
        """Roll back to the previous champion"""
        return _change(lambda lc: lc.rollback(actor=_actor(), note=body["note"]))

    @bp.route("/models/challenger", methods=["PUT"])
    @responds(200, LifecycleResultSchema, description="The challenger runs in shadow")
    @problems(400, 409, 413, 415, 422, 503, s409=s409, s422=s422)
    @guarded("admin")
    @bp.arguments(ChallengerSchema)
    def put_challenger(body: dict[str, Any]) -> Response:
        """Run a challenger model version in shadow

        Every live decision is also decided by the challenger, off the response's critical path, and recorded
        beside it (`GET /v1/decisions/{id}/shadows`); compare them with `GET /v1/reports/challenger`.
        """
        target = Target(body["name"], body["version"])
        return _change(lambda lc: lc.shadow_on(target, actor=_actor(), note=body["note"]))

    @bp.route("/models/challenger", methods=["DELETE"])
    @responds(200, LifecycleResultSchema, description="No challenger runs any more")
    @problems(400, 409, 503, s409=s409)
    @guarded("admin")
    def delete_challenger() -> Response:
        """Stop the challenger"""
        note = request.args.get("note", "")[:500]
        return _change(lambda lc: lc.shadow_off(actor=_actor(), note=note))

    @bp.route("/policies", methods=["GET"])
    @responds(200, PolicyListSchema, description="Stored candidate policies")
    @problems(503)
    @guarded("admin")
    def list_policies() -> Response:
        """Candidate policies in the model store"""
        store = get_state().service.require_models().store
        policies = []
        for version in store.policy_versions():
            manifest = store.policy_manifest(version)
            policies.append(
                {
                    "policy_version": version,
                    "catalog_version": str(manifest.get("catalog_version", "")),
                    "validated_with_spec": str(manifest.get("validated_with_spec", "")),
                    "created_at": str(manifest.get("created_at", "")),
                    "note": str(manifest.get("note", "")),
                    "files": dict(manifest.get("files", {})),
                }
            )
        return jsonify({"policies": policies})

    @bp.route("/policies", methods=["POST"])
    @responds(201, LifecycleResultSchema, description="Stored: the audit event and the serving state")
    @problems(400, 409, 413, 415, 422, 503, s409="A policy version of that name exists with other files", s422=s422)
    @guarded("admin")
    @bp.arguments(PolicyUploadSchema)
    def add_policy(body: dict[str, Any]) -> Response:
        """Store a candidate policy and its reason catalog

        Both files are validated against the champion's feature spec (rules on existing fields, a code for every
        reason group and rule, no prohibited basis named) and stored under the policy's version, immutable.
        """
        lifecycle: Lifecycle = get_state().service.require_lifecycle()
        event = lifecycle.add_policy(
            body["policy_yaml"].encode("utf-8"),
            body["reason_codes_yaml"].encode("utf-8"),
            actor=_actor(),
            note=body["note"],
        )
        return _result(event, lifecycle.state(), status=201)

    @bp.route("/policies/shadow", methods=["PUT"])
    @responds(200, LifecycleResultSchema, description="The candidate policy runs in shadow")
    @problems(400, 409, 413, 415, 422, 503, s409=s409, s422=s422)
    @guarded("admin")
    @bp.arguments(PolicyShadowSchema)
    def put_policy_shadow(body: dict[str, Any]) -> Response:
        """Run a candidate policy in shadow

        Every live decision is also decided by the champion's model with the candidate policy and reason catalog,
        recorded beside it and never applied.
        """
        return _change(lambda lc: lc.policy_shadow_on(body["policy"], actor=_actor(), note=body["note"]))

    @bp.route("/policies/shadow", methods=["DELETE"])
    @responds(200, LifecycleResultSchema, description="No candidate policy runs any more")
    @problems(400, 409, 503, s409=s409)
    @guarded("admin")
    def delete_policy_shadow() -> Response:
        """Stop the candidate policy"""
        note = request.args.get("note", "")[:500]
        return _change(lambda lc: lc.policy_shadow_off(actor=_actor(), note=note))

    @bp.route("/audit/events", methods=["GET"])
    @responds(
        200,
        AuditEventPageSchema,
        description="One page of admin audit events, in chain order",
        headers={"Link": {"schema": {"type": "string"}, "description": 'The next page (rel="next")'}},
    )
    @problems(400, 503)
    @guarded("auditor")
    @bp.arguments(EventSearchSchema, location="query", error_status_code=400)
    def list_events(query: dict[str, Any]) -> Response:
        """Search admin audit events

        Promotions, rollbacks, shadows switched on and off, candidate policies stored, purges and API keys
        created or revoked: who, when and what, chained with the decisions (`credit-decision audit verify`).
        """
        limit = int(query["limit"])
        store = get_state().service.require_store()
        filters = store_filters(query)
        page, next_cursor = store.events(**filters, cursor=query.get("cursor"), limit=limit)
        response = jsonify({"items": [event_json(e) for e in page], "limit": limit, "next_cursor": next_cursor})
        if next_cursor is not None:
            following = {**request.args.to_dict(), "cursor": next_cursor, "limit": str(limit)}
            response.headers["Link"] = f'<{request.path}?{urlencode(following)}>; rel="next"'
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.route("/decisions/<decision_id>/shadows", methods=["GET"], parameters=[DECISION_ID_PARAMETER])
    @responds(200, ShadowListSchema, description="The shadow decisions recorded for the decision")
    @problems(404, 503)
    @guarded("auditor")
    def list_shadows(decision_id: str) -> Response:
        """What the shadows decided for a decision

        The challenger's and the candidate policy's decisions for the same request (empty if none ran),
        recorded off the critical path, never returned to the caller.
        """
        shadows = get_state().service.shadows(decision_id)
        return jsonify({"decision_id": decision_id, "shadows": [shadow_json(s) for s in shadows]})

    return bp
