"""Property tests: hundreds of random valid applications drawn from the feature spec, through the real API."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_store.spec import FeatureSpec
from service.state import get_state

JSON = "application/json"
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _spec_of(app: Any) -> FeatureSpec:
    return get_state(app).model.bundle.spec


def applicants(spec: FeatureSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Valid applicants: every field of the spec, integers in range, categorical codes."""
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for field in spec.fields:
        if field.kind == "categorical":
            strategies[field.name] = st.sampled_from(field.codes)
        elif field.dtype == "integer":
            strategies[field.name] = st.integers(int(field.minimum), int(field.maximum))
        else:
            strategies[field.name] = st.floats(field.minimum, field.maximum, allow_nan=False, allow_infinity=False)
    return st.fixed_dictionaries(strategies)


APPLICATION_IDS = st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True)


def _sigmoid(margin: float) -> float:
    return 1.0 / (1.0 + math.exp(-margin)) if margin >= 0 else math.exp(margin) / (1.0 + math.exp(margin))


def test_random_valid_applications(api_app: Any) -> None:
    spec = _spec_of(api_app)
    policy = get_state(api_app).model.bundle.policy
    prohibited = {m.name for m in spec.monitoring_only} | {m.source_column for m in spec.monitoring_only}
    client = api_app.test_client()
    store = get_state(api_app).store
    seen: list[int] = []

    @PROPERTY_SETTINGS
    @given(applicant=applicants(spec), application_id=APPLICATION_IDS)
    def check(applicant: dict[str, Any], application_id: str) -> None:
        before = store.count()
        request = {"application_id": application_id, "applicant": applicant}
        first = client.post("/v1/decisions", data=json.dumps(request), content_type=JSON)
        again = client.post("/v1/decisions", data=json.dumps(request), content_type=JSON)
        assert first.status_code == again.status_code == 201, first.get_data(as_text=True)
        a, b = first.get_json(), again.get_json()
        assert store.count() == before + 2
        assert a["decision_id"] != b["decision_id"]
        # exact, additive explanation of the very margin that was scored
        explanation = a["explanation"]
        total = math.fsum(explanation["attributions"].values()) + explanation["base_value"]
        assert abs(total - explanation["margin"]) <= 1e-5
        assert abs(_sigmoid(explanation["margin"]) - a["probability_of_default"]) <= 1e-6
        # deterministic: same score, band, decision and reasons in the same order
        for key in (
            "score",
            "risk_band",
            "decision",
            "probability_of_default",
            "reasons",
            "rules_fired",
            "explanation",
        ):
            assert a[key] == b[key], key
        # reasons never name a prohibited-basis attribute
        for reason in a["reasons"]:
            assert reason["group"] not in prohibited
            assert not {v["field"] for v in reason["values"]} & prohibited
            assert not any(p in reason["customer_text"] or p in reason["auditor_text"] for p in prohibited)
        # the decision agrees with the band and the rules, via the policy
        band = policy.band_for(a["score"]["value"])
        fired = policy.fired_rules(applicant)
        assert a["risk_band"] == band.band
        assert [r["code"] for r in a["rules_fired"]] == [r.code for r in fired]
        assert a["decision"] == policy.decide(band, fired)
        assert policy.scaling.score(explanation["margin"]) == a["score"]["value"]
        # rule reasons first, then model reasons ranked by contribution toward higher risk
        kinds = [r["kind"] for r in a["reasons"]]
        assert kinds == sorted(kinds, key=lambda k: k != "rule")
        assert [r["code"] for r in a["reasons"] if r["kind"] == "rule"] == [r.code for r in fired][: len(kinds)]
        model_contributions = [r["contribution"]["log_odds"] for r in a["reasons"] if r["kind"] == "model"]
        assert model_contributions == sorted(model_contributions, reverse=True)
        assert all(c > 0 for c in model_contributions)
        assert len(a["reasons"]) <= 4
        assert all(r["adverse"] == (a["decision"] != "approve") for r in a["reasons"] if r["kind"] == "model")
        seen.append(1)

    check()
    assert len(seen) >= 200


def test_monitoring_attributes_are_never_accepted(api_app: Any) -> None:
    spec = _spec_of(api_app)
    names = [m.name for m in spec.monitoring_only]
    client = api_app.test_client()
    store = get_state(api_app).store

    @settings(max_examples=60, deadline=None)
    @given(
        applicant=applicants(spec),
        name=st.sampled_from(names),
        value=st.one_of(st.text(max_size=20), st.booleans(), st.integers(), st.none()),
        top_level=st.booleans(),
    )
    def check(applicant: dict[str, Any], name: str, value: Any, top_level: bool) -> None:
        before = store.count()
        request: dict[str, Any] = {"application_id": "monitoring-1", "applicant": dict(applicant)}
        (request if top_level else request["applicant"])[name] = value
        response = client.post("/v1/decisions", data=json.dumps(request), content_type=JSON)
        assert response.status_code == 422
        field = name if top_level else f"applicant.{name}"
        errors = {e["field"]: e["message"] for e in response.get_json()["errors"]}
        assert "prohibited" in errors[field]
        assert store.count() == before

    check()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=30,
)


def test_arbitrary_json_never_gets_a_5xx(api_app: Any) -> None:
    spec = _spec_of(api_app)
    client = api_app.test_client()
    store = get_state(api_app).store

    @settings(max_examples=150, deadline=None)
    @given(
        body=st.one_of(
            JSON_VALUES,
            st.fixed_dictionaries({"application_id": JSON_VALUES, "applicant": JSON_VALUES}),
            st.fixed_dictionaries(
                {"application_id": APPLICATION_IDS, "applicant": applicants(spec)},
                optional={"extra": JSON_VALUES},
            ).map(lambda d: {**d, "applicant": {**d["applicant"], **({"x": 1} if "extra" in d else {})}}),
        ),
        batch=st.booleans(),
    )
    def check(body: Any, batch: bool) -> None:
        before = store.count()
        path, payload = ("/v1/decisions:batch", {"applications": [body]}) if batch else ("/v1/decisions", body)
        response = client.post(path, data=json.dumps(payload), content_type=JSON)
        assert response.status_code < 500, response.get_data(as_text=True)
        created = response.status_code == 201 or (
            batch and response.status_code == 200 and response.get_json()["succeeded"] == 1
        )
        assert store.count() == before + (1 if created else 0)
        if response.status_code >= 400:
            assert response.mimetype == "application/problem+json"

    check()
