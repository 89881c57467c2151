"""Money, part one (issue 24): what a provider bills is what admission counts, and what it caps.

The admission estimate counts every billed part of a request (tools, `response_format` schemas, images,
audio, files, earlier tool calls, fields forwarded as sent), and settles on the upstream's reported prompt
tokens; every adapter sends the output cap the budget reservation assumed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from gateway.fakes.provider import Reply
from gateway.path.auth import Principal
from gateway.path.request_path import Answer
from gateway.providers.base import UpstreamCall
from gateway.providers.gemini import GeminiProvider
from gateway.providers.ollama import OllamaProvider
from gateway.providers.openai_compat import OpenAICompatProvider
from gateway.vocab.errors import BudgetExceeded, RateLimited
from gateway.vocab.limits import LimitSet, RateCheck, budget_check
from gateway.vocab.settings import Backend
from gateway.vocab.wire import Usage, encoder, parse_chat_request
from tests.unit.test_request_path import Harness


def key(**limits: object) -> Principal:
    return Principal(tenant="acme", key_id="key-1", limits=LimitSet(**limits))  # type: ignore[arg-type]


def tools(tokens: int, n: int = 50) -> list[dict[str, Any]]:
    """`n` tool definitions worth about `tokens` tokens in all (four characters a token)."""
    words = tokens * 4 // 6 // n
    return [{"type": "function", "function": {
        "name": f"tool_{i}", "description": "lorem " * words,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}} for i in range(n)]


def whole_prompt_billed(call: UpstreamCall) -> Reply:
    """An upstream that bills the whole body it was sent, as real providers bill tools."""
    prompt = len(encoder.encode(call.raw)) // 4
    return Reply(usage=Usage(prompt, 5, prompt + 5))


async def test_tools_count_against_tokens_per_minute() -> None:
    """20 requests with ~130k tokens of tools each passed a 1,000 tokens-per-minute limit."""
    h = Harness(cache=False)
    with pytest.raises(RateLimited) as err:
        await h.serve(principal=key(rate_limit_tpm=1000), tools=tools(130_000))
    assert err.value.type == "tokens" and "limit 1000" in err.value.message
    assert h.fakes["cheap"].calls == [] and [r.http_status for r in h.rows] == [429]


async def test_tools_count_against_a_budget_when_the_upstream_bills_them() -> None:
    """A $0.01 budget spent $3.23 on requests whose tools were not held: the reservation must hold them."""
    h = Harness({"cheap": whole_prompt_billed, "backup": whole_prompt_billed}, cache=False)
    budget = key(budget_usd=0.01)
    for _ in range(20):
        try:
            await h.serve(principal=budget, tools=tools(130_000))
        except BudgetExceeded:
            pass
    await h.admission.drain()
    check = budget_check("key", "key-1", budget.limits, dt.datetime.now(dt.UTC))
    assert check is not None
    assert (await h.counters.used(check) or 0.0) <= 0.01  # spent, and nothing left held


PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 64).decode()
PARTS: dict[str, dict[str, Any]] = {
    "tools": {"tools": tools(3000)},
    "response_format": {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "object", "properties": {f"field_{i}": {"type": "string", "description": "lorem ipsum " * 8}
                                         for i in range(80)}}}}},
    "images": {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}] + [
        {"type": "image_url", "image_url": {"url": PNG}}] * 2}]},
    "audio": {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(b"\0" * 3_200_000).decode(), "format": "mp3"}}]}]},
    "files": {"messages": [{"role": "user", "content": [{"type": "file", "file": {
        "filename": "a.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(b"%PDF" * 4000).decode()}}]}]},
    "earlier tool calls": {"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "f", "arguments": json.dumps({"text": "lorem " * 2000})}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
    "empty messages": {"messages": [{"role": "user", "content": ""}] * 400},
    "fields forwarded as sent": {"functions": [{"name": "f", "description": "lorem " * 2000}]},
}


@pytest.mark.parametrize("part", sorted(PARTS))
async def test_every_billed_part_counts_against_tokens_per_minute(part: str) -> None:
    h = Harness(cache=False)
    with pytest.raises(RateLimited) as err:
        await h.serve(principal=key(rate_limit_tpm=1000), **PARTS[part])
    assert err.value.type == "tokens"
    assert h.fakes["cheap"].calls == []


async def test_a_short_text_request_still_fits_a_small_limit() -> None:
    h = Harness(cache=False)
    ok = await h.serve(principal=key(rate_limit_tpm=1000))
    assert ok.served.headers is not None and 950 < int(ok.served.headers["x-ratelimit-remaining-tokens"]) < 1000


async def test_tokens_per_minute_settle_on_the_upstreams_reported_prompt_tokens() -> None:
    """The estimate is taken at admission; the prompt tokens the upstream reports past it are added on
    settlement, with the answer's tokens."""
    h = Harness({"cheap": lambda call: Reply(usage=Usage(50_000, 5, 50_005))}, cache=False)
    assert isinstance(await h.serve(principal=key(rate_limit_tpm=1_000_000)), Answer)
    await h.admission.drain()
    used = (await h.counters.take([RateCheck("key", "key-1", "tokens", 1_000_000, 0)])).states[0].used
    assert used == 50_005


# ---------------------------------------------------------------- the cap the reservation assumed
def call(**body: Any) -> UpstreamCall:
    parsed = parse_chat_request(json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode())
    return UpstreamCall(parsed.request, parsed.raw)


def backend(provider: str, base_url: str | None = "http://127.0.0.1:9", cap: int = 8192) -> Backend:
    return Backend(name="b", provider=provider, model="m", base_url=base_url, api_key="k",  # type: ignore[arg-type]
                   max_output_tokens=cap)


def test_gemini_sends_the_cap_the_reservation_assumed() -> None:
    p = GeminiProvider(backend("gemini"))
    assert p._request(call())["config"]["max_output_tokens"] == 8192
    assert p._request(call(max_tokens=50))["config"]["max_output_tokens"] == 50
    assert p._request(call(max_completion_tokens=70, max_tokens=50))["config"]["max_output_tokens"] == 70
    assert GeminiProvider(backend("gemini", cap=300))._request(call())["config"]["max_output_tokens"] == 300


def test_ollama_sends_num_predict() -> None:
    p = OllamaProvider(backend("ollama"))
    assert p._kwargs(call())["options"]["num_predict"] == 8192
    assert p._kwargs(call(max_tokens=50))["options"]["num_predict"] == 50


def test_openai_compatible_upstreams_get_a_cap_in_the_field_they_read() -> None:
    compat = OpenAICompatProvider(backend("openai"))
    body = json.loads(compat._body(call(), stream=False))
    assert body["max_tokens"] == 8192 and "max_completion_tokens" not in body
    openai = OpenAICompatProvider(backend("openai", base_url=None, cap=1000))  # api.openai.com: the newer field
    body = json.loads(openai._body(call(), stream=True))
    assert body["max_completion_tokens"] == 1000 and "max_tokens" not in body
    for sent in ({"max_tokens": 50}, {"max_completion_tokens": 60}):  # the client's own cap goes as it came
        body = json.loads(compat._body(call(**sent), stream=False))
        assert {k: body.get(k) for k in ("max_tokens", "max_completion_tokens") if k in body} == sent
