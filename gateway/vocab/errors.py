"""The gateway's exception tree, and the one place that turns it into OpenAI error JSON.

    SettingsError                       start-up only: one line naming the bad setting
    GatewayError(status, type, code)    anything a client sees as {"error": {...}}
     ├── InvalidRequest        400  invalid_request_error
     ├── AuthenticationFailed  401  authentication_error
     ├── PermissionDenied      403  permission_error
     ├── ModelNotFound         404  invalid_request_error / model_not_found
     ├── PayloadTooLarge       413  invalid_request_error / request_too_large
     ├── RateLimited           429  requests|tokens / rate_limit_exceeded (with Retry-After, x-ratelimit-*)
     ├── BudgetExceeded        429  insufficient_quota / budget_exceeded
     ├── LimitsUnavailable     503  server_error / limits_unavailable (Redis down, limits set to fail closed)
     ├── AuthUnavailable       503  server_error / auth_unavailable (key store unreachable)
     ├── DatabaseUnavailable   503  server_error / database_unavailable (Postgres away: keys, usage, requests)
     ├── UpstreamError         one backend failed (502/503/504); `retryable` drives fallback
     │    ├── BackendUnavailable     503  not configured (no API key, no URL)
     │    ├── UpstreamConnectError   502  connection refused / reset
     │    ├── UpstreamTimeout        504  connect, first-token or total timeout
     │    ├── UpstreamHTTPError      502  upstream answered 4xx/5xx (429 and 5xx retryable)
     │    └── UpstreamProtocolError  502  upstream answered something we cannot read
     ├── AllBackendsFailed     502/503/504  every backend in the chain failed; lists the attempts
     ├── ClientClosedRequest   499  the client went away before its answer (logged, never sent)
     └── InternalError         500  a bug; the traceback is in the gateway's log, never in the response

The HTTP server's connection guard (gateway.edge.server) answers before any app work with the same shape:
408 request_timeout (a head or body too slow), 429 too_many_connections (the per-address cap),
503 server_busy (the connection cap, or request bodies in flight past their bound), 400 invalid_http_request.

`accounted` is set on an error once the request path has logged its request, so the HTTP edge logs
only the requests refused before they reached the path (bad key, unreadable body).
"""

from __future__ import annotations

import msgspec


class SettingsError(Exception):
    """A wrong or missing setting; the message is one line that names it."""


class ErrorDetail(msgspec.Struct, frozen=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


_encode = msgspec.json.Encoder().encode


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    accounted: bool = False
    headers: dict[str, str] | None = None  # sent with the error response (Retry-After, x-ratelimit-*)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> ErrorBody:
        return ErrorBody(ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code))

    def to_json(self) -> bytes:
        return _encode(self.body())


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class BudgetExceeded(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"


class LimitsUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "limits_unavailable"


class AuthUnavailable(GatewayError):
    """The key store cannot be reached and this key was not seen recently: the key cannot be checked."""

    status = 503
    type = "server_error"
    code = "auth_unavailable"


class DatabaseUnavailable(GatewayError):
    """Postgres cannot be reached (restarting, down, every pooled connection busy past the pool's wait)."""

    status = 503
    type = "server_error"
    code = "database_unavailable"


class UpstreamError(GatewayError):
    """One backend failed. `retryable` says whether the next backend in the chain should be tried."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True

    def __init__(self, message: str, *, backend: str = "", upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.backend = backend
        self.upstream_status = upstream_status


class BackendUnavailable(UpstreamError):
    status = 503
    code = "backend_unavailable"


class UpstreamConnectError(UpstreamError):
    status = 502
    code = "upstream_connect_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamHTTPError(UpstreamError):
    status = 502
    code = "upstream_http_error"


class UpstreamProtocolError(UpstreamError):
    status = 502
    code = "upstream_protocol_error"


class Attempt(msgspec.Struct, frozen=True):
    backend: str
    error: str
    status: int | None = None


class AllBackendsFailed(GatewayError):
    type = "upstream_error"
    code = "all_backends_failed"

    def __init__(self, attempts: list[Attempt], status: int) -> None:
        tried = "; ".join(f"{a.backend}: {a.error}" for a in attempts)
        super().__init__(f"every backend failed ({len(attempts)} tried): {tried}")
        self.attempts = attempts
        self.status = status


def is_client_error(exc: UpstreamError) -> bool:
    """An upstream 4xx other than 408/409/429 means the request itself is bad: no fallback."""
    s = exc.upstream_status
    return s is not None and 400 <= s < 500 and s not in (408, 409, 429)


class ClientClosedRequest(GatewayError):
    status = 499
    type = "client_error"
    code = "client_closed_request"


class InternalError(GatewayError):
    status = 500
    type = "server_error"
    code = "internal_error"
