"""Schemathesis against the OpenAPI schema the app publishes (issue 13): requests generated from it, valid
and invalid, for every operation, with the admin key; none may get a 500, and every error must have
the OpenAI shape. The number of examples per operation is bounded to keep the suite short
(SMR_FUZZ_EXAMPLES raises it for a longer hunt)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from gateway.api import feedback
from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, make_settings

ADMIN = "fuzz-admin"
EXAMPLES = int(os.environ.get("SMR_FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzzed(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    settings_ = make_settings(fakes, db_url=pg_url, auth={"enabled": True, "admin_key": ADMIN})
    # A generated request id is never logged, so each rating waits out all of feedback's pauses for its row
    # (1.85 s: most of the fuzzing's time, asleep) before its 404: the same tries here, without the pauses.
    with pytest.MonkeyPatch.context() as mp, GatewayThread(settings_) as gw:
        mp.setattr(feedback, "WAIT_FOR_ROW_S", tuple(0.0 for _ in feedback.WAIT_FOR_ROW_S))
        yield gw


def test_the_app_publishes_its_openapi_schema(fuzzed: GatewayThread) -> None:
    doc = httpx.get(fuzzed.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    body = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    chat = doc["components"]["schemas"]["ChatCompletionRequest"]
    assert "messages" in chat["required"] and chat["properties"]["temperature"]["anyOf"][0]["maximum"] == 2.0
    for path in ("/v1/complete", "/v1/keys", "/v1/tenants/{tenant}/limits", "/v1/usage", "/health", "/metrics",
                 "/v1/responses", "/v1/embeddings"):
        assert path in doc["paths"]


def check_response(case: schemathesis.Case, r: httpx.Response | object) -> None:
    status = getattr(r, "status_code", 0)
    assert status < 500 or status in (502, 503, 504), f"{case.method} {case.formatted_path}: {status}"
    if status >= 400:
        err = r.json()["error"]  # type: ignore[attr-defined]
        assert set(err) == {"message", "type", "param", "code"} and err["message"], err


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_500_or_a_bare_error(fuzzed: GatewayThread,
                                                          mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_dict(httpx.get(fuzzed.url + "/openapi.json").json())
    headers = {"Authorization": f"Bearer {ADMIN}"}
    calls = 0
    skipped: list[str] = []
    fuzzed_ops: set[str] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        fuzzed_ops.add(operation.label)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(mode))
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            check_response(case, case.call(base_url=fuzzed.url, headers=headers, timeout=10))

        try:
            run()
        except Unsatisfiable:  # an operation with no inputs has no invalid request to make
            assert mode == schemathesis.GenerationMode.NEGATIVE
            skipped.append(operation.label)
    assert calls >= 5 * EXAMPLES  # the operations were exercised
    assert {"POST /v1/responses", "POST /v1/embeddings"} <= fuzzed_ops  # issue 28's endpoints among them
    # Only operations whose inputs are free-form (no body; string path parameters) have no invalid form.
    assert all(label.split()[0] in ("GET", "DELETE") for label in skipped), skipped
