"""Money against the wire-faithful fakes and Postgres (issue 24): what the upstream is sent as a cap, and
what the books keep of the usage it reports, however wrong, and of a stream it breaks."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, rows, wait_for_rows

CONTEXT_WINDOW = 1_000_000  # the test backends keep the default


def ask(gw: GatewayThread, model: str, **body: Any) -> tuple[httpx.Response, str]:
    rid = "bounds-" + secrets.token_hex(6)
    r = httpx.post(gw.url + "/v1/chat/completions", headers={"x-request-id": rid}, timeout=20,
                   json={"model": model, "messages": [{"role": "user", "content": "count these words"}], **body})
    return r, rid


def row_of(pg_url: str, rid: str) -> tuple[object, ...]:
    wait_for_rows(pg_url, "client_request_id = %s", 1, (rid,))
    (row,) = rows(pg_url, "SELECT http_status, prompt_tokens, completion_tokens, cost_usd, usage_estimated, "
                          "error_type FROM request_log WHERE client_request_id = %s", (rid,))
    return row


@pytest.mark.parametrize(("model", "server", "cap"), [
    ("flash", "gemini", lambda body: body["generationConfig"]["maxOutputTokens"]),
    ("local", "ollama", lambda body: body["options"]["num_predict"]),
    ("oai", "openai", lambda body: body["max_tokens"]),
])
def test_every_adapter_sends_the_cap_the_budget_held(fakes: ThreadedFakes, gateway: GatewayThread, model: str,
                                                     server: str, cap: Any) -> None:
    """Without max_tokens a budget holds the backend's max_output_tokens (8,192): the call must say so."""
    r, _ = ask(gateway, model)
    assert r.status_code == 200, r.text
    assert cap(getattr(fakes, server).stats.last_body) == 8192
    r, _ = ask(gateway, model, max_tokens=33)
    assert r.status_code == 200 and cap(getattr(fakes, server).stats.last_body) == 33


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "server"), [("oai", "openai"), ("flash", "gemini"), ("local", "ollama")])
def test_negative_usage_is_flagged_and_never_a_refund(fakes: ThreadedFakes, gateway: GatewayThread, pg_url: str,
                                                     model: str, server: str, stream: bool) -> None:
    getattr(fakes, server).behaviour = Behaviour(prompt_tokens=-5_000_000_000, completion_tokens=-3)
    r, rid = ask(gateway, model, stream=stream, stream_options={"include_usage": True} if stream else None)
    assert r.status_code == 200, r.text
    if not stream:
        assert min(r.json()["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")) > 0
    status, prompt, completion, cost, estimated, error = row_of(pg_url, rid)
    assert (status, estimated, error) == (200, True, None)
    assert prompt > 0 and completion > 0 and cost > 0  # type: ignore[operator]


@pytest.mark.parametrize(("model", "server"), [("oai", "openai"), ("flash", "gemini"), ("local", "ollama")])
def test_a_trillion_tokens_are_clamped_and_the_row_is_written(fakes: ThreadedFakes, gateway: GatewayThread,
                                                              pg_url: str, model: str, server: str) -> None:
    getattr(fakes, server).behaviour = Behaviour(prompt_tokens=10**12, completion_tokens=10**12)
    r, rid = ask(gateway, model, max_tokens=40)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == CONTEXT_WINDOW and r.json()["usage"]["completion_tokens"] == 40
    status, prompt, completion, cost, estimated, _ = row_of(pg_url, rid)
    assert (status, prompt, completion, estimated) == (200, CONTEXT_WINDOW, 40, True)
    assert cost < 15.0  # type: ignore[operator]  # at most a context window and the cap at "pro"'s prices


def test_a_stream_line_past_the_readers_limit_ends_with_an_error_event_and_row(
        fakes: ThreadedFakes, gateway: GatewayThread, pg_url: str) -> None:
    """An SSE line over 4 MB: the client's stream was cut with no error event, and the row said 200."""
    fakes.openai.behaviour = Behaviour(long_line_bytes=5 * 2**20)
    rid = "bounds-" + secrets.token_hex(6)
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", headers={"x-request-id": rid}, timeout=20,
                      json={"model": "oai", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[0].startswith("{") and "[DONE]" not in events
    assert '"upstream_protocol_error"' in events[-1] and "oai" in events[-1]
    status, *_, error = row_of(pg_url, rid)
    assert (status, error) == (502, "upstream_protocol_error")
