"""The published contract holds: schemathesis generates requests from /openapi.json and checks the answers.

Every operation, with a key holding every role: no 5xx, only documented status codes, the documented
content types and headers, and response bodies that validate against the documented response schemas.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def contract_app(api_make_app: Any) -> Any:
    """A fresh app over the tiny champion and its own SQLite store (keys for every role)."""
    return api_make_app()


@pytest.fixture(scope="module")
def contract_schema(contract_app: Any) -> Any:
    """The OpenAPI document the app serves, bound to the app (WSGI, in process)."""
    return schemathesis.openapi.from_wsgi("/openapi.json", contract_app)


@pytest.fixture(scope="module")
def all_roles_headers(api_keys: dict[str, str]) -> dict[str, str]:
    """Authorization header of the key holding every role."""
    return {"Authorization": f"Bearer {api_keys['all']}"}


def test_every_operation_keeps_the_published_contract(contract_schema: Any, all_roles_headers: dict[str, str]) -> None:
    operations = [result.ok() for result in contract_schema.get_all_operations()]
    exercised = {operation.definition.raw["operationId"] for operation in operations}
    # every documented operation (the document covers every route: test_pipeline checks it), reports,
    # outcomes and notices included
    assert {"getReport", "postOutcomes", "getNotice", "createDecision", "createDecisionsBatch"} <= exercised
    assert len(exercised) == len(operations) >= 19
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def keeps_contract(case: Any) -> None:
            response = case.call(headers=all_roles_headers)
            case.validate_response(response, checks=CHECKS)

        keeps_contract()
