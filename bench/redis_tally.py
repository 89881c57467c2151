"""Redis round trips counted in the client, by what sent them (`Tally`), for bench.redis_roundtrips and its tests.

A command sent alone, a redis-py pipeline, or one write of the gateway's multiplexed `RespClient` (the commands
queued in that turn) is one round trip, counted once answered and labelled by its commands: the limiter's
scripts by name (admission, settle), the caches' commands by the keys they touch, anything else by its name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hiredis
import redis.asyncio.client as aioclient

from gateway.cache.redis_store import COUNT_PREFIX, EXACT_PREFIX
from gateway.infra import resp

# The limiter's scripts are told apart by their SHA-1; these modules hold their sources.
SCRIPT_MODULES = ("gateway.infra.limiter", "gateway.infra.limit_scripts")
CACHE_SCRIPT_MODULES = ("gateway.cache.redis_store",)  # the semantic index's scripts: "cache <name>"


def script_names() -> dict[str, str]:
    """SHA-1 of each limiter script -> its name (the module constant, or its key in a `SCRIPTS` dict)."""
    names: dict[str, str] = {}
    for module in SCRIPT_MODULES + CACHE_SCRIPT_MODULES:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found = {k: v for k, v in vars(mod).items() if isinstance(v, str) and "redis.call" in v}
        scripts = getattr(mod, "SCRIPTS", {})
        if isinstance(scripts, dict):
            found |= {k: v for k, v in scripts.items() if isinstance(v, str)}
        prefix = "cache " if module in CACHE_SCRIPT_MODULES else ""
        for name, text in found.items():
            names[hashlib.sha1(text.encode()).hexdigest()] = prefix + name.strip("_").lower()
    return names


SETTLE_SCRIPTS = ("settle", "add")  # "add": the tokens' own script before issue 27


def label(args: tuple[Any, ...], scripts: dict[str, str]) -> str:
    """What one round trip was for, from its command and arguments."""
    name = str(args[0]).upper() if args else "?"
    if name in ("EVALSHA", "EVAL"):
        body = str(args[1])
        script = scripts.get(body if name == "EVALSHA" else hashlib.sha1(body.encode()).hexdigest(), "script ?")
        if script.startswith("cache "):
            return script
        return f"{'settle' if script in SETTLE_SCRIPTS else 'admission'}: {script}"
    key = args[1].decode() if len(args) > 1 and isinstance(args[1], bytes) else str(args[1]) if len(args) > 1 else ""
    if key.startswith(EXACT_PREFIX):
        return f"cache {name.lower()}"
    if key.startswith(COUNT_PREFIX):
        return "cache semantic counts"
    if name.startswith("FT."):
        return "cache semantic search"
    return name


class Tally:
    """Round trips made by every asyncio Redis client in this process, while installed, counted when answered:
    a command sent alone is one, a pipeline one (labelled by its commands)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.scripts = script_names()
        self._lock = threading.Lock()

    def add(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Tally]:
        single, pipelined = aioclient.Redis.execute_command, aioclient.Pipeline.execute
        tally = self

        async def execute_command(client: aioclient.Redis, *args: Any, **options: Any) -> Any:
            try:
                return await single(client, *args, **options)
            finally:  # counted once answered: a count that has seen a settlement has seen it done
                tally.add(label(args, tally.scripts))

        async def execute(pipe: aioclient.Pipeline, raise_on_error: bool = True) -> Any:
            stack = [c[0] for c in pipe.command_stack]
            try:
                return await pipelined(pipe, raise_on_error)
            finally:
                if stack:
                    tally.add("pipeline: " + " + ".join(sorted({label(a, tally.scripts) for a in stack})))

        def flush(link: resp._Link) -> None:  # one write of the multiplexed client: one round trip, counted
            last, what = link.pending[-1][0] if link.out else None, written(link.out, tally.scripts)
            flushed(link)
            if last is not None:  # once answered (or failed)
                last.add_done_callback(lambda _: tally.add(what))

        flushed = resp._Link.flush
        aioclient.Redis.execute_command = execute_command  # type: ignore[method-assign, assignment]
        aioclient.Pipeline.execute = execute  # type: ignore[method-assign, assignment]
        resp._Link.flush = flush  # type: ignore[method-assign, assignment]
        try:
            yield self
        finally:
            aioclient.Redis.execute_command = single  # type: ignore[method-assign]
            aioclient.Pipeline.execute = pipelined  # type: ignore[method-assign]
            resp._Link.flush = flushed  # type: ignore[method-assign]


def written(out: list[bytes], scripts: dict[str, str]) -> str:
    """What one write of packed commands was for: one command's label, or the pipeline's labels."""
    reader = hiredis.Reader()
    reader.feed(b"".join(out))
    labels = []
    while (command := reader.gets()) is not False:
        words = [w.decode(errors="replace") if i < 2 else w for i, w in enumerate(command)]
        labels.append(label(tuple(words), scripts))
    return labels[0] if len(labels) == 1 else "pipeline: " + " + ".join(sorted(set(labels)))
