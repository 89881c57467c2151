"""The HTTP server's one departure from stock uvicorn: requests it refuses itself, before the app sees
them (a malformed chunk size, a request-smuggling attempt, a URL past the parser's limit), get the
OpenAI error shape like every other error, not uvicorn's plain-text "Invalid HTTP request received.".
httptools' protocol when httptools is installed (a dependency), else h11's, as uvicorn itself picks."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest

_BODY = InvalidRequest("Malformed HTTP request: the server could not parse it", code="invalid_http_request").to_json()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
            (b"connection", b"close")]


def _protocol() -> type:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class OpenAIErrorH11Protocol(H11Protocol):
            def send_400_response(self, msg: str) -> None:
                if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # not once a response has gone out
                    response = h11.Response(status_code=400, headers=_HEADERS, reason=b"Bad Request")
                    for event in (response, h11.Data(data=_BODY), h11.EndOfMessage()):
                        self.transport.write(self.conn.send(event) or b"")
                self.transport.close()

        return OpenAIErrorH11Protocol

    class OpenAIErrorHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            content = [b"HTTP/1.1 400 Bad Request\r\n"]
            for name, value in [*self.server_state.default_headers, *_HEADERS]:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend([b"\r\n", _BODY])
            self.transport.write(b"".join(content))
            self.transport.close()

    return OpenAIErrorHttpToolsProtocol


def uvicorn_options() -> dict[str, Any]:
    """What `smr serve` (and the tests' servers) give uvicorn besides the app, host and port."""
    return {"http": _protocol(), "access_log": False, "server_header": False}
