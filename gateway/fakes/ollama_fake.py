"""A fake Ollama server: /api/chat (JSON and NDJSON streaming), /api/embed, /api/tags, /api/version."""

from __future__ import annotations

import hashlib
import math
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
CREATED = "2026-01-01T00:00:00.000000Z"


class FakeOllama(FakeServer):
    label = "fake-ollama"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/embed", self.embed)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/version", self.version)

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.0-fake"})

    async def tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": "granite4:350m", "model": "granite4:350m",
                                              "modified_at": CREATED, "size": 0, "digest": "fake"}]})

    async def embed(self, request: web.Request) -> web.Response:
        body, early = await self.begin(request)
        if early is not None:
            return early
        inputs = body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else inputs
        vectors = []
        for text in inputs:
            digest = hashlib.sha256(text.encode()).digest()
            v = [(b - 127.5) / 127.5 for b in digest]
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            vectors.append([x / norm for x in v])
        return web.json_response({"model": body.get("model"), "embeddings": vectors})

    def answer(self, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], int, int]:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        tools = body.get("tools") or []
        calls: list[dict[str, Any]] = []
        if self.behaviour.reply is not None:
            text = self.behaviour.reply
        elif self.behaviour.judge:
            text = judge_reply(last.get("content") or "", self.behaviour.judge_words)
        elif self.behaviour.fail_hard and last.get("role") == "user" and hard_request(last.get("content") or ""):
            text = wrong_reply(self.label, body.get("model", "?"))
        elif last.get("role") == "tool":
            text = f"The tool returned: {last.get('content', '')}"
        elif tools:
            fn = tools[0]["function"]
            calls = [{"function": {"name": fn["name"],
                                   "arguments": fake_arguments(fn.get("parameters"), last.get("content", ""))}}]
            text = ""
        else:
            text = reply_text(self.label, body.get("model", "?"), last.get("content", ""))
        prompt = " ".join(m.get("content") or "" for m in messages)
        return text, calls, count_tokens(prompt), max(count_tokens(text), 1 if calls else 0)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, early = await self.begin(request)
        if early is not None:
            return early
        model = body.get("model", "?")
        text, calls, p, c = self.answer(body)
        p, c = self.reported(p, c)
        final = {"model": model, "created_at": CREATED, "done": True, "done_reason": "stop",
                 "total_duration": 1000, "load_duration": 0, "prompt_eval_count": p, "prompt_eval_duration": 1,
                 "eval_count": c, "eval_duration": 1}
        if not body.get("stream", True):
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if calls:
                msg["tool_calls"] = calls
            return web.Response(body=_enc.encode({**final, "message": msg}), content_type="application/json")
        messages: list[dict[str, Any]] = []
        if calls:
            messages.append({"role": "assistant", "content": "", "tool_calls": calls})
        if text:
            messages += [{"role": "assistant", "content": p} for p in split_pieces(text, self.behaviour.pieces)]
        lines = [_enc.encode({"model": model, "created_at": CREATED, "message": m, "done": False}) + b"\n"
                 for m in messages]
        done = _enc.encode({**final, "message": {"role": "assistant", "content": ""}}) + b"\n"
        return await self.stream(request, "application/x-ndjson", lines, [done])
