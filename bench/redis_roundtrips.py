"""Redis round trips and commands per request on the default configuration's path (issue 27).

    python -m bench.redis_roundtrips [--requests 200] [--semantic] [--classifiers tiered,heuristic]
                                     [--redis-url URL]

Runs the real app in this process (`create_app` under uvicorn, `tests.helpers.GatewayThread`) in front of
the fake upstreams, with a scratch PostgreSQL database and a Redis of its own (a private `redis-server`, the
embedded redis-stack-server with `--semantic`, or `--redis-url`): auth on, a key with a rate limit and a budget,
the exact cache on (`--semantic`: the semantic cache too), the request log on, `model = "auto"` and a question
of its own every request, so each is a cache miss that is then stored (a semantic hit is counted apart).

Per request, after the first requests have warmed the key, the tenant and the budget:
- round trips, counted in the client (`bench.redis_tally`: a command sent alone, a pipeline, or one write of the
  gateway's multiplexed `RespClient` with the commands queued in that turn, is one), by what sent them: the limiter's
  scripts by name (admission, settle), the exact cache's GET (in one pipeline with the admit script) and SET
  (in one write with the settlement), anything else (keys and tenants' limits come from PostgreSQL);
- commands Redis ran (`INFO commandstats` deltas), by name: a script's own commands count here, one each; and
  the microseconds Redis spent in each (a script's include its commands').

`--steps N`: the limiter's calls and the exact cache's GET alone for N requests of that key (admit with the GET,
hold, settle), through the gateway's `RespClient` and, alternated with it, through redis-py (`PyRedisLink`):
CPU per request of this process (the client side) and of the Redis server (`INFO cpu`), wall time per request.
Settlements and stores run after the response: each request's settlement is awaited before the next request
is sent, so that what one request costs does not depend on whether the next one overlapped it.

`measure(...)` is the smoke mode a test calls (a few requests, a few seconds); `ROUND_TRIPS_MAX` and
`COMMANDS_MAX` are what this path reached, which the test holds it to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis

from bench.redis_tally import Tally, script_names
from gateway.cache.redis_store import EXACT_PREFIX
from gateway.infra import resp

ADMIN = "roundtrips-admin-key"
# What the default path reached (`python -m bench.redis_roundtrips`): the smoke test keeps it there.
ROUND_TRIPS_MAX = 3.0  # 5 before the exact cache's GET went in the admit script's round trip, 4 before the SET
                       # went in the settlement's
COMMANDS_MAX = 27.0


class Count(msgspec.Struct, frozen=True):
    requests: int
    round_trips: float                 # per request
    commands: float                    # per request, as Redis counts them (a script's commands included)
    round_trips_by: dict[str, float]   # "admission: <script>", "settle: <script>", "cache get", ... per request
    commands_by: dict[str, float]      # Redis command name -> per request
    hits: int = 0                      # requests the semantic cache answered (not reserved, not settled)
    usec_by: dict[str, float] = {}     # Redis command name -> microseconds Redis spent in it, per request (a
                                       # script's time includes its commands', which are listed too)
    server_cpu_us: float = 0.0         # the Redis server's CPU per request (INFO cpu: commands, I/O, its loop)
    by_script: dict[str, float] = {}   # `--by-script`: each script (by name) and FT.SEARCH, median us per call


def commandstats(client: redis.Redis) -> tuple[Counter[str], Counter[str]]:
    """Per command, its calls and the microseconds Redis spent in it, since the server started (one INFO)."""
    info = client.info("commandstats")
    return (Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}),
            Counter({k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in info.items()}))


def server_cpu_s(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def steps(redis_url: str, n: int, warm: int = 200) -> str:
    """The limiter's calls for `n` requests of a key with a rate limit and a monthly budget, `auto`; the exact
    cache's GET read with the admit script (one pipeline): through the gateway's `RespClient` and, side by side,
    through redis-py."""
    await _steps(redis_url, n, warm, "resp")  # the first run warms the server and this process
    return "\n".join([await _steps(redis_url, n, warm, how) for _ in range(3) for how in ("redis-py", "resp")])


async def _steps(redis_url: str, n: int, warm: int, how: str) -> str:
    import redis.asyncio as aioredis

    from gateway.infra.limiter import RedisCounters
    from gateway.infra.redis_link import PyRedisLink, RedisLink
    from gateway.vocab.limits import BudgetCheck, Hold, RateCheck

    client, server = aioredis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)
    link: RedisLink = (resp.RespClient.from_kwargs(client.connection_pool.connection_kwargs) if how == "resp"
                       else PyRedisLink(client))
    try:
        counters = RedisCounters(client, link)
        owner = "steps-" + str(time.time_ns())
        budget = BudgetCheck("key", owner, 1e9, "month", "m-steps")
        checks = [RateCheck("key", owner, "requests", 100_000_000, 1)]
        await counters.init_spend(budget, 0.0, 0)

        async def one(i: int) -> None:
            await counters.take(checks, [budget], peek=f"{EXACT_PREFIX}steps:{i}")
            hold = Hold(f"{owner}-{i}", 0.001, 30.0)
            await counters.reserve([budget], hold, [40 * 86_400])
            await counters.settle([budget], hold, 0.0005)

        for i in range(warm):
            await one(-1 - i)
        cpu0, server0, wall0 = time.process_time(), server_cpu_s(server), time.perf_counter()
        for i in range(n):
            await one(i)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        server_cpu = server_cpu_s(server) - server0
    finally:
        await link.aclose()
        await client.aclose()
        server.close()
    return (f"The limiter's calls and the cache GET through {how:8s}, {n} requests (admit + cache GET in one "
            f"pipeline, hold, settle): client CPU {cpu * 1e6 / n:,.0f} us, "
            f"Redis CPU {server_cpu * 1e6 / n:,.0f} us, wall {wall * 1e6 / n:,.0f} us per request.")


def settles(counts: Counter[str]) -> int:
    """Settlements made: sent alone, or in one write with the cache's SET."""
    return sum(v for k, v in counts.items() if "settle: " in k)


