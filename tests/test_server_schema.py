"""Property-based API testing from the OpenAPI document: whatever a client sends, the
server never answers 5xx (on both databases)."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests.test_server import POLICY

from proctor import Proctor
from proctor.server.app import create_app
from proctor.server.auth import create_token

EXAMPLES = int(os.environ.get("PROCTOR_FUZZ_EXAMPLES", "20"))


def test_no_server_errors_from_any_request(db_url: str) -> None:
    with Proctor(db_url) as px:
        px.policy.apply(POLICY)
        _, token = create_token(px.store, role="admin", name="fuzzer")
        app = create_app(px, max_body=256 * 1024, sweep=False)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        headers = {"Authorization": f"Bearer {token}"}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25
        for operation in operations:
            if operation.method.upper() == "DELETE":
                continue  # revoking the fuzzer's own token would end the run early

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            check()
