"""Reliability under load (issue 13), each figure from one run of this script on loopback:

    python -m bench.reliability            # full: 200 streams, 60 s sustained, 30 s outage, 10 min soak
    python -m bench.reliability --smoke    # seconds of each, as the test suite runs it: the timed loads paced
                                           # at 100 requests a second, the sections but the outage side by
                                           # side, the servers forked from one zygote (bench.procs)

- streams:   200 concurrent SSE streams through the gateway (an upstream that takes 0.5 s per answer).
- sustained: non-streaming requests as fast as 16 clients can send them for 60 s with an unlimited key,
             beside one client on a key limited to 60 requests a minute (its 429s are intended).
- outage:    the same load for 10 s, the database stopped for 30 s, then back for 10 s: requests per
             second during the outage against before it; every request's log row written afterwards.
- soak:      10 minutes of steady load; the gateway's RSS sampled every 10 s.

The gateway runs with auth and the request log on (an embedded PostgreSQL of its own, so the outage can
stop it), the cache off, one worker, in front of the fake OpenAI-compatible upstream (`bench.procs`'s
config, as in `bench/run`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

from bench.libssl import share_libssl11
from bench.load import measured
from bench.procs import (
    ROOT,
    Proc,
    Zygote,
    fake_openai,
    gateway_config,
    rss_mib,
    serve_gateway,
    start_together,
    stop_together,
)

ADMIN = "bench-admin"
SMOKE_RATE = 100  # requests a second of a smoke run's timed loads (a full run sends as fast as its clients can)
PROMPT = "Explain the difference between a list and a tuple in Python."


def load(url: str, key: str, *, concurrency: int, seconds: float | None = None, requests: int = 0,
         stream: bool = False, smoke: bool = False) -> dict[str, object]:
    """`bench.load` in its own process; in a smoke run (no figure is read) in this one, and timed runs paced at
    SMOKE_RATE requests a second: the same code paths, a fraction of the requests."""
    body = {"model": "smr/simple", "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
    args = ["--url", url + "/v1/chat/completions", "--body", json.dumps(body),
            "--header", f"authorization: Bearer {key}", "--concurrency", str(concurrency)]
    args += ["--seconds", str(seconds)] if seconds is not None else ["--requests", str(requests)]
    if smoke and seconds is not None:
        args += ["--rate", str(SMOKE_RATE)]
    return measured(args + (["--stream"] if stream else []), in_process=smoke)


def new_key(url: str, **limits: object) -> tuple[str, str]:
    """A new API key and its id."""
    r = httpx.post(url + "/v1/keys", json={"name": "bench", "tenant": "bench", **limits},
                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    r.raise_for_status()
    return str(r.json()["key"]), str(r.json()["id"])


def make_key(url: str, **limits: object) -> str:
    return new_key(url, **limits)[0]


def logged_rows(db_url: str, key_id: str) -> int:
    """The request log's rows of one key (the sections before may still be writing theirs)."""
    with psycopg.connect(db_url) as c:
        row = c.execute("SELECT count(*) FROM request_log WHERE endpoint = '/v1/chat/completions' AND key_id = %s",
                        (key_id,)).fetchone()
    return int(row[0]) if row else 0


