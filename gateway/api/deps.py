"""What handlers receive by dependency injection (`gw`, `principal`) and the admin guards."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler

from gateway.gateway import Gateway
from gateway.path.auth import Principal
from gateway.vocab.errors import InvalidRequest
from gateway.vocab.wire import decode_json_object, validation_error

T = TypeVar("T")


def provide_gateway(state: State) -> Gateway:
    gw: Gateway = state.gateway
    return gw


async def provide_principal(request: Request, gw: Gateway) -> Principal:
    """The caller, from `Authorization: Bearer` or `X-API-Key` (401 without a valid key when auth is on)."""
    h = request.headers
    principal = await gw.auth.authenticate(h.get("authorization"), h.get("x-api-key"))
    request.state.principal = principal  # the edge logs requests refused before the request path with it
    return principal


async def caller(request: Request) -> tuple[Gateway, Principal]:
    """`gw` and `principal` as the two providers above give them, read in the handler itself: the hot
    endpoints (chat, complete) skip Litestar's per-request dependency resolution, which cost more CPU than
    the authentication it wraps (`python -m bench.profile_gateway --default-config`)."""
    gw: Gateway = request.app.state.gateway
    return gw, await provide_principal(request, gw)


def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    gw: Gateway = connection.app.state.gateway
    gw.auth.require_admin(connection.headers.get("authorization"), connection.headers.get("x-api-key"))


def admin_when_auth_on(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """For /metrics: the admin key when auth is on; open when auth is off, like every other endpoint."""
    if connection.app.state.gateway.auth.enabled:
        admin_only(connection, handler)


def label_param(request: Request, name: str) -> str | None:
    """A query parameter that names a tenant or key: printable text of at most 200 characters."""
    value = request.query_params.get(name)
    if value is not None and (len(value) > 200 or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
        raise InvalidRequest(f"'{name}' must be printable text of at most 200 characters", param=name,
                             code="invalid_value")
    return value


def key_param(request: Request) -> str | None:
    """The `key` query parameter: an API key's id (a UUID, as GET /v1/keys lists them)."""
    import uuid

    value = request.query_params.get("key")
    if value is None or value == "":
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest("'key' must be a key id (a UUID, as GET /v1/keys lists them)", param="key",
                             code="invalid_value") from None


def decode_body(body: bytes, kind: type[T]) -> T:
    """A JSON object body as `kind`; what does not fit is a 400 saying which field and why."""
    raw = decode_json_object(body) if body else {}
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