def settled(tally: Tally, before: Counter[str], n: int, still_s: float = 0.2, timeout_s: float = 10.0) -> None:
    """Wait for what runs after the responses: `n` settlements since `before`, then the counts still for
    `still_s` (the cache stores)."""
    deadline = time.time() + timeout_s
    last, since = tally.snapshot(), time.time()
    while time.time() < deadline:
        time.sleep(0.002)
        now = tally.snapshot()
        if now != last:
            last, since = now, time.time()
        if settles(now - before) >= n and time.time() - since >= still_s:
            return


def measure(fakes: Any, db_url: str, redis_url: str, requests: int = 20, semantic: bool = False,
            classifiers: tuple[str, ...] = ("heuristic",), warm: int = 3, by_script: bool = False) -> Count:
    """Round trips and commands per request over `requests` cache-missing requests with a limited, budgeted
    key, through the real app in this process (the fakes: `gateway.fakes.server.ThreadedFakes`). `by_script`:
    Redis's SLOWLOG records every command of the window, for each script's own time (`script_times`)."""
    from tests.helpers import GatewayThread, make_settings

    settings = make_settings(fakes, db_url=db_url, redis={"url": redis_url},
                             auth={"enabled": True, "admin_key": ADMIN},
                             cache={"enabled": True, "semantic": semantic},
                             routing={"classifiers": list(classifiers)})
    server = redis.Redis.from_url(redis_url)
    tally = Tally()
    try:
        with tally.installed(), GatewayThread(settings) as gw, httpx.Client(timeout=30) as http, \
                contextlib.ExitStack() as stack:
            r = http.post(gw.url + "/v1/keys", headers={"Authorization": f"Bearer {ADMIN}"}, json={
                "name": "roundtrips", "tenant": "roundtrips", "rate_limit_rpm": 100_000_000,
                "budget_usd": 1_000_000.0, "budget_period": "month"})
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['key']}"}
            tag = str(time.time_ns())

            def send(i: int) -> bool:
                """True for a miss (a hit of the semantic cache is neither reserved nor settled)."""
                got = http.post(gw.url + "/v1/chat/completions", headers=headers, json={
                    "model": "auto", "messages": [{"role": "user", "content": f"Question {tag}-{i}: {question(i)}"}]})
                if got.status_code != 200:
                    raise RuntimeError(f"the gateway answered {got.status_code}: {got.text[:300]}")
                return got.headers.get("x-smr-cache") == "miss"

            start = tally.snapshot()
            misses = sum(send(-1 - i) for i in range(warm))  # the key, its tenant and its budget's period are read
            settled(tally, start, misses)                    # once, then known
            if by_script:
                stack.enter_context(every_command_logged(server))
            cpu0 = server_cpu_s(server)
            trips0, (cmds0, usec0) = tally.snapshot(), commandstats(server)
            misses = 0
            for i in range(requests):
                misses += send(i)
                settled(tally, trips0, misses, still_s=0.0)
            settled(tally, trips0, misses)
            trips, (cmds, usec) = tally.snapshot() - trips0, commandstats(server)
            cpu = server_cpu_s(server) - cpu0
            cmds, usec = cmds - cmds0, usec - usec0
            scripts = script_times(server) if by_script else {}
    finally:
        server.close()
    cmds -= Counter({"info": 1})  # the first INFO of this count
    per = float(requests)
    return Count(requests, sum(trips.values()) / per, sum(cmds.values()) / per,
                 {k: v / per for k, v in sorted(trips.items())}, {k: v / per for k, v in sorted(cmds.items())},
                 requests - misses, {k: usec[k] / per for k in cmds}, cpu * 1e6 / per, scripts)


