"""The request path without HTTP: pick a route, call the chain with fallback, price the answer.

    route()        model / header -> forced tier, direct backend, or classifier decision
    complete()     whole answer, trying each backend of the chain until one answers
    open_stream()  the same for streams: a backend counts as answering once its first event arrives
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal

import msgspec

from gateway.errors import (
    AllBackendsFailed,
    Attempt,
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
    is_client_error,
)
from gateway.pricing import baseline_cost_usd, cost_usd
from gateway.providers.base import Completion, StreamEvent, UpstreamCall
from gateway.providers.registry import Providers
from gateway.settings import TIERS, Backend, Settings
from gateway.wire import ChatCompletionRequest, Usage, message_text
from router_core import ClassifierPipeline, Conversation, Turn
from router_core.features import estimate_tokens

TIER_ALIASES = {f"smr/{t}": t for t in TIERS}


class Route(msgspec.Struct, frozen=True):
    mode: Literal["auto", "forced", "direct", "cache"]
    tier: str | None
    chain: tuple[Backend, ...]
    classifier: str
    score: float | None = None


class Priced(msgspec.Struct, frozen=True):
    usage: Usage
    cost_usd: float
    baseline_cost_usd: float

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd


class Outcome(msgspec.Struct, frozen=True):
    backend: Backend
    completion: Completion
    priced: Priced
    attempts: list[Attempt]


class OpenStream(msgspec.Struct, frozen=True):
    backend: Backend
    first: StreamEvent
    events: AsyncIterator[StreamEvent]
    attempts: list[Attempt]
    deadline: float


def conversation(req: ChatCompletionRequest, embedding: object = None,
                 embedded_text: str | None = None) -> Conversation:
    return Conversation(tuple(Turn(m.role, message_text(m)) for m in req.messages), embedding, embedded_text)


def _failure_status(attempts: list[Attempt]) -> int:
    statuses = {a.status for a in attempts}
    if statuses == {504}:
        return 504
    if statuses <= {503}:
        return 503
    return 502


class ChatService:
    def __init__(self, settings: Settings, providers: Providers, pipeline: ClassifierPipeline) -> None:
        self.settings = settings
        self.providers = providers
        self.pipeline = pipeline
        by_name = {b.name: b for b in settings.backends}
        limit = settings.routing.max_attempts
        self.chains = {t: tuple(by_name[n] for n in settings.tiers.chain(t))[:limit] for t in TIERS}
        self.direct = by_name
        baseline = settings.backend(settings.routing.baseline)
        assert baseline is not None
        self.baseline = baseline

    # ------------------------------------------------------------- routing
    async def route(self, req: ChatCompletionRequest, force_tier: str | None = None, embedding: object = None,
                    embedded_text: str | None = None) -> Route:
        if force_tier is not None:
            tier = force_tier.strip().lower()
            if tier not in self.chains:
                raise InvalidRequest(f"X-SMR-Force-Tier must be one of {', '.join(TIERS)}, got {force_tier!r}",
                                     param="X-SMR-Force-Tier", code="invalid_value")
            return Route("forced", tier, self.chains[tier], "forced")
        model = req.model or self.settings.routing.default_model
        if model == "auto":
            decision = await self.pipeline.decide(conversation(req, embedding, embedded_text))
            return Route("auto", decision.tier, self.chains[decision.tier], decision.classifier, decision.score)
        if model in TIER_ALIASES:
            tier = TIER_ALIASES[model]
            return Route("forced", tier, self.chains[tier], "forced")
        backend = self.direct.get(model)
        if backend is None:
            raise ModelNotFound(f"The model '{model}' does not exist. Use 'auto', one of "
                                f"{', '.join(TIER_ALIASES)}, or a model listed by GET /v1/models.", param="model")
        return Route("direct", None, (backend,), "direct")

    # ------------------------------------------------------------- pricing
    def price(self, usage: Usage, backend: Backend) -> Priced:
        return Priced(usage, cost_usd(usage, backend), baseline_cost_usd(usage, self.baseline))

    def fill_usage(self, usage: Usage, req: ChatCompletionRequest, text: str) -> Usage:
        if not usage.estimated and usage.total_tokens:
            return usage
        p = usage.prompt_tokens or sum(estimate_tokens(message_text(m)) for m in req.messages)
        c = usage.completion_tokens or estimate_tokens(text)
        return Usage(p, c, p + c, usage.cached_tokens, estimated=True)

    # ------------------------------------------------------------- calling
    def _unavailable(self, backend: Backend) -> Attempt | None:
        reason = self.providers[backend.name].unavailable_reason()
        if reason is None:
            return None
        return Attempt(backend.name, f"not configured: {reason}", BackendUnavailable.status)

    @staticmethod
    def _attempt(backend: Backend, exc: UpstreamError) -> Attempt:
        return Attempt(backend.name, exc.message, exc.status)

    @staticmethod
    def _give_up(exc: UpstreamError) -> InvalidRequest:
        return InvalidRequest(f"upstream {exc.backend} rejected the request: {exc.message}", code="upstream_rejected")

    async def complete(self, call: UpstreamCall, route: Route) -> Outcome:
        attempts: list[Attempt] = []
        for backend in route.chain:
            skip = self._unavailable(backend)
            if skip is not None:
                attempts.append(skip)
                continue
            try:
                async with asyncio.timeout(backend.timeouts.total_s):
                    completion = await self.providers[backend.name].complete(call)
            except TimeoutError:
                attempts.append(Attempt(backend.name, f"timed out after {backend.timeouts.total_s}s",
                                        UpstreamTimeout.status))
                continue
            except UpstreamError as exc:
                if is_client_error(exc):
                    raise self._give_up(exc) from None
                attempts.append(self._attempt(backend, exc))
                continue
            usage = self.fill_usage(completion.usage, call.request, completion.message.content or "")
            if usage is not completion.usage:
                completion = msgspec.structs.replace(completion, usage=usage)
            return Outcome(backend, completion, self.price(usage, backend), attempts)
        raise AllBackendsFailed(attempts, _failure_status(attempts))

    async def open_stream(self, call: UpstreamCall, route: Route) -> OpenStream:
        attempts: list[Attempt] = []
        loop = asyncio.get_running_loop()
        for backend in route.chain:
            skip = self._unavailable(backend)
            if skip is not None:
                attempts.append(skip)
                continue
            t = backend.timeouts
            deadline = loop.time() + t.total_s
            events = aiter(self.providers[backend.name].stream(call))
            try:
                async with asyncio.timeout(min(t.first_token_s, t.total_s)):
                    first = await anext(events)
            except TimeoutError:
                attempts.append(Attempt(backend.name, f"no first token within {t.first_token_s}s",
                                        UpstreamTimeout.status))
            except StopAsyncIteration:
                attempts.append(self._attempt(backend, UpstreamProtocolError("empty stream", backend=backend.name)))
            except UpstreamError as exc:
                await _aclose(events)
                if is_client_error(exc):
                    raise self._give_up(exc) from None
                attempts.append(self._attempt(backend, exc))
            else:
                return OpenStream(backend, first, events, attempts, deadline)
            await _aclose(events)
        raise AllBackendsFailed(attempts, _failure_status(attempts))


async def _aclose(events: AsyncIterator[StreamEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
