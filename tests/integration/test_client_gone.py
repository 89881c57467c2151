"""A client that goes away before its answer is over: one row for the request (499), charged for what the
upstream generated, and the upstream call stopped rather than run to its end."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import msgspec
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import Timeouts
from tests.helpers import GatewayThread, backends_for, make_settings, rows, wait_for_rows


async def test_client_gone_as_a_stream_starts_is_logged_charged_and_closes_the_upstream(fakes: ThreadedFakes,
                                                                                         pg_url: str) -> None:
    """The client hangs up after the gateway has its first token but before the stream is sent (the ASGI
    server reports the disconnect as the response starts): one row, 499, charged for what was generated,
    and the upstream stream closed, not left running to its end."""
    fakes.gemini.behaviour = Behaviour(pieces=50, chunk_delay_ms=50)
    stats = fakes.gemini.stats
    cancelled, completed = stats.streams_cancelled, stats.streams_completed   # the other tests' streams
    body = json.dumps({"model": "smr/medium", "stream": True,
                       "messages": [{"role": "user", "content": "leaving as it starts"}]}).encode()
    responding = asyncio.Event()
    messages = iter([{"type": "http.request", "body": body, "more_body": False}])
    sent: list[str] = []

    async def receive() -> dict[str, object]:
        if (first := next(messages, None)) is not None:
            return first
        await responding.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(str(message["type"]))
        if message["type"] == "http.response.start":
            responding.set()

    # A fresh app's first Gemini call (the client's set-up, a new connection) can take seconds on a loaded
    # machine: generous time limits, so the only way this request ends is the client leaving.
    patient = backends_for(fakes, Timeouts(connect_s=10, first_token_s=20, total_s=30))
    app = create_app(msgspec.structs.replace(make_settings(fakes, db_url=pg_url), backends=patient))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 80), "state": {},
             "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"leaves-as-it-starts")]}
    query = ("SELECT http_status, completion_tokens, cost_usd FROM request_log "
             "WHERE client_request_id = 'leaves-as-it-starts'")
    async with AsyncTestClient(app) as client:  # the app's lifespan: its pool, log writer and upstream clients
        await app(scope, receive, send)  # type: ignore[arg-type]
        # Accounted by the time the response is over: the server starts reading the stream before it
        # notices the client is gone (cancellation lands at an await), so its ending runs.
        metrics = (await client.get("/metrics")).text
        assert 'smr_requests_total{endpoint="/v1/chat/completions",status="499"' in metrics, metrics
        deadline = time.time() + 10   # the row is written by the app's log writer, on this event loop
        while not (got := rows(pg_url, query)) or stats.streams_cancelled == cancelled:
            assert time.time() < deadline, (got, stats)
            await asyncio.sleep(0.05)
    assert sent[0] == "http.response.start" and stats.streams_cancelled == cancelled + 1
    assert stats.streams_completed == completed
    assert len(got) == 1 and got[0][0] == 499 and got[0][1] > 0 and got[0][2] > 0, got  # type: ignore[operator]


def test_client_gone_before_a_json_answer_cancels_the_call_and_logs_499(
        fakes: ThreadedFakes, gateway: GatewayThread, pg_url: str) -> None:
    """A non-streaming client that hangs up stops the upstream call; its one row says 499, not 200."""
    fakes.gemini.behaviour = Behaviour(latency_ms=2000)
    body = json.dumps({"model": "smr/medium", "messages": [{"role": "user", "content": "slow one"}]}).encode()
    started = time.time()
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"x-request-id: hangs-up\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.3)
    wait_for_rows(pg_url, "client_request_id = 'hangs-up'", 1)
    time.sleep(max(0.0, started + 2.5 - time.time()))  # past the moment the upstream would have answered
    got = rows(pg_url, "SELECT http_status, error_type, latency_ms FROM request_log "
                       "WHERE client_request_id = 'hangs-up'")
    assert len(got) == 1
    status, error_type, latency_ms = got[0]
    assert (status, error_type) == (499, "client_closed_request")
    assert latency_ms < 1500  # type: ignore[operator]
