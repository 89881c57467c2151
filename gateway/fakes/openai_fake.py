"""A fake OpenAI-compatible server: /v1/chat/completions (JSON and SSE) and /v1/models."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from gateway.fakes.common import (
    FakeServer,
    count_tokens,
    fake_arguments,
    hard_request,
    judge_reply,
    reply_text,
    split_pieces,
    wrong_reply,
)

_enc = msgspec.json.Encoder()


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


class FakeOpenAI(FakeServer):
    label = "fake-openai"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
            for m in ("fake-model", "gpt-4o-mini", "gpt-4o")]})

    def answer(self, body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]], int, int]:
        messages = body.get("messages") or []
        prompt_text = " ".join(_text(m.get("content")) for m in messages)
        last = messages[-1] if messages else {}
        tools = body.get("tools") or []
        calls: list[dict[str, Any]] = []
        if self.behaviour.reply is not None:
            text: str | None = self.behaviour.reply
        elif self.behaviour.judge:
            text = judge_reply(_text(last.get("content")), self.behaviour.judge_words)
        elif self.behaviour.fail_hard and last.get("role") == "user" and hard_request(_text(last.get("content"))):
            text = wrong_reply(self.label, body.get("model", "?"))
        elif last.get("role") == "tool":
            text = f"The tool returned: {_text(last.get('content'))}"
        elif tools and body.get("tool_choice") != "none":
            fn = tools[0]["function"]
            args = fake_arguments(fn.get("parameters"), _text(last.get("content")))
            raw = self.behaviour.tool_arguments
            arguments = _enc.encode(args).decode() if raw is None else raw
            calls = [{"id": "call_fake_1", "type": "function",
                      "function": {"name": fn["name"], "arguments": arguments}}]
            text = None
        else:
            text = reply_text(self.label, body.get("model", "?"), _text(last.get("content")))
        completion = count_tokens(text or "") + sum(len(c["function"]["arguments"]) // 4 for c in calls)
        return text, calls, count_tokens(prompt_text), completion

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, early = await self.begin(request)
        if early is not None:
            return early
        text, calls, p, c = self.answer(body)
        p, c = self.reported(p, c)
        model = body.get("model", "fake-model")
        created = int(time.time())
        usage: dict[str, int] | None = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        if self.behaviour.omit_usage:
            usage = None
        finish = self.behaviour.finish_reason or ("tool_calls" if calls else "stop")
        if not body.get("stream"):
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                msg["tool_calls"] = calls
            return web.Response(body=_enc.encode({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
                "usage": usage}), content_type="application/json")
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return b"data: " + _enc.encode({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}) + b"\n\n"

        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if calls:
            deltas += [{"tool_calls": [{"index": i, **c}]} for i, c in enumerate(calls)]
        deltas += [{"content": piece} for piece in split_pieces(text or "", self.behaviour.pieces) if text]
        tail = [chunk({}, finish)]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append(b"data: " + _enc.encode({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage}) + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        return await self.stream(request, "text/event-stream", [chunk(d) for d in deltas], tail)
