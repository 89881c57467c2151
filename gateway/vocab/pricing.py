"""Pure cost functions. Prices are US dollars per 1M tokens.

Before the call, `prompt_tokens` estimates everything a provider bills as prompt: message text, each
message's framing, images, audio, files, earlier tool calls, tool definitions, `response_format` schemas
and the fields forwarded to an OpenAI-compatible upstream as sent. After it, `fill_usage` takes the
upstream's reported usage where it is sane (0 to the context window for the prompt, 0 to the output cap sent
for the answer) and otherwise clamps or estimates it, marked `estimated`: no upstream writes a negative
cost, or a count past what a row can hold, into the books.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from gateway.providers.base import output_cap
from gateway.vocab.settings import Backend
from gateway.vocab.wire import (
    AudioPart,
    ChatCompletionRequest,
    ContentPart,
    FilePart,
    ImagePart,
    Message,
    RefusalPart,
    TextPart,
    Usage,
    encoder,
)
from router_core.features import estimate_tokens

PER_TOKEN = 1e-6
log = logging.getLogger("gateway.usage")

MESSAGE_TOKENS = 4        # each message's role and separators (OpenAI's chat format counts 3 or 4)
REPLY_TOKENS = 3          # the assistant turn the answer is primed with
IMAGE_TOKENS = 1_445      # an image at high or auto detail: 85 + 170 for each of at most 8 tiles (OpenAI)
IMAGE_TOKENS_LOW = 85     # detail "low"
FILE_TOKENS = IMAGE_TOKENS  # a file sent by id, size unknown here: at least a page's image
AUDIO_BYTES_PER_TOKEN = 1_600  # about 10 tokens a second of 128 kbit/s audio
MAX_TOKENS = 2**31 - 1    # the most a log row's token columns hold
# The fields the request Struct knows are counted from it (messages, tools, response_format) or are not billed
# (how to answer, not what to read), as are OpenAI's other settings named here. Every other field of the body
# (`functions`, `documents`, ...) goes as sent to OpenAI-compatible upstreams, and counts.
_KNOWN = frozenset(ChatCompletionRequest.__struct_fields__) | {
    "logit_bias", "logprobs", "top_logprobs", "metadata", "store", "service_tier", "reasoning_effort",
    "modalities", "audio", "verbosity", "safety_identifier", "prompt_cache_key"}


class Priced(msgspec.Struct, frozen=True):
    """One answer's usage with what it cost and what the baseline model would have cost.

    The savings are two parts, each against its own baseline, never counted twice: routing saved the
    baseline model's cost minus the routed model's; a cache hit also saved the routed model's cost (what
    the same model would have cost without the cache)."""

    usage: Usage
    cost_usd: float
    baseline_cost_usd: float
    cache_savings_usd: float = 0.0

    @property
    def savings_usd(self) -> float:
        return self.baseline_cost_usd - self.cost_usd

    @property
    def routing_savings_usd(self) -> float:
        return self.savings_usd - self.cache_savings_usd


def cost_usd(usage: Usage, backend: Backend) -> float:
    """What this usage costs at this backend's prices; cached prompt tokens at the cached price."""
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_price = backend.input_price if backend.cached_input_price is None else backend.cached_input_price
    return PER_TOKEN * (
        (usage.prompt_tokens - cached) * backend.input_price
        + cached * cached_price
        + usage.completion_tokens * backend.output_price
    )


def baseline_cost_usd(usage: Usage, baseline: Backend) -> float:
    """The same tokens priced at the baseline (always-the-strongest) model, with no cache discount."""
    return PER_TOKEN * (usage.prompt_tokens * baseline.input_price + usage.completion_tokens * baseline.output_price)


def savings_usd(usage: Usage, backend: Backend, baseline: Backend) -> float:
    return baseline_cost_usd(usage, baseline) - cost_usd(usage, backend)


def price(usage: Usage, backend: Backend, baseline: Backend) -> Priced:
    return Priced(usage, cost_usd(usage, backend), baseline_cost_usd(usage, baseline))


def price_cache_hit(usage: Usage, backend: Backend | None, baseline: Backend) -> Priced:
    """A cache hit costs nothing upstream. Of the baseline cost of the stored answer's tokens, the cache
    saved what the model that answered would have cost again; routing saved the rest."""
    saved_by_cache = cost_usd(usage, backend) if backend is not None else baseline_cost_usd(usage, baseline)
    return Priced(usage, 0.0, baseline_cost_usd(usage, baseline), saved_by_cache)


