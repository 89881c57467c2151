"""The floor of the default configuration: the passthrough plus the work a cache miss cannot do without.

    python -m bench.floor --upstream URL --port P --database URL [--data-dir DIR] [--parts limits,exact,...]

`bench.passthrough`'s forwarding, and around each request what the gateway's default configuration has to
do on a cache miss, through the gateway's own parts and in its order, and nothing else: the static embedding
of the last user message; one write with the admission script (a request-rate limit and a budget of one
key), the exact cache's GET and the semantic index's KNN (`RedisCounters.take`, `RedisVectorIndex.search`
over the gateway's `RespClient`); the budget's reservation (`reserve`); the upstream call; after the answer,
one write with the settlement, the exact entry and the semantic entry (`settle`, `SET`, the index's add
script); one request-log row (`LogWriter`, batched into PostgreSQL). Its own embedded redis-stack-server is a
child process, so its CPU counts in the process tree as the gateway's does.

Left out, because they are the gateway's own logic rather than I/O it cannot avoid: authentication (a key
cache hit), request checks, the classifier pipeline, the guard, pricing, the explanation, metrics, response
headers. `bench.hotpath` serves it beside the gateway: the gap between the two is that logic's cost; the
gap between the floor and the passthrough is what no implementation of the default configuration on these
stores can go under.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import aiohttp
import msgspec
import numpy as np
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream

from gateway.cache.embedded import EmbeddedRedis
from gateway.cache.redis_store import RedisVectorIndex, connect
from gateway.cli.serve import exit_cleanly_on_sigterm
from gateway.db.log_row import LogRow
from gateway.db.log_writer import LogWriter
from gateway.db.migrate import migrate
from gateway.infra.limiter import RedisCounters
from gateway.infra.resp import RespClient
from gateway.vocab.limits import BudgetCheck, Hold, RateCheck
from router_core.static_embed import StaticEmbedder

_decode = msgspec.json.Decoder().decode
KEY, TENANT, SCOPE = "00000000-0000-4000-8000-0000000f1002", "0123456789abcdef", "fedcba9876543210"
TTL_S = 3600


PARTS = ("limits", "exact", "semantic", "log")  # bench.hotpath spells them too


class Pending(msgspec.Struct):
    """One request's state between `before` and `after`."""

    prompt: str
    started: float
    exact: str = ""
    hold: Hold | None = None
    vector: np.ndarray | None = None


