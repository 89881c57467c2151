"""Cascades (issue 14): a cheap tier's answer is checked and escalated once to the tier above, on the
request path with in-process fakes; and the checks themselves, as a pure function."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.fakes.provider import Reply
from gateway.path.cascade import fails, is_refusal
from gateway.path.request_path import Answer, StreamAnswer
from gateway.vocab.settings import Backend
from gateway.vocab.wire import FunctionCall, ResponseMessage, ToolCall, parse_chat_request
from tests.unit.test_request_path import Harness, read_sse

BACKEND = Backend(name="cheap", provider="openai", model="m", max_output_tokens=1000)
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city"]}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
    "type": "object", "properties": {"answer": {"type": "number"}}, "required": ["answer"]}}}


def call(name: str, args: str) -> list[ToolCall]:
    return [ToolCall("call_1", FunctionCall(name, args))]


def request(**extra: object):  # type: ignore[no-untyped-def]
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}], **extra}
    return parse_chat_request(json.dumps(body).encode()).request


# (request fields, the answer, its finish reason) -> the failure, or None for a good answer
CASES = [
    ({}, ResponseMessage(content="4"), "stop", None),
    ({}, ResponseMessage(content=""), "stop", "empty"),
    ({}, ResponseMessage(content="   \n"), "stop", "empty"),
    ({}, ResponseMessage(content="I'm sorry, but I can't help with that."), "stop", "refusal"),
    ({}, ResponseMessage(content="I cannot assist with this request."), "stop", "refusal"),
    ({}, ResponseMessage(content="As an AI language model, I cannot browse."), "stop", "refusal"),
    ({}, ResponseMessage(content=None, refusal="policy"), "stop", "refusal"),
    ({}, ResponseMessage(content="I can't stress this enough: 2 + 2 = 4."), "stop", None),
    ({}, ResponseMessage(content="Sorry for the wait! It is 4."), "stop", None),
    ({}, ResponseMessage(content="The answer is 4, and then"), "length", "length"),
    ({"max_tokens": 5}, ResponseMessage(content="The answer is 4, and"), "length", None),  # the client's cap
    ({"max_tokens": 5000}, ResponseMessage(content="The answer is 4, and"), "length", "length"),  # the backend's
    ({"response_format": {"type": "json_object"}}, ResponseMessage(content='{"answer": 4}'), "stop", None),
    ({"response_format": {"type": "json_object"}}, ResponseMessage(content="answer: 4"), "stop", "json"),
    ({"response_format": {"type": "json_object"}}, ResponseMessage(content="[4]"), "stop", "json"),
    ({"response_format": SCHEMA}, ResponseMessage(content='{"answer": 4}'), "stop", None),
    ({"response_format": SCHEMA}, ResponseMessage(content='{"answer": "four"}'), "stop", "json"),
    ({"tools": [WEATHER]}, ResponseMessage(tool_calls=call("weather", '{"city": "Oslo"}')), "tool_calls", None),
    ({"tools": [WEATHER]}, ResponseMessage(tool_calls=call("weather", '{"days": 2}')), "tool_calls",
     "tool_schema"),
    ({"tools": [WEATHER]}, ResponseMessage(tool_calls=call("weather", '{"city": "Oslo"')), "tool_calls",
     "tool_schema"),
    ({"tools": [WEATHER]}, ResponseMessage(tool_calls=call("stocks", "{}")), "tool_calls", "tool_schema"),
    ({"tools": [WEATHER]}, ResponseMessage(tool_calls=call("weather", '{"city": "Oslo", "days": "x"}')),
     "tool_calls", "tool_schema"),
]


@pytest.mark.parametrize(("extra", "message", "finish", "kind"), CASES)
def test_each_check(extra: dict[str, object], message: ResponseMessage, finish: str, kind: str | None) -> None:
    got = fails(request(**extra), message, finish, BACKEND)
    assert (got.split(":")[0] if got else None) == kind, got


def test_refusal_is_only_an_opening() -> None:
    assert is_refusal("  I'm very sorry, but I cannot do that.")
    assert not is_refusal("Here is how to do it. I can't guarantee it works everywhere.")


FAILING = {
    "empty": Reply(""),
    "refusal": Reply("I'm sorry, but I can't help with that."),
    "length": Reply("The first half of an answer", finish_reason="length"),
    "json": Reply("not json at all"),
    "tool_schema": Reply("", finish_reason="tool_calls", tool_calls=call("weather", '{"days": 2}')),
}


def extra_for(kind: str) -> dict[str, object]:
    return {"json": {"response_format": {"type": "json_object"}}, "tool_schema": {"tools": [WEATHER]}}.get(kind, {})


@pytest.mark.parametrize("kind", list(FAILING))
async def test_a_failed_cheap_answer_goes_once_to_the_next_tier(kind: str) -> None:
    good = Reply('{"answer": 4}') if kind == "json" else Reply(
        "", finish_reason="tool_calls", tool_calls=call("weather", '{"city": "Oslo"}')) if kind == "tool_schema" \
        else Reply("4")
    h = Harness({"cheap": lambda c: FAILING[kind], "backup": lambda c: good}, cache=False, cascade=["simple"])
    answer = await h.serve("auto", **extra_for(kind))
    assert isinstance(answer, Answer)
    assert answer.served.backend == "backup" and answer.served.tier == "medium"
    assert (answer.message.content, answer.message.tool_calls) == (good.text, good.tool_calls)
    assert len(h.fakes["cheap"].calls) == 1 and len(h.fakes["backup"].calls) == 1
    smr = answer.served.smr
    assert smr is not None and smr.cascade is not None
    assert (smr.cascade.from_tier, smr.cascade.model, smr.cascade.reason.split(":")[0]) == ("simple", "cheap", kind)
    first = (10 * 0.1 + 5 * 0.2) / 1e6
    second = (10 * 0.5 + 5 * 1.0) / 1e6
    assert smr.cascade.cost_usd == pytest.approx(first)
    assert smr.cost_usd == pytest.approx(first + second)  # both calls are paid for
    (row,) = h.rows
    assert row.cascade_reason and row.cascade_reason.startswith(kind) and row.tier == "medium"
    assert row.cost_usd == pytest.approx(first + second) and (row.prompt_tokens, row.completion_tokens) == (20, 10)
    assert json.loads(row.explanation or "{}")["cascade"]["reason"].startswith(kind)


async def test_a_good_cheap_answer_is_sent_without_a_second_call() -> None:
    h = Harness({"cheap": lambda c: Reply("4")}, cache=False, cascade=["simple"])
    answer = await h.serve("auto")
    assert isinstance(answer, Answer) and answer.served.backend == "cheap" and answer.message.content == "4"
    assert answer.served.smr is not None and answer.served.smr.cascade is None
    assert len(h.fakes["backup"].calls) == 0 and h.rows[0].cascade_reason is None


async def test_no_cascade_on_a_tier_not_listed_or_a_forced_tier() -> None:
    refusing = Reply("I'm sorry, but I can't help with that.")
    for h, model in ((Harness({"cheap": lambda c: refusing}, cache=False), "auto"),
                     (Harness({"cheap": lambda c: refusing}, cache=False, cascade=["simple"]), "smr/simple")):
        answer = await h.serve(model)
        assert isinstance(answer, Answer) and answer.served.backend == "cheap"
        assert len(h.fakes["backup"].calls) == 0


async def test_a_stream_escalates_before_its_first_byte() -> None:
    h = Harness({"cheap": lambda c: Reply("I'm sorry, but I can't help with that."),
                 "backup": lambda c: Reply("Four, as it happens.", pieces=3)}, cache=False, cascade=["simple"])
    answer = await h.serve("auto", stream=True, stream_options={"include_usage": True})
    assert isinstance(answer, StreamAnswer) and answer.served.backend == "backup"
    events = await read_sse(answer)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events
                   if isinstance(e, dict) and e["choices"])
    assert text == "Four, as it happens." and "sorry" not in json.dumps(events)
    first = events[0]
    assert isinstance(first, dict) and first["smr"]["cascade"]["reason"] == "refusal"
    last = events[-2]
    assert isinstance(last, dict) and last["smr"]["cost_usd"] == pytest.approx((10 * 0.1 + 5 * 0.2 + 10 * 0.5
                                                                                  + 5 * 1.0) / 1e6)
    (row,) = h.rows
    assert row.cascade_reason == "refusal" and row.http_status == 200 and row.backend == "backup"


async def test_a_stream_whose_cheap_answer_passes_is_the_cheap_answer() -> None:
    h = Harness({"cheap": lambda c: Reply("Four.")}, cache=False, cascade=["simple"])
    answer = await h.serve("auto", stream=True)
    assert isinstance(answer, StreamAnswer) and answer.served.backend == "cheap"
    events = await read_sse(answer)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Four."
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(h.fakes["backup"].calls) == 0 and h.rows[0].cascade_reason is None


async def test_shadow_mode_serves_as_asked_and_logs_what_routing_would_do() -> None:
    h = Harness(cache=False, shadow=True)
    served = await h.serve("auto")  # routing off: the strongest tier answers
    named = await h.serve("backup")
    assert (served.served.backend, named.served.backend) == ("strong", "backup")
    assert [r.shadow_tier for r in h.rows] == ["simple", "simple"]
    assert [r.shadow_backend for r in h.rows] == ["cheap", "cheap"]
    cheap = (10 * 0.1 + 5 * 0.2) / 1e6
    assert h.rows[0].shadow_cost_usd == pytest.approx(cheap)
    smr = served.served.smr
    assert smr is not None and smr.shadow is not None and smr.route == "shadow"
    assert smr.shadow.savings_usd == pytest.approx(h.rows[0].cost_usd - cheap)
    plain = Harness(cache=False)
    await plain.serve("auto")
    assert plain.rows[0].shadow_tier is None and plain.rows[0].backend == "cheap"


def test_cascade_settings_are_checked() -> None:
    from gateway.vocab.errors import SettingsError
    from gateway.vocab.settings import parse_settings, validate

    with pytest.raises(SettingsError, match=r"tiers\.cascade"):
        validate(parse_settings({"tiers": {"cascade": ["complex"]}, "auth": {"enabled": False}}))
    assert msgspec.to_builtins(parse_settings({"tiers": {"cascade": ["simple"]}}).tiers)["cascade"] == ["simple"]
