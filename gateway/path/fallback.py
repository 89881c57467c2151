"""Calling a backend chain: each backend in order until one answers, within its time limits.

    complete()     a whole answer; a backend that fails (connection, timeout, 429, 5xx) hands over to the next
    open_stream()  the same for streams: a backend counts as answering once its first event arrives

A backend whose circuit is open (`breaker.py`: it kept failing) is skipped without a call.

An upstream 4xx other than 408/409/429 means the request itself is bad: no fallback, the client gets 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from gateway.infra.breaker import Breakers
from gateway.infra.tracing import NO_TRACING, Tracer
from gateway.providers.base import Completion, StreamEvent, UpstreamCall
from gateway.providers.registry import Providers
from gateway.vocab.errors import (
    AllBackendsFailed,
    Attempt,
    BackendUnavailable,
    InvalidRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    is_client_error,
)
from gateway.vocab.settings import Backend


class Answered(msgspec.Struct, frozen=True):
    backend: Backend
    completion: Completion
    attempts: list[Attempt]


class OpenStream(msgspec.Struct, frozen=True):
    backend: Backend
    first: StreamEvent
    events: AsyncIterator[StreamEvent]
    attempts: list[Attempt]
    deadline: float


def _failure_status(attempts: list[Attempt]) -> int:
    statuses = {a.status for a in attempts}
    if statuses == {504}:
        return 504
    if statuses <= {503}:
        return 503
    return 502


def _give_up(exc: UpstreamError) -> InvalidRequest:
    return InvalidRequest(f"upstream {exc.backend} rejected the request: {exc.message}", code="upstream_rejected")


async def aclose_events(events: AsyncIterator[StreamEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


class ChainCaller:
    def __init__(self, providers: Providers, breakers: Breakers | None = None, tracer: Tracer = NO_TRACING) -> None:
        self.providers = providers
        self.breakers = breakers or Breakers()
        self.tracer = tracer

    def _unavailable(self, backend: Backend) -> Attempt | None:
        reason = self.providers[backend.name].unavailable_reason()
        if reason is not None:
            return Attempt(backend.name, f"not configured: {reason}", BackendUnavailable.status)
        wait = self.breakers.allow(backend.name)
        if wait is not None:
            return Attempt(backend.name, f"circuit open after repeated failures: skipped (probed again in "
                                         f"{wait:.0f}s)", BackendUnavailable.status)
        return None

    def _failed(self, backend: Backend, attempts: list[Attempt], error: str, status: int) -> None:
        attempts.append(Attempt(backend.name, error, status))
        self.breakers.failure(backend.name)

    async def complete(self, call: UpstreamCall, chain: tuple[Backend, ...]) -> Answered:
        attempts: list[Attempt] = []
        for backend in chain:
            skip = self._unavailable(backend)
            if skip is not None:
                attempts.append(skip)
                continue
            with self.tracer.span("smr.upstream", backend=backend.name, provider=backend.provider) as span:
                try:
                    async with asyncio.timeout(backend.timeouts.total_s):
                        completion = await self.providers[backend.name].complete(call)
                except TimeoutError:
                    self._failed(backend, attempts, f"timed out after {backend.timeouts.total_s}s",
                                 UpstreamTimeout.status)
                    span.set_attribute("smr.outcome", "timeout")
                    continue
                except UpstreamError as exc:
                    span.set_attribute("smr.outcome", f"error {exc.upstream_status or exc.status}")
                    if is_client_error(exc):
                        self.breakers.release(backend.name)
                        raise _give_up(exc) from None
                    self._failed(backend, attempts, exc.message, exc.status)
                    continue
                except BaseException:
                    self.breakers.release(backend.name)
                    raise
                span.set_attribute("smr.outcome", "answered")
            self.breakers.success(backend.name)
            return Answered(backend, completion, attempts)
        raise AllBackendsFailed(attempts, _failure_status(attempts))

    async def open_stream(self, call: UpstreamCall, chain: tuple[Backend, ...]) -> OpenStream:
        attempts: list[Attempt] = []
        loop = asyncio.get_running_loop()
        for backend in chain:
            skip = self._unavailable(backend)
            if skip is not None:
                attempts.append(skip)
                continue
            t = backend.timeouts
            deadline = loop.time() + t.total_s
            events = aiter(self.providers[backend.name].stream(call))
            with self.tracer.span("smr.upstream", backend=backend.name, provider=backend.provider,
                                  stream=True) as span:  # until the first event: the rest is the relay's
                try:
                    async with asyncio.timeout(min(t.first_token_s, t.total_s)):
                        first = await anext(events)
                except TimeoutError:
                    self._failed(backend, attempts, f"no first token within {t.first_token_s}s",
                                 UpstreamTimeout.status)
                except StopAsyncIteration:
                    self._failed(backend, attempts, "empty stream", UpstreamProtocolError.status)
                except UpstreamError as exc:
                    await aclose_events(events)
                    if is_client_error(exc):
                        self.breakers.release(backend.name)
                        raise _give_up(exc) from None
                    self._failed(backend, attempts, exc.message, exc.status)
                except BaseException:  # cancelled while waiting for the first event: close the upstream call
                    self.breakers.release(backend.name)
                    await aclose_events(events)
                    raise
                else:
                    span.set_attribute("smr.outcome", "first event")
                    self.breakers.success(backend.name)
                    return OpenStream(backend, first, events, attempts, deadline)
                span.set_attribute("smr.outcome", attempts[-1].error[:200])
            await aclose_events(events)
        raise AllBackendsFailed(attempts, _failure_status(attempts))
