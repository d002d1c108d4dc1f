"""The published OpenAPI document is honoured: schemathesis fuzzes every operation of a running
`lake serve` and finds no server error and no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from lake.client import LakeClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# No server error, no undocumented status, no response outside its schema. (A read-only SQL
# endpoint answers 400 to most generated SQL, so "valid data is accepted" is not checked.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def test_openapi_document_is_served_without_a_key(serve_url: str) -> None:
    document = LakeClient(serve_url).request("GET", "/openapi.json").body
    assert document["openapi"].startswith("3.")
    assert {"/sql", "/tables", "/tables/{name}", "/health/live", "/health/ready"} <= set(document["paths"])


def test_api_conforms_to_its_schema(serve_url: str, make_key: Callable[..., str]) -> None:
    schema = schemathesis.openapi.from_url(f"{serve_url}/openapi.json")
    schema.config.update(base_url=serve_url)
    headers = {"Authorization": f"Bearer {make_key('admin')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    for operation in operations:

        @given(operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, timeout=120, checks=CHECKS)

        call()
