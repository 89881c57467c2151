"""The HTTP server's departures from stock uvicorn, both answered before the app sees a request:

- requests it refuses itself (a malformed chunk size, a request-smuggling attempt, a URL past the parser's
  limit) get the OpenAI error shape like every other error, not uvicorn's plain-text "Invalid HTTP
  request received.";
- the connection guard (`gateway.edge.connections`): a head or body that does not arrive in time is closed
  (408), a head past 64 KiB is refused (400), connections past the caps are refused (503 in all, 429 per
  address), and a body that would take the bytes of bodies being received past the bound is refused (503,
  Retry-After) before it is read.

httptools' protocol when httptools is installed (a dependency), else h11's, as uvicorn itself picks; the
guard needs httptools' parser callbacks, so the h11 fallback has the error shape only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gateway.edge.connections import HEAD_MAX_BYTES, ConnectionGuard
from gateway.vocab.errors import GatewayError, InvalidRequest, RateLimited
from gateway.vocab.settings_model import ServerSettings, Settings

log = logging.getLogger("gateway.connections")

# How long a refused connection is read on (and what comes dropped) after its answer, so the client reads it.
LINGER_S = 2.0

_BODY = InvalidRequest("Malformed HTTP request: the server could not parse it", code="invalid_http_request").to_json()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
            (b"connection", b"close")]


def _busy(message: str) -> GatewayError:
    err = GatewayError(message, code="server_busy")
    err.status = 503
    return err


# What the guard answers, by the moment it answers: status line, then the OpenAI error body.
_REFUSALS: dict[str, tuple[bytes, GatewayError]] = {
    "connections": (b"503 Service Unavailable", _busy(
        "The server has as many connections open as it takes (server.max_connections); retry shortly")),
    "per_ip": (b"429 Too Many Requests", RateLimited(
        "Too many connections open from this address (server.max_connections_per_ip); close some or retry "
        "shortly", code="too_many_connections")),
    "bodies": (b"503 Service Unavailable", _busy(
        "The server is receiving as many request bodies as it holds at once (server.max_body_bytes_in_flight); "
        "retry shortly")),
    "head": (b"400 Bad Request", InvalidRequest(  # as the parser's own refusals (a URL past 64 KiB is one)
        f"Malformed HTTP request: its head (request line and headers) is larger than {HEAD_MAX_BYTES} bytes",
        code="invalid_http_request")),
    "timeout": (b"408 Request Timeout", InvalidRequest(
        "The request did not arrive in time (server.header_timeout_s for its head, server.body_timeout_s for "
        "its body)", code="request_timeout")),
}


def _response(reason: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    status, err = _REFUSALS[reason]
    body = err.to_json()
    content = [b"HTTP/1.1 ", status, b"\r\n"]
    headers = [*default_headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if reason in ("connections", "per_ip", "bodies"):
        headers.append((b"retry-after", b"1"))
    for name, value in headers:
        content.extend([name, b": ", value, b"\r\n"])
    content.extend([b"\r\n", body])
    return b"".join(content)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _h11_protocol() -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class OpenAIErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # not once a response has gone out
                response = h11.Response(status_code=400, headers=_HEADERS, reason=b"Bad Request")
                for event in (response, h11.Data(data=_BODY), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event) or b"")
            self.transport.close()

    log.warning("httptools is not installed: uvicorn's h11 protocol runs without the connection guard "
                "(server.header_timeout_s, max_connections, max_body_bytes_in_flight)")
    return OpenAIErrorH11Protocol


def guarded_protocol(guard: ConnectionGuard) -> type:
    """uvicorn's httptools protocol answering refusals in the OpenAI shape and asking `guard` at each step."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return _h11_protocol()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.peer = ""
            self.deadline = 0.0     # loop time the head or body must be complete by; 0: none running
            self.phase = 0          # 0: between requests, 1: a head is arriving, 2: a body is arriving
            self.head_bytes = 0     # bytes of the arriving head, from its second read
            self.reserved = 0       # body bytes counted against server.max_body_bytes_in_flight
            self.chunked = False    # the body has no Content-Length: counted as it arrives
            self.refused = False    # answered by the guard: the parser's later callbacks are ignored

        def refuse(self, reason: str) -> None:
            self.refused = True
            self.deadline = 0.0
            guard.release(self)
            cycle = self.cycle
            if self.phase == 2 and cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # the app's receive() says so now; its answer, if any, is not sent
                cycle.message_event.set()
            if self.transport.is_closing():
                return
            self.transport.write(_response(reason, self.server_state.default_headers))
            if reason in ("connections", "per_ip") or not self.transport.can_write_eof():
                self.transport.close()
                return
            # The client may still be sending: a close with its bytes unread resets the connection, and the
            # answer is lost with it. Half-close after the answer and read on, discarding, for LINGER_S.
            self.transport.write_eof()
            self.flow.resume_reading()
            self.deadline = self.loop.time() + LINGER_S

        def expire(self) -> None:
            if self.refused:
                self.transport.close()
                return
            cycle = self.cycle
            idle = cycle is None or cycle.response_complete
            if (self.phase == 1 and idle) or (self.phase == 2 and not cycle.response_started):
                self.refuse("timeout")
            elif not self.transport.is_closing():
                self.transport.close()

        # asyncio.Protocol
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.peer = self.client[0] if self.client else ""
            refused = guard.opened(self, self.loop)
            if refused:
                self.refuse("connections" if refused == 503 else "per_ip")
            else:
                self.deadline = self.loop.time() + guard.header_timeout_s

        def connection_lost(self, exc: Exception | None) -> None:
            guard.closed(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return  # answered: what still comes is dropped
            in_head = self.phase == 1
            super().data_received(data)
            if in_head and self.phase == 1 and not self.refused:  # all of this read was head
                self.head_bytes += len(data)
                if self.head_bytes > HEAD_MAX_BYTES:
                    self.refuse("head")

        def send_400_response(self, msg: str) -> None:
            if self.refused:
                return
            content = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in [*self.server_state.default_headers, *_HEADERS]:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend([b"\r\n", _BODY])
            self.transport.write(b"".join(content))
            self.transport.close()

        # httptools' parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.phase = 1
            self.head_bytes = 0
            if not self.deadline:  # the first request's head counts from the connection
                self.deadline = self.loop.time() + guard.header_timeout_s

        def on_headers_complete(self) -> None:
            if self.refused:
                return
            self.phase = 2
            self.deadline = self.loop.time() + guard.body_timeout_s
            length = _content_length(self.headers)
            self.chunked = length is None
            if length and not guard.reserve(self, guard.announced(length)):
                self.refuse("bodies")
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if self.refused:
                return
            if self.chunked and not self.cycle.response_complete and not guard.reserve(self, len(body)):
                if self.cycle.response_started:
                    self.transport.close()
                else:
                    self.cycle.disconnected = True  # the app's own answer, if any, is not sent after ours
                    self.refuse("bodies")
                return
            super().on_body(body)

        def on_message_complete(self) -> None:
            if self.refused:
                return
            self.phase = 0
            self.deadline = 0.0
            guard.release(self)
            super().on_message_complete()

    return GuardedHttpToolsProtocol


def uvicorn_options(settings: Settings | None = None) -> dict[str, Any]:
    """What `smr serve` (and the tests' servers) give uvicorn besides the app, host and port: with the
    connection guard of `settings.server` (defaults when not given), one guard per call (one server)."""
    server = settings.server if settings is not None else ServerSettings()
    return {"http": guarded_protocol(ConnectionGuard(server)), "access_log": False, "server_header": False}
