"""Many concurrent calls to one backend are all in flight at once (issue 13, defect 8: the Ollama
backend queued every call past the 100th behind httpx's default connection pool)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from gateway.vocab.settings import Timeouts
from tests.helpers import GatewayThread, backends_for, make_settings

N = 150


@pytest.fixture(scope="module")
def patient(fakes: ThreadedFakes) -> Iterator[GatewayThread]:
    """Client, gateway and fakes share one process (and GIL) here: generous connect timeouts."""
    settings = make_settings(fakes)
    slow = backends_for(fakes, Timeouts(connect_s=10, first_token_s=20, total_s=30))
    with GatewayThread(msgspec.structs.replace(settings, backends=slow)) as gw:
        yield gw


async def _in_flight_together(gw: GatewayThread, fakes: ThreadedFakes, model: str, stream: bool) -> int:
    fake = fakes.ollama if model == "smr/simple" else fakes.gemini
    fake.behaviour = Behaviour(latency_ms=4000)
    before = fake.stats.requests
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello there"}]}
        calls = [asyncio.create_task(client.post(gw.url + "/v1/chat/completions", json=body)) for _ in range(N)]
        # How many calls reach the upstream before its first answer (4 s)? A gateway that queued them would let
        # one through; polled, not a fixed sleep, so a loaded machine only makes it wait longer.
        deadline = time.monotonic() + 3.5
        for _ in range(1000):
            if fake.stats.requests - before >= N or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        arrived = fake.stats.requests - before
        statuses = [r.status_code for r in await asyncio.gather(*calls)]
    assert statuses == [200] * N
    return arrived


async def test_150_concurrent_streams_to_ollama_reach_it_at_once(fakes: ThreadedFakes,
                                                                patient: GatewayThread) -> None:
    assert await _in_flight_together(patient, fakes, "smr/simple", stream=True) == N
