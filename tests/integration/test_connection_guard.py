"""The connection guard against a real gateway on real sockets (issue 24, defects 12 and 13): a slowloris
client is closed after the header timeout, connections past the caps are refused, bodies past the bytes
in flight are refused before they are read, while ordinary requests keep being answered."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.edge.server import uvicorn_options
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import Settings
from tests.helpers import GatewayThread, make_settings

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "What is a Python tuple?"}]}


class GuardedGateway(GatewayThread):
    """The gateway under uvicorn with the connection guard of its settings, as `smr serve` runs it."""

    def __init__(self, settings: Settings) -> None:  # not super().__init__: it would build a second app
        self.settings = settings
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2, **uvicorn_options(settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@contextlib.contextmanager
def guarded(fakes: ThreadedFakes, **server: Any) -> Iterator[GuardedGateway]:
    gw = GuardedGateway(make_settings(fakes, server=server))
    with gw:
        yield gw


@contextlib.contextmanager
def sockets(gw: GatewayThread, n: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """n connections to the gateway, each having sent `first`; all closed on the way out."""
    opened: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            opened.append(s)
            if first:
                s.sendall(first)
        yield opened
    finally:
        for s in opened:
            s.close()


def read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection (or 10 s pass: the test then fails)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return data


def error_of(raw: bytes, status: int) -> dict[str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), raw[:200]
    assert b"content-type: application/json" in head.lower()
    err: dict[str, Any] = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def chat_ok(gw: GatewayThread) -> None:
    r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 200, r.text


def eventually_ok(gw: GatewayThread, content: bytes | None = None) -> httpx.Response:
    """A request that succeeds once the server has seen the earlier connections close (it retries a few
    seconds: a closed socket reaches the server's loop a moment later)."""
    deadline = time.time() + 10
    while True:
        try:
            r = httpx.post(gw.url + "/v1/chat/completions", timeout=10,
                           **({"content": content} if content is not None else {"json": CHAT}))
            if r.status_code == 200 or time.time() > deadline:
                return r
        except httpx.TransportError:
            if time.time() > deadline:
                raise
        time.sleep(0.1)


HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"


def test_partial_heads_are_closed_after_the_header_timeout_while_requests_pass(fakes: ThreadedFakes) -> None:
    with guarded(fakes, header_timeout_s=1.0) as gw, sockets(gw, 40, HEAD) as slow, sockets(gw, 5) as silent:
        chat_ok(gw)  # the slow clients hold connections, not the server
        for s in slow:  # each gets a 408 in the OpenAI shape, then the server closes
            err = error_of(read_all(s), 408)
            assert err["code"] == "request_timeout" and "server.header_timeout_s" in err["message"]
        for s in silent:  # connected and sent nothing: closed without an answer
            assert read_all(s) == b""
        chat_ok(gw)


def test_a_body_not_finished_in_time_gets_408(fakes: ThreadedFakes) -> None:
    body = json.dumps(CHAT).encode()
    with guarded(fakes, body_timeout_s=1.0) as gw, sockets(gw, 1, HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
                                                            + body[:-1]) as (s,):
        err = error_of(read_all(s), 408)
        assert err["code"] == "request_timeout"
        chat_ok(gw)


def test_past_the_per_ip_cap_connections_are_refused_until_others_close(fakes: ThreadedFakes) -> None:
    with guarded(fakes, max_connections_per_ip=5) as gw:
        with sockets(gw, 5, HEAD):
            with sockets(gw, 1) as (extra,):
                err = error_of(read_all(extra), 429)
                assert err["code"] == "too_many_connections"
                assert "server.max_connections_per_ip" in err["message"]
            try:  # a client that sends at once reads the refusal, or a reset if the close overtook it
                r = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10)
                assert r.status_code == 429, r.text
            except httpx.TransportError:
                pass
        assert eventually_ok(gw).status_code == 200


def test_past_the_connection_cap_connections_get_503(fakes: ThreadedFakes) -> None:
    with guarded(fakes, max_connections=4, max_connections_per_ip=0) as gw:
        with sockets(gw, 4, HEAD), sockets(gw, 1) as (extra,):
            raw = read_all(extra)
            err = error_of(raw, 503)
            assert err["code"] == "server_busy" and b"retry-after: 1" in raw.lower()
        assert eventually_ok(gw).status_code == 200


def big_chat(nbytes: int) -> bytes:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": ""}]}).encode()
    return body.replace(b'""', b'"' + b"a" * (nbytes - len(body)) + b'"')


def test_bodies_past_the_bytes_in_flight_are_refused_before_they_are_read(fakes: ThreadedFakes) -> None:
    body = big_chat(1_200_000)
    head = HEAD + b"Content-Length: %d\r\n\r\n" % len(body)
    with guarded(fakes, max_body_bytes_in_flight=3_000_000) as gw:
        with sockets(gw, 2, head + body[:-1]):  # two bodies withheld by one byte: 2.4 MB held
            with sockets(gw, 1, head) as (third,):  # 3.6 MB would be past the bound: refused from its head
                raw = read_all(third)
                err = error_of(raw, 503)
                assert err["code"] == "server_busy" and "server.max_body_bytes_in_flight" in err["message"]
                assert b"retry-after: 1" in raw.lower()
            chat_ok(gw)  # a small body still fits
        r = eventually_ok(gw, body)  # the withheld bodies ended: their bytes are free again
        assert r.status_code == 200, r.text


def test_a_chunked_body_past_the_bytes_in_flight_is_refused_as_it_arrives(fakes: ThreadedFakes) -> None:
    chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
    with guarded(fakes, max_body_bytes_in_flight=1_000_000) as gw, sockets(gw, 1) as (s,):
        raw = send_until_answered(s, HEAD + b"Transfer-Encoding: chunked\r\n\r\n", chunk, 100)  # 1 MB is 16
        assert error_of(raw, 503)["code"] == "server_busy"
        chat_ok(gw)


def send_until_answered(s: socket.socket, first: bytes, piece: bytes, times: int) -> bytes:
    """Send `first`, then `piece` up to `times` times, stopping once the server answers (or resets)."""
    s.sendall(first)
    for _ in range(times):
        if select.select([s], [], [], 0)[0]:
            break
        try:
            s.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
    else:
        select.select([s], [], [], 5)
    return read_all(s)


def test_a_head_past_its_size_bound_gets_400_before_it_is_held(fakes: ThreadedFakes) -> None:
    # httptools' parser sets no bound: 100 MB of header lines were held until the header timeout.
    with guarded(fakes, header_timeout_s=30.0) as gw, sockets(gw, 1) as (s,):
        raw = send_until_answered(s, b"GET /health HTTP/1.1\r\nHost: gw\r\n", b"X-Pad: " + b"a" * 50_000 + b"\r\n",
                                  200)
        err = error_of(raw, 400)
        assert err["code"] == "invalid_http_request" and "65536 bytes" in err["message"]
        chat_ok(gw)