def with_first_call(final: Priced | None, first: Priced) -> Priced:
    """A cascaded request: both calls' tokens and cost; the baseline is still one call of the baseline
    model for the answer sent (so savings may be negative: the cascade cost more than the strong model)."""
    if final is None:
        return first
    a, b = first.usage, final.usage
    usage = Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                  a.total_tokens + b.total_tokens, a.cached_tokens + b.cached_tokens, a.estimated or b.estimated)
    return Priced(usage, first.cost_usd + final.cost_usd, final.baseline_cost_usd, final.cache_savings_usd)


def _json_tokens(value: Any) -> int:
    """A JSON value as a provider reads it (a schema, a tool, a field sent as is): about four bytes a token."""
    return -(-len(encoder.encode(value)) // 4)


def _part_tokens(part: ContentPart) -> int:
    match part:
        case TextPart(text=text):
            return estimate_tokens(text)
        case ImagePart(image_url=url):
            return IMAGE_TOKENS_LOW if url.detail == "low" else IMAGE_TOKENS
        case AudioPart(input_audio=audio):
            return len(audio.data) * 3 // 4 // AUDIO_BYTES_PER_TOKEN + 1
        case FilePart(file=file):
            return max(_json_tokens(file), FILE_TOKENS)
        case RefusalPart(refusal=refusal):
            return estimate_tokens(refusal)
    return 0


def message_tokens(m: Message) -> int:
    """One message as billed: its framing, its content of every kind, its name and earlier tool calls."""
    c = m.content
    tokens = MESSAGE_TOKENS + (estimate_tokens(c) if isinstance(c, str) else sum(map(_part_tokens, c or ())))
    if m.name:
        tokens += estimate_tokens(m.name)
    if m.tool_call_id:
        tokens += estimate_tokens(m.tool_call_id)
    for tc in m.tool_calls or ():
        tokens += MESSAGE_TOKENS + estimate_tokens(tc.function.name) + estimate_tokens(tc.function.arguments)
    return tokens


def prompt_tokens(req: ChatCompletionRequest, raw: dict[str, Any] | None = None) -> int:
    """The prompt's estimated tokens, every billed part of it (before an upstream says; for limits, budgets
    and missing usage). `raw`: the body as sent, whose fields the Struct does not know are forwarded."""
    tokens = REPLY_TOKENS + sum(map(message_tokens, req.messages))
    if req.tools:
        tokens += _json_tokens(req.tools)
    if req.response_format:
        tokens += _json_tokens(req.response_format)
    for name, value in (raw or {}).items():
        if name not in _KNOWN and value is not None:
            tokens += _json_tokens(value)
    return tokens


def usage_bounds(req: ChatCompletionRequest, backend: Backend) -> tuple[int, int]:
    """The most prompt and answer tokens one call to this backend can use: its context window, and the
    output cap every adapter sends (for each of `n` choices)."""
    prompt = min(backend.capabilities.context_window, MAX_TOKENS)
    return prompt, min(output_cap(req, backend) * (req.n or 1), MAX_TOKENS)


def fill_usage(usage: Usage, req: ChatCompletionRequest, text: str, backend: Backend) -> Usage:
    """The upstream's usage where it is sane; else an estimate (marked as such) where it sent none, only
    part or a negative count, and the bound where it claims more than the backend can use."""
    p, c, cached = usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens
    p_max, c_max = usage_bounds(req, backend)
    sane = 0 <= p <= p_max and 0 <= c <= c_max and 0 <= cached <= p
    if sane and not usage.estimated and usage.total_tokens:
        return usage if usage.total_tokens == p + c else Usage(p, c, p + c, cached)
    if not sane:
        log.warning("usage: %s reported prompt %d, completion %d, cached %d tokens, outside 0..%d, 0..%d "
                    "and 0..prompt; clamped and marked estimated", backend.name, p, c, cached, p_max, c_max)
    p = min(p, p_max) if p > 0 else min(prompt_tokens(req), p_max)
    c = min(c, c_max) if c > 0 else min(estimate_tokens(text), c_max)
    return Usage(p, c, p + c, min(max(cached, 0), p), estimated=True)
