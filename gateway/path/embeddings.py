"""The embedding service behind `POST /v1/embeddings`: the model named (or OpenAI's names, mapped to
`embeddings.default`), admitted like chat (rate limits and budgets: `Admission`), computed by the
backend (the gateway's own MiniLM, or an OpenAI-compatible, Ollama or Gemini embedding API), priced on
its input tokens and logged with one row (`Accounting`), whatever the outcome. No HTTP types here.

    EmbeddingService.serve(call, admission, accounting) -> Embedded
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
import numpy as np

from gateway.path.accounting import Accounting, RequestContext
from gateway.path.admission import Admission
from gateway.path.auth import Principal
from gateway.path.explain import explain
from gateway.path.routing import Route
from gateway.vocab.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    UpstreamConnectError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.vocab.pricing import Priced, cost_usd
from gateway.vocab.settings import Backend, Settings
from gateway.vocab.settings_model import EmbeddingBackend
from gateway.vocab.wire import ChatCompletionRequest, Explanation, Message, Usage
from router_core.embedder import Embedder
from router_core.features import estimate_tokens

OPENAI_URL = "https://api.openai.com/v1"
GEMINI_URL = "https://generativelanguage.googleapis.com"
explanation_json = msgspec.json.Encoder().encode


class EmbeddingCall(msgspec.Struct, frozen=True):
    """A validated request: texts, or token arrays (OpenAI-compatible backends only)."""

    model: str
    inputs: list[str] | list[list[int]]
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
    principal: Principal | None = None
    request_id: str | None = None
    client_request_id: str | None = None


class Embedded(msgspec.Struct, frozen=True):
    backend: EmbeddingBackend
    vectors: list[list[float]]
    prompt_tokens: int
    priced: Priced
    smr: Explanation
    headers: dict[str, str] | None = None  # OpenAI's x-ratelimit-* when a rate limit applies


class EmbeddingService:
    def __init__(self, settings: Settings, embedder: Embedder | None) -> None:
        self.cfg = settings.embeddings
        self.cutoffs = settings.routing.cutoffs
        self.backends = {b.name: b for b in self.cfg.backends}
        self.chat_backends = {b.name: b for b in settings.backends}
        self.shared = embedder  # the semantic cache's encoder, reused for the default local model
        self.cache_dir = settings.paths.model_cache_dir
        self.device = settings.cache.device
        self._local: dict[str, Embedder] = {}
        self._loading = asyncio.Lock()
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------ which model
    def resolve(self, model: str) -> EmbeddingBackend:
        name = self.cfg.default if model in self.cfg.aliases else model
        backend = self.backends.get(name) if self.cfg.enabled else None
        if backend is None:
            served = ", ".join([*self.backends, *self.cfg.aliases]) if self.cfg.enabled else "none"
            raise ModelNotFound(f"The embedding model '{model}' does not exist. Served: {served}.", param="model")
        return backend

    def served_models(self) -> list[EmbeddingBackend]:
        return list(self.backends.values()) if self.cfg.enabled else []

    def priced_as(self, b: EmbeddingBackend) -> Backend:
        """The embedding backend as the request log and the budgets see a backend (no output tokens)."""
        return Backend(name=b.name, provider=b.provider, model=b.model or b.name, input_price=b.input_price,
                       output_price=0.0, max_output_tokens=1)

    # ------------------------------------------------------------------ the request
    async def serve(self, call: EmbeddingCall, admission: Admission, accounting: Accounting) -> Embedded:
        ctx = RequestContext("/v1/embeddings", call.principal, call.request_id, call.client_request_id)
        ctx.requested_model, ctx.cache = call.model, "bypass"
        try:
            b = self.resolve(call.model)
            self._check(call, b)
            backend = self.priced_as(b)
            ctx.route = Route("direct", None, (backend,), "direct")
            texts = [t for t in call.inputs if isinstance(t, str)]
            estimate = ChatCompletionRequest(messages=[Message("user", "\n".join(texts) or " " * len(call.inputs))],
                                             max_tokens=1)
            if call.principal is not None:
                ctx.ticket = await admission.admit(call.principal, estimate)
                await admission.reserve(ctx.ticket, (backend,), estimate)
            vectors, tokens = await self._embed(b, call)
            ctx.backend = backend
            usage = Usage(tokens, 0, tokens)
            cost = cost_usd(usage, backend)
            ctx.priced = Priced(usage, cost, cost)
            smr = self._done(ctx, 200, accounting, admission)
            return Embedded(b, vectors, tokens, ctx.priced, smr, ctx.ticket.headers if ctx.ticket else None)
        except GatewayError as exc:
            self._done(ctx, exc.status, accounting, admission, exc)
            exc.accounted = True
            raise

    def _done(self, ctx: RequestContext, status: int, accounting: Accounting, admission: Admission,
              error: GatewayError | None = None) -> Explanation:
        smr = explain(ctx, self.cutoffs)
        if accounting.log is not None:
            ctx.explanation = explanation_json(smr).decode()
        accounting.record(ctx, status, error)
        admission.settle(ctx.ticket, ctx.priced)
        return smr

    def _check(self, call: EmbeddingCall, b: EmbeddingBackend) -> None:
        if len(call.inputs) > self.cfg.max_inputs:
            raise InvalidRequest(f"'input' holds {len(call.inputs)} items; at most {self.cfg.max_inputs} per request",
                                 param="input", code="invalid_value")
        if any(not isinstance(t, str) for t in call.inputs) and b.provider != "openai":
            raise InvalidRequest(f"'input' as token arrays is not supported by the {b.name} model ({b.provider}); "
                                 "send text", param="input", code="unsupported_value")
        if call.dimensions is not None and b.provider in ("local", "ollama"):
            raise InvalidRequest(f"'dimensions' is not supported by the {b.name} model ({b.provider}): its vectors "
                                 "have one size; leave 'dimensions' out", param="dimensions",
                                 code="unsupported_value")

    # ------------------------------------------------------------------ the backends
    async def _embed(self, b: EmbeddingBackend, call: EmbeddingCall) -> tuple[list[list[float]], int]:
        if b.provider == "local":
            texts = [str(t) for t in call.inputs]
            embedder = await self._encoder(b)
            rows = await asyncio.gather(*(embedder.embed(t) for t in texts))
            return [np.asarray(r, dtype=np.float32).tolist() for r in rows], sum(map(text_tokens, texts))
        url, key = self._where(b)
        if b.provider == "openai":
            body: dict[str, Any] = {"model": b.model or b.name, "input": call.inputs, "encoding_format": "float"}
            if call.dimensions is not None:
                body["dimensions"] = call.dimensions
            if call.user is not None:
                body["user"] = call.user
            got = await self._post(b, url.rstrip("/") + "/embeddings", body, {"authorization": f"Bearer {key}"})
            data = sorted(got.get("data") or [], key=lambda d: d.get("index", 0))
            vectors = [d.get("embedding") for d in data]
            tokens = (got.get("usage") or {}).get("prompt_tokens")
        elif b.provider == "ollama":
            got = await self._post(b, url.rstrip("/") + "/api/embed", {"model": b.model or b.name,
                                                                      "input": list(call.inputs)}, {})
            vectors, tokens = got.get("embeddings") or [], got.get("prompt_eval_count")
        else:  # gemini
            model = f"models/{b.model or b.name}"
            reqs = [{"model": model, "content": {"parts": [{"text": t}]},
                     **({"outputDimensionality": call.dimensions} if call.dimensions else {})} for t in call.inputs]
            got = await self._post(b, f"{url.rstrip('/')}/v1beta/{model}:batchEmbedContents", {"requests": reqs},
                                   {"x-goog-api-key": key or ""})
            vectors, tokens = [e.get("values") for e in got.get("embeddings") or []], None
        if len(vectors) != len(call.inputs) or not all(isinstance(v, list) for v in vectors):
            raise UpstreamProtocolError(f"{b.name}: answered {len(vectors)} embeddings for {len(call.inputs)} inputs",
                                        backend=b.name)
        if not isinstance(tokens, int) or tokens < 0:
            tokens = sum(text_tokens(t) if isinstance(t, str) else len(t) for t in call.inputs)
        return vectors, tokens

    def _where(self, b: EmbeddingBackend) -> tuple[str, str | None]:
        conn = self.chat_backends.get(b.connection) if b.connection else None
        url = b.base_url or (conn.base_url if conn else None)
        default = {"openai": OPENAI_URL, "gemini": GEMINI_URL, "ollama": "http://127.0.0.1:11434"}[b.provider]
        return url or default, conn.api_key if conn else None

    async def _post(self, b: EmbeddingBackend, url: str, body: dict[str, Any],
                    headers: dict[str, str]) -> dict[str, Any]:
        if self._http is None:
            self._http = httpx.AsyncClient()
        try:
            r = await self._http.post(url, json=body, headers=headers, timeout=b.timeout_s)
        except httpx.TimeoutException:
            raise UpstreamTimeout(f"{b.name}: the embedding call timed out", backend=b.name) from None
        except httpx.HTTPError as exc:
            raise UpstreamConnectError(f"{b.name}: cannot reach {url} ({type(exc).__name__})",
                                       backend=b.name) from None
        if r.status_code >= 400:
            raise UpstreamHTTPError(f"{b.name}: the embedding API answered {r.status_code}: {r.text[:300]}",
                                    backend=b.name, upstream_status=r.status_code)
        try:
            got = r.json()
        except ValueError:
            got = None
        if not isinstance(got, dict):
            raise UpstreamProtocolError(f"{b.name}: the embedding API answered something unreadable",
                                        backend=b.name)
        return got

    async def _encoder(self, b: EmbeddingBackend) -> Embedder:
        """The local model: the app's loaded encoder for the default MiniLM, else one loaded on first use."""
        if b.model is None and self.shared is not None and self.shared.backend != "unloaded":
            return self.shared
        key = b.model or ""
        async with self._loading:
            if key not in self._local:
                embedder = Embedder(b.model, self.device, cache_dir=self.cache_dir)
                await asyncio.to_thread(embedder.load)
                self._local[key] = embedder
        return self._local[key]

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        for embedder in self._local.values():
            await embedder.aclose()


def text_tokens(text: str) -> int:
    """An input's estimated tokens: at least one per non-empty text."""
    return max(1, estimate_tokens(text))


def encode_vector(vector: Sequence[float], fmt: str) -> list[float] | str:
    """OpenAI's `encoding_format`: a list of floats, or base64 of little-endian float32."""
    if fmt == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return list(vector)