@contextlib.contextmanager
def every_command_logged(server: redis.Redis) -> Iterator[None]:
    """The SLOWLOG records every command (emptied first), and gets the server's own settings back after."""
    kept = server.config_get("slowlog-*")
    server.config_set("slowlog-max-len", 1_000_000)
    server.config_set("slowlog-log-slower-than", 0)
    server.slowlog_reset()
    try:
        yield
    finally:
        for name in ("slowlog-log-slower-than", "slowlog-max-len"):
            server.config_set(name, kept[name])
        server.slowlog_reset()


def script_times(server: redis.Redis) -> dict[str, float]:
    """From the SLOWLOG (`every_command_logged`): each script's median microseconds per call, by its name (its
    commands included), and FT.SEARCH's."""
    names = script_names()
    times: dict[str, list[int]] = {}
    for entry in server.slowlog_get(1_000_000):
        words = entry["command"].split(b" ") if isinstance(entry["command"], bytes) else entry["command"].split(" ")
        word = [w.decode() if isinstance(w, bytes) else w for w in words[:2]]
        if word[0].lower() == "evalsha" and len(word) > 1:
            times.setdefault(f"script {names.get(word[1], word[1][:8])}", []).append(int(entry["duration"]))
        elif word[0].upper() == "FT.SEARCH":
            times.setdefault("FT.SEARCH", []).append(int(entry["duration"]))
    return {k: float(statistics.median(v)) for k, v in sorted(times.items())}


TOPICS = ("reverse a list in Python", "parse a date in Go", "center a div with CSS", "join two tables in SQL",
          "read a file line by line in Rust", "sort a map by value in Java", "debounce an input in JavaScript",
          "profile memory in a C program", "write a bash loop over files", "resize an image with Pillow",
          "configure nginx as a reverse proxy", "train a logistic regression", "mock a clock in pytest", "compress a "
          "folder with tar", "rotate a matrix by 90 degrees", "bake sourdough bread", "tune a guitar by ear",
          "prune a rose bush", "change a bicycle tyre", "write a cover letter")


def question(i: int) -> str:
    """A question of its own per request (the first `len(TOPICS)`), so that the semantic cache, when on, misses
    them too; the warm-up's (i < 0) are of another kind."""
    if i < 0:
        return f"say hello {-i} times in French"
    topic = TOPICS[i % len(TOPICS)]
    return f"how do I {topic}? Case {i}: keep it under {10 + i % 7} lines and explain step {i % 5 + 1}."


