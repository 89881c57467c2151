"""Request ids: every HTTP response carries `x-request-id`; a client may send its own.

Each request gets an id of ours (`req_` + 24 hex digits, unique: the request
log's key) and reads a client's `x-request-id` when it is sane (1 to 128 of `A-Z a-z 0-9 . _ : / + = -`;
anything else is ignored, not refused). The response's `x-request-id` is the client's id when it sent
one, else ours; the log row keeps both (`request_id`, `client_request_id`), and GET /v1/requests/{id}
finds a request by either: by ours first, so a client id that copies another request's `req_...` id never
hides that request.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from litestar.types import Message, Scope

MAX_ID_CHARS = 128  # the longest client id taken (and so the longest GET /v1/requests/{id} looks up)
_SANE = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,%d}$" % MAX_ID_CHARS)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def ids(scope: Scope | dict[str, Any]) -> tuple[str, str | None]:
    """(our id, the client's id or None) of this request: made on first use, the same after."""
    state = scope.setdefault("state", {})  # type: ignore[union-attr]
    got: tuple[str, str | None] | None = state.get("smr_request_ids")
    if got is None:
        client = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                client = value.decode() if _SANE.match(value) else None
                break
        got = state["smr_request_ids"] = (new_request_id(), client)
    return got


async def add_request_id(message: Message, scope: Scope) -> None:
    """Litestar's `before_send` hook (it sees every response, a 404 for an unknown path included)."""
    if message["type"] == "http.response.start":
        ours, client = ids(scope)
        headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
        headers.append((b"x-request-id", (client or ours).encode()))
        message["headers"] = headers
