"""GET /metrics: Prometheus text for this process. Needs the admin key when auth is on (scrape with
`authorization: {credentials: <admin key>}`); open when auth is off, like every other endpoint.

Under `smr serve --workers N` each worker's series carry `worker="i"`, and whichever worker answers shows
every worker's: its own live, the others' from the snapshot each writes every second (`WorkerSlot`)."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
from litestar import Response, get
from litestar.datastructures import State

from gateway.api.deps import admin_when_auth_on
from gateway.gateway import Gateway
from gateway.infra.metrics import WorkerSlot, merge, render, with_label

CONTENT_TYPE = "text/plain; version=0.0.4"  # Litestar adds "; charset=utf-8" to a text/* type itself


async def own_text(gw: Gateway, state: State) -> str:
    """This process's exposition text (labelled with its worker index under `--workers`)."""
    cache: dict[str, object] | None = None
    if gw.cache is not None:
        acc = gw.cache.acceptance
        cache = {**msgspec.to_builtins(gw.cache.stats), "store_up": await gw.cache.reachable(),
                 "threshold": acc.threshold, "threshold_checks": acc.current.checks}
        if acc.current.wrong_rate is not None:
            cache["wrong_hit_rate"] = acc.current.wrong_rate
    writer = msgspec.to_builtins(gw.writer.stats) if gw.writer is not None else None
    limits = {k: v for k, v in msgspec.to_builtins(gw.admission.stats).items() if k != "last_error"}
    circuits = {b.name: gw.breakers.state(b.name) for b in gw.settings.backends}
    learning = msgspec.to_builtins(gw.learning.stats) if gw.learning is not None else None
    text = render(gw.metrics, cache, writer, limits, circuits, state.get("loop_lag"), state.get("gc_pauses"),
                  learning)
    slot: WorkerSlot | None = state.get("worker")
    return with_label(text, "worker", str(slot.index)) if slot is not None else text


def _others(slot: WorkerSlot) -> list[str]:
    texts = []
    for i in range(slot.count):
        if i != slot.index:
            with contextlib.suppress(OSError):  # a worker still starting has written none yet
                texts.append(slot.snapshot(i).read_text())
    return texts


@get("/metrics", guards=[admin_when_auth_on])
async def metrics(gw: Gateway, state: State) -> Response:
    text = await own_text(gw, state)
    slot: WorkerSlot | None = state.get("worker")
    if slot is not None:
        text = merge([text, *await asyncio.to_thread(_others, slot)])
    return Response(text, media_type=CONTENT_TYPE)