@contextlib.contextmanager
def private_redis(stack: bool = False, whole_stack: bool = False) -> Iterator[str]:
    """A Redis only this run uses (so INFO commandstats counts only it): Debian's redis-server when there
    is one and `stack` (the query engine, for the semantic cache) is not asked for, else the embedded
    redis-stack-server (`whole_stack`: with every module of the stack, as before the gateway loaded RediSearch
    alone)."""
    exe = None if stack or whole_stack else shutil.which("redis-server")
    tmp = Path(tempfile.mkdtemp(prefix="smr-rt-redis-"))
    try:
        if exe is None:
            from bench.libssl import fetched_libssl11
            from gateway.cache.embedded import EmbeddedRedis

            lib = fetched_libssl11()  # fetched once under .smr, not into each server's folder
            server = EmbeddedRedis(tmp, lib, whole_stack=whole_stack)
            try:
                yield server.start()
            finally:
                server.stop()
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            deadline = time.time() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def command_costs(n: int) -> list[str]:
    """What one command costs Redis (INFO commandstats' usec_per_call over `n` calls in a row, through redis-py)
    on the embedded server as the gateway starts it (RediSearch only) and with every module of the stack."""
    probes: dict[str, tuple[Any, ...]] = {
        "SET": ("SET", "k", "v"), "GET": ("GET", "k"), "HMGET": ("HMGET", "h", "a", "b"),
        "EVAL (TIME and an HMGET)": ("EVAL", "redis.call('TIME') return redis.call('HMGET', KEYS[1], 'a')", 1, "h")}
    rows = ["| command | RediSearch only, us | every module of the stack, us |", "|---|---|---|"]
    cost: dict[bool, dict[str, float]] = {}
    for whole in (False, True):
        with private_redis(True, whole) as url:
            client = redis.Redis.from_url(url)
            try:
                client.hset("h", mapping={"a": "1", "b": "2"})
                for name, cmd in probes.items():
                    client.config_resetstat()
                    for _ in range(n):
                        client.execute_command(*cmd)
                    stat = client.info("commandstats")[f"cmdstat_{cmd[0].lower()}"]
                    cost.setdefault(whole, {})[name] = float(stat["usec_per_call"])
            finally:
                client.close()
    rows += [f"| {name} | {cost[False][name]:.2f} | {cost[True][name]:.2f} |" for name in probes]
    return rows


def table(count: Count) -> list[str]:
    rows = [f"Per request, over {count.requests} requests with a limited, budgeted key ({count.hits} of them "
            f"semantic hits, the others cache misses): "
            f"**{count.round_trips:.2f} round trips**, **{count.commands:.2f} commands** run by Redis, "
            f"**{count.server_cpu_us:,.0f} us of the Redis server's CPU** (INFO cpu: its commands, I/O and loop).",
            "",
            "| round trip (client side) | per request |", "|---|---|"]
    rows += [f"| {k} | {v:.2f} |" for k, v in count.round_trips_by.items()]
    rows += ["", "| command (Redis's INFO commandstats) | per request | Redis us per request |", "|---|---|---|"]
    rows += [f"| {k} | {v:.2f} | {count.usec_by.get(k, 0.0):.1f} |"
             for k, v in sorted(count.commands_by.items(), key=lambda kv: -kv[1])]
    if count.by_script:
        rows += ["", "| script (SLOWLOG) | median us per call, its commands included |", "|---|---|"]
        rows += [f"| {k} | {v:.0f} |" for k, v in count.by_script.items()]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_roundtrips")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--semantic", action="store_true", help="the semantic cache on too (needs redis-stack)")
    ap.add_argument("--classifiers", default="tiered,heuristic")
    ap.add_argument("--redis-url", default=None, help="default: a private server (INFO counts only this run)")
    ap.add_argument("--whole-stack", action="store_true",
                    help="the embedded server with every module of redis-stack (as before), not RediSearch alone")
    ap.add_argument("--by-script", action="store_true", help="also each script's own time (Redis's SLOWLOG)")
    ap.add_argument("--command-cost", type=int, default=0, metavar="N",
                    help="also what single commands cost Redis, N calls each, RediSearch alone and the whole stack")
    ap.add_argument("--steps", type=int, default=0, help="also time the limiter's calls alone, this many requests")
    args = ap.parse_args(argv)
    from gateway.fakes.server import ThreadedFakes
    from tests.scratch import ScratchDatabase

    fakes = ThreadedFakes().start_in_thread()
    db = ScratchDatabase()
    try:
        with contextlib.ExitStack() as stack:
            url = args.redis_url or stack.enter_context(private_redis(args.semantic, args.whole_stack))
            count = measure(fakes, db.url, url, args.requests, args.semantic, tuple(args.classifiers.split(",")),
                            by_script=args.by_script)
            timed = asyncio.run(steps(url, args.steps)) if args.steps else ""
    finally:
        db.drop()
        fakes.stop_thread()
    costs = ["", *command_costs(args.command_cost)] if args.command_cost else []
    print("\n".join(table(count) + (["", timed] if timed else []) + costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