class Floor:
    """The parts, opened on the server's start-up and closed on its shutdown (its embedded Redis too, before
    uvicorn re-raises SIGTERM); `parts`: which of PARTS this floor does (all: the default configuration's miss).
    What it did and what failed is counted (`stats`, on /health): a floor whose writes fail would look cheap."""

    def __init__(self, database: str, upstream: str, parts: frozenset[str], data: Path | None,
                 libssl11: str | None) -> None:
        self.parts, self.database, self.upstream = parts, database, upstream
        self.data, self.own_data = data or Path(tempfile.mkdtemp(prefix="smr-floor-")), data is None
        self.redis = EmbeddedRedis(self.data, libssl11) if parts & {"limits", "exact", "semantic"} else None
        self.client: aioredis.Redis | None = None
        self.link: RespClient | None = None
        self.counters: RedisCounters | None = None
        self.static = StaticEmbedder() if "semantic" in parts else None
        self.index: RedisVectorIndex | None = None
        self.log = LogWriter(database, self.data / "spill") if "log" in parts else None
        self.session: aiohttp.ClientSession | None = None
        self.rate = RateCheck("key", KEY, "requests", 10**9, 1)
        self.budget = BudgetCheck("key", KEY, 10**9, "total", "total")
        self.tasks: set[asyncio.Future[object]] = set()
        self.stats = {"requests": 0, "writes": 0, "failed": 0}

    async def open(self) -> None:
        if self.redis is not None:
            url = await asyncio.to_thread(self.redis.start)
            self.client = connect(url, 0.05)
            self.link = RespClient.from_kwargs(self.client.connection_pool.connection_kwargs, 0.25)
            self.counters = RedisCounters(self.client, self.link)
        if self.static is not None:
            assert self.client is not None
            self.index = await RedisVectorIndex.open(self.client, self.static.dim, "", self.link, TTL_S)
            if self.index is None:
                raise RuntimeError("the floor's Redis has no query engine: no semantic part")
        if self.counters is not None and "limits" in self.parts:
            await self.counters.init_spend(self.budget, 0.0, 86_400)
        if self.log is not None:
            await migrate(self.database)
            self.log.start()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        try:
            if self.session is not None:
                await self.session.close()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.log is not None:
                await self.log.close()
            if self.link is not None:
                await self.link.aclose()
            if self.client is not None:
                await self.client.aclose()
        finally:
            self.stop()

    def stop(self) -> None:
        """The embedded Redis stopped and a temporary folder removed (again: harmless)."""
        if self.redis is not None:
            self.redis.stop()
        if self.own_data:
            shutil.rmtree(self.data, ignore_errors=True)

    def health(self) -> dict[str, object]:
        log = self.log.stats if self.log is not None else None
        return {"status": "ok", "parts": sorted(self.parts), **self.stats, "index": self.index is not None,
                "log": None if log is None else msgspec.to_builtins(log)}

    def _done(self, task: asyncio.Future[object]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.stats["failed"] += 1
        else:
            self.stats["writes"] += 1

    async def before(self, prompt: str) -> Pending:
        """Admission with the exact GET and the KNN in one write (what of them this floor does), then the
        reservation. A failure answers 500 (counted by the load generator as an error)."""
        self.stats["requests"] += 1
        p = Pending(prompt, time.perf_counter())
        search = None
        if self.index is not None and self.static is not None:
            p.vector = self.static.pool_one(self.static.token_ids([prompt])[0])
            search = asyncio.ensure_future(self.index.search(TENANT, SCOPE, p.vector, 3))
        try:
            if "exact" in self.parts:
                p.exact = f"smr:x:{TENANT}:{secrets.token_hex(16)}"
            if self.counters is not None and "limits" in self.parts:
                await self.counters.take([self.rate], [self.budget], p.exact or None)
            elif self.link is not None and p.exact:
                await self.link.execute("GET", p.exact)
        finally:
            if search is not None:
                await search
        if self.counters is not None and "limits" in self.parts:
            p.hold = Hold(secrets.token_hex(8), 0.01, 120.0)
            reserved = await self.counters.reserve([self.budget], p.hold, [86_400])
            if reserved.missing is not None or reserved.refused is not None:
                raise RuntimeError("the floor's budget was not held")
        return p

    def after(self, p: Pending, answer: bytes) -> None:
        """The settlement and both cache entries in one write, off the response; the log row."""
        work: list[Awaitable[object]] = []
        if self.counters is not None and p.hold is not None:
            work.append(self.counters.settle([self.budget], p.hold, 0.001))
        if self.link is not None and p.exact:
            work.append(self.link.execute("SET", p.exact, answer, "EX", TTL_S))
        if self.index is not None and p.vector is not None:
            work.append(self.index.add(TENANT, SCOPE, p.vector, p.prompt, answer, TTL_S))
        for w in work:
            task = asyncio.ensure_future(w)
            self.tasks.add(task)
            task.add_done_callback(self._done)
        if self.log is not None:
            self.log.record(LogRow(secrets.token_hex(12), dt.datetime.now(dt.UTC), "/v1/chat/completions", "miss",
                                   (time.perf_counter() - p.started) * 1000, 200, KEY, TENANT, "auto", "simple"))


@post("/v1/chat/completions", status_code=200)
async def chat(request: Request, state: State) -> Response:
    floor: Floor = state.floor
    body = await request.body()
    parsed = _decode(body)
    pending = await floor.before(str(parsed["messages"][-1]["content"]))
    assert floor.session is not None
    url = floor.upstream + "/v1/chat/completions"
    if parsed.get("stream"):
        async def relay() -> AsyncIterator[bytes]:
            assert floor.session is not None
            seen = []
            async with floor.session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                async for chunk in r.content.iter_any():
                    seen.append(chunk)
                    yield chunk
            floor.after(pending, b"".join(seen))
        return Stream(relay(), media_type="text/event-stream")
    async with floor.session.post(url, data=body, headers={"content-type": "application/json"}) as r:
        answer = await r.read()
    floor.after(pending, answer)
    return Response(answer, media_type="application/json", status_code=r.status)


@get("/health")
async def health(state: State) -> dict[str, object]:
    """What the floor did: requests, writes after the answer and how many failed, the log writer's counts."""
    floor: Floor = state.floor
    return floor.health()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.floor")
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--database", required=True, help="a PostgreSQL database (migrated here) for the log rows")
    p.add_argument("--data-dir", type=Path, default=None, help="the embedded Redis's folder (default: a temporary one)")
    p.add_argument("--libssl11-dir", default=None)
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"which of {', '.join(PARTS)} to do (default: all, the default configuration's miss; '': none)")
    a = p.parse_args()
    parts = frozenset(x for x in a.parts.split(",") if x)
    if parts - set(PARTS):
        p.error(f"unknown parts: {sorted(parts - set(PARTS))}")
    floor = Floor(a.database, a.upstream, parts, a.data_dir, a.libssl11_dir)

    async def opened(app: Litestar) -> None:
        await floor.open()

    async def closed(app: Litestar) -> None:
        await floor.close()

    exit_cleanly_on_sigterm()  # as `smr serve`: uvicorn re-raises SIGTERM after its shutdown; `finally` runs then
    try:
        app = Litestar([chat, health], on_startup=[opened], on_shutdown=[closed], state=State({"floor": floor}),
                       openapi_config=None)
        uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)
    finally:
        floor.stop()


if __name__ == "__main__":
    main()
