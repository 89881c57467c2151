"""OpenTelemetry (issue 16): with an OTLP endpoint set, a request's spans (the request, the cache lookup,
the classification, each upstream attempt with its fallback) reach a collector over OTLP/HTTP; without
one, nothing is exported and the tracer is the shared no-op."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.fakes.common import Behaviour
from gateway.fakes.server import ThreadedFakes
from gateway.infra.tracing import NO_TRACING, build_tracer
from gateway.vocab.settings import TracingSettings
from tests.helpers import GatewayThread, make_settings


class Collector:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def receive(self, request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest.FromString(await request.read())
        for rs in body.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def __enter__(self) -> Collector:
        self.thread.start()
        app = web.Application()
        app.router.add_post("/v1/traces", self.receive)

        async def start() -> int:
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture()
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = v.string_value or v.int_value or v.double_value or v.bool_value
    return out


def test_a_requests_spans_reach_the_collector(fakes: ThreadedFakes, collector: Collector) -> None:
    fakes.ollama.behaviour = Behaviour(fail_status=503)  # the simple tier's first backend fails: a fallback
    settings = make_settings(fakes, tiers={"simple": ["local", "flash"], "medium": ["flash"], "complex": ["pro"]},
                             tracing={"otlp_endpoint": collector.url, "service_name": "smr-test"})
    with GatewayThread(settings) as g:
        r = httpx.post(g.url + "/v1/chat/completions", timeout=20, json={
            "model": "auto", "messages": [{"role": "user", "content": "hello there"}]})
        assert r.status_code == 200 and r.json()["model"] == "flash"
    # The gateway flushed its spans when it stopped.
    by_name: dict[str, list[Any]] = {}
    for s in collector.spans:
        by_name.setdefault(s.name, []).append(s)
    assert {"smr.request", "smr.cache.lookup", "smr.classify", "smr.upstream"} <= set(by_name)
    (root,) = by_name["smr.request"]
    assert attrs(root)["smr.model"] == "flash" and attrs(root)["endpoint"] == "/v1/chat/completions"
    upstream = sorted(by_name["smr.upstream"], key=lambda s: s.start_time_unix_nano)
    assert [attrs(s)["backend"] for s in upstream] == ["local", "flash"]
    assert attrs(upstream[0])["smr.outcome"] == "error 503" and attrs(upstream[1])["smr.outcome"] == "answered"
    assert attrs(by_name["smr.classify"][0])["smr.tier"] == "simple"
    for s in collector.spans:  # one trace, children of the request span
        assert s.trace_id == root.trace_id
        assert s is root or s.parent_span_id == root.span_id


def test_no_endpoint_no_tracing() -> None:
    tracer = build_tracer(TracingSettings())
    assert tracer is NO_TRACING
    with tracer.span("x", a=1) as span:
        span.set_attribute("b", 2)  # a no-op
