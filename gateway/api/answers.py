"""Turning the request path's answers into HTTP: the `x-smr-*` headers, JSON and SSE responses, and
cancelling the path when the client disconnects before its answer is ready."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from litestar import Request
from litestar.response import Stream
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.path.request_path import Served, StreamAnswer
from gateway.vocab.errors import ClientClosedRequest

JSON = "application/json"
T = TypeVar("T")


def served_headers(s: Served) -> dict[str, str]:
    p = s.priced
    headers = {
        "x-smr-tier": s.tier or "direct",
        "x-smr-model": s.backend,
        "x-smr-provider": s.provider,
        "x-smr-classifier": s.classifier,
        "x-smr-cost-usd": f"{p.cost_usd:.8f}" if p else "deferred",
        "x-smr-savings-usd": f"{p.savings_usd:.8f}" if p else "deferred",
        "x-smr-cache": s.cache,
    }
    if s.similarity is not None:
        headers["x-smr-cache-similarity"] = f"{s.similarity:.4f}"
    if s.headers:
        headers.update(s.headers)
    return headers


class JSONAnswer:
    """A routed answer's JSON body, sent as `Response(body, media_type=JSON, headers=headers)` sends it (status
    200; the headers in order, lower-cased, then content-type and content-length) without building that
    Response, its header objects and the ASGIResponse it turns into for every request. A handler that
    returns one declares `-> ASGIApp` so that Litestar passes it through as it is."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        raw.append((b"content-type", JSON.encode()))
        raw.append((b"content-length", b"%d" % len(self.body)))
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def sse_response(answer: StreamAnswer, request: Request) -> ASGIApp:
    """The SSE response, already the ASGI app Litestar would make of it: a handler declared `-> ASGIApp`
    would otherwise have it sent with that handler's default media type (JSON) instead of its own."""
    headers = served_headers(answer.served)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    stream = Stream(answer.chunks, media_type="text/event-stream", headers=headers)
    return stream.to_asgi_response(app=None, request=request)


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is already read, so the next ASGI message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelled if the client disconnects first: an upstream call nobody will
    read is not run to its end (the request path logs it as 499). One watcher task per request."""
    handler = asyncio.current_task()
    assert handler is not None
    gone = finished = False

    def client_gone(watch: asyncio.Future[None]) -> None:
        nonlocal gone
        if not finished and not watch.cancelled() and watch.exception() is None:
            gone = True
            handler.cancel()

    watch = asyncio.ensure_future(_disconnected(request))
    watch.add_done_callback(client_gone)
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:  # cancelled for another reason (shutdown): not ours to swallow
            raise
        handler.uncancel()
        err = ClientClosedRequest("the client closed the connection before the answer was ready")
        err.accounted = True
        raise err from None
    finally:
        finished = True  # a disconnect seen from now on (its callback may already be queued) changes nothing
        watch.remove_done_callback(client_gone)
        watch.cancel()