class Bench:
    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.tmp = Path(tempfile.mkdtemp(prefix="smr-rel-"))

    def __enter__(self) -> Bench:
        from tests.scratch import embedded_server

        self.pg = embedded_server()
        self.db_url = self.pg.url("postgres")
        self.zygote = Zygote() if self.smoke else None  # smoke: the servers are forked from one that imported them
        self.procs: list[Proc] = []
        try:
            self.procs += start_together([
                lambda: fake_openai("reliability-upstream", zygote=self.zygote)[0],
                lambda: fake_openai("reliability-slow-upstream", latency_ms=500, zygote=self.zygote)[0]])
            self.upstream, self.slow = self.procs
            self.procs += start_together([lambda: self._gateway("reliability-gateway", self.upstream.url),
                                          lambda: self._gateway("reliability-gateway-slow", self.slow.url)])
            self.gw, self.slow_gw = self.procs[2:]
            self.url = f"http://127.0.0.1:{self.gw.port}"
            self.key = make_key(self.url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _gateway(self, name: str, upstream: str) -> Proc:
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(gateway_config(upstream, self.db_url, self.tmp / f"spill-{name}", admin_key=ADMIN))
        return serve_gateway(name, cfg, data_dir=self.tmp / "data", zygote=self.zygote)

    def __exit__(self, *exc: object) -> None:
        stop_together(self.procs[::-1])
        if self.zygote is not None:
            self.zygote.close()
        self.pg.cleanup()

    # ------------------------------------------------------------------ sections
    def streams(self) -> list[str]:
        n = 20 if self.smoke else 200
        url = f"http://127.0.0.1:{self.slow_gw.port}"
        r = load(url, make_key(url), concurrency=n, requests=2 * n, stream=True, smoke=self.smoke)
        return ["| concurrent streams | answers | errors | p50 ms | p99 ms | upstream's own time ms |",
                "|---|---|---|---|---|---|",
                f"| {n} | {r['requests']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | 500 |"]

    def sustained(self) -> list[str]:
        seconds = 3.0 if self.smoke else 60.0
        # smoke: a limit one client passes within the seconds even on a loaded machine (60 needed 20 req/s)
        rpm = 20 if self.smoke else 60
        limited_key = make_key(self.url, rate_limit_rpm=rpm)
        side: dict[str, dict[str, object]] = {}
        t = threading.Thread(target=lambda: side.update(r=load(self.url, limited_key, concurrency=1, seconds=seconds,
                                                                 smoke=self.smoke)))
        t.start()
        main = load(self.url, self.key, concurrency=16, seconds=seconds, smoke=self.smoke)
        t.join()
        lim = side["r"]
        lim_statuses = {int(k): v for k, v in lim["statuses"].items()}  # type: ignore[attr-defined]
        every_s: list[int] = main["per_second"]  # type: ignore[assignment]
        per_s = every_s[:-1] or every_s
        return ["| key | seconds | requests | req/s | slowest second req/s | p50 ms | p99 ms | errors | 429 (intended) |",
                "|---|---|---|---|---|---|---|---|---|",
                f"| unlimited, 16 clients | {seconds:.0f} | {main['requests']} | {main['rps']:,.0f} | {min(per_s)} | "
                f"{main['p50_ms']:.1f} | {main['p99_ms']:.1f} | {main['errors']} | – |",
                f"| {rpm} requests/min, 1 client | {seconds:.0f} | {lim['requests']} | {lim['rps']:,.0f} | – | "
                f"{lim['p50_ms']:.1f} | {lim['p99_ms']:.1f} | "
                f"{sum(v for k, v in lim_statuses.items() if k not in (200, 429))} | {lim_statuses.get(429, 0)} "
                f"({lim_statuses.get(200, 0)} answered) |"]

    def outage(self) -> list[str]:
        # smoke: the fewest whole seconds that still give a before rate (second 1) and a during rate (second 3)
        before_s, down_s, after_s = (2.0, 3.0, 2.0) if self.smoke else (10.0, 30.0, 10.0)
        key, key_id = new_key(self.url)  # its own key: rows of the sections before are not counted as its own
        result: dict[str, dict[str, object]] = {}
        t = threading.Thread(target=lambda: result.update(
            r=load(self.url, key, concurrency=16, seconds=before_s + down_s + after_s, smoke=self.smoke)))
        t.start()
        time.sleep(before_s)
        self.pg.stop()
        time.sleep(down_s)
        self.pg.start()
        t.join()
        r = result["r"]
        per_s: list[int] = r["per_second"]  # type: ignore[assignment]
        normal = statistics.mean(per_s[1:int(before_s)])
        during = statistics.mean(per_s[int(before_s) + 1:int(before_s + down_s)])
        deadline = time.time() + 60
        while logged_rows(self.db_url, key_id) < int(r["requests"]) and time.time() < deadline:  # type: ignore[call-overload]
            time.sleep(0.5)
        written = logged_rows(self.db_url, key_id)
        return ["| before req/s | during the outage req/s | ratio | requests | errors | log rows written after |",
                "|---|---|---|---|---|---|",
                f"| {normal:,.0f} | {during:,.0f} | {during / normal:.2f} | {r['requests']} | {r['errors']} | "
                f"{written} |"]

    def soak(self) -> list[str]:
        seconds = 3.0 if self.smoke else 600.0  # smoke: two or three RSS samples, a second apart
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0 if self.smoke else 10.0):
                samples.append(rss_mib(self.gw.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        r = load(self.url, self.key, concurrency=8, seconds=seconds, smoke=self.smoke)
        done.set()
        sampler.join()
        k = max(1, len(samples) // 10)
        first, last = statistics.mean(samples[:k]), statistics.mean(samples[-k:])
        return ["| seconds | requests | errors | RSS first tenth MiB | RSS last tenth MiB | RSS max MiB | growth |",
                "|---|---|---|---|---|---|---|",
                f"| {seconds:.0f} | {r['requests']} | {r['errors']} | {first:.0f} | {last:.0f} | {max(samples):.0f} | "
                f"{100 * (last / first - 1):+.1f} % |"]


SECTIONS = ("streams", "sustained", "outage", "soak")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.reliability")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", choices=SECTIONS, action="append")
    args = ap.parse_args()
    share_libssl11()  # one fetch for every gateway's embedded Redis, not one per data folder
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    lines = [f"# bench.reliability ({'smoke' if args.smoke else 'full'} run, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"]
    names = args.only or SECTIONS
    with Bench(args.smoke) as b:
        if args.smoke:  # no figure is read: the sections run side by side, but the outage (the database stops)
            with ThreadPoolExecutor(len(names)) as pool:
                futures = {name: pool.submit(getattr(b, name)) for name in names if name != "outage"}
            tables = {name: f.result() for name, f in futures.items()}
            if "outage" in names:
                tables["outage"] = b.outage()
        else:
            tables = {name: getattr(b, name)() for name in names}
    for name in names:
        lines += ["", f"## {name}", "", *tables[name]]
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results" / ("reliability-smoke.md" if args.smoke else "reliability.md")).write_text(text + "\n")


if __name__ == "__main__":
    main()
