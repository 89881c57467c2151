"""OpenTelemetry traces of the request path: off and free unless `tracing.otlp_endpoint` (or
OTEL_EXPORTER_OTLP_ENDPOINT) is set.

    smr.request          one request on the path (endpoint, tier, model, cache, status)
      smr.cache.lookup   the exact and semantic lookup
      smr.classify       choosing the route (the classifier pipeline for `auto`)
      smr.upstream       each backend attempt (backend, provider, outcome), fallbacks included

`Tracer.span(name, **attributes)` is a context manager; `NO_TRACING.span` returns one shared no-op
context, so a gateway without tracing pays a method call per step and nothing else. Spans go out over
OTLP/HTTP in batches, off the event loop (the SDK's exporter thread), and are flushed at shutdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from gateway.vocab.settings import TracingSettings


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        return None


class Tracer(Protocol):
    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span]: ...

    def shutdown(self) -> None: ...


class NoTracer:
    _context = contextlib.nullcontext(_NoSpan())

    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span]:
        return self._context

    def shutdown(self) -> None:
        return None


NO_TRACING = NoTracer()


class OtelTracer:
    def __init__(self, settings: TracingSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        endpoint = (settings.otlp_endpoint or "").rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        # A provider of our own (not the process-global one): each app instance owns its tracing.
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
        self.tracer = self.provider.get_tracer("smart-model-router")

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Span]:
        with self.tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items()
                                                                if v is not None}) as span:
            yield span

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is still buffered


def build_tracer(settings: TracingSettings) -> Tracer:
    return OtelTracer(settings) if settings.otlp_endpoint else NO_TRACING
