"""A fake Gemini API: POST /{version}/models/{model}:generateContent and :streamGenerateContent?alt=sse."""

from __future__ import annotations

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
_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    return d.get(camel, d.get(snake))


def _texts(content: dict[str, Any]) -> str:
    return " ".join(p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p)


class FakeGemini(FakeServer):
    label = "fake-gemini"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{version}/models/{target}", self.dispatch)
        app.router.add_get("/{version}/models", self.models)

    async def models(self, request: web.Request) -> web.Response:
        """models.list, as the Gemini API answers it (a key is required, as there)."""
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return self.error_response(403, "Method doesn't allow unregistered callers (no API key).")
        return web.json_response({"models": [
            {"name": f"models/{m}", "displayName": m, "supportedGenerationMethods": ["generateContent"]}
            for m in ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite")]})

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"code": status, "message": message,
                                            "status": _STATUS.get(status, "UNKNOWN")}}, status=status)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return self.error_response(404, f"unknown method {method!r}")
        if not request.headers.get("x-goog-api-key") and not request.query.get("key"):
            return self.error_response(403, "Method doesn't allow unregistered callers. Please use an API key.")
        body, early = await self.begin(request)
        if early is not None:
            return early
        if not body.get("contents"):
            return self.error_response(400, "* GenerateContentRequest.contents: contents is not specified")
        return await self.answer(request, body, model, stream=method == "streamGenerateContent")

    def compose(self, body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], int, int]:
        contents = body["contents"]
        last = contents[-1]
        parts = last.get("parts") or []
        tools = body.get("tools") or []
        decls = [d for t in tools for d in (_get(t, "functionDeclarations", "function_declarations") or [])]
        mode = ((_get(body.get("toolConfig") or body.get("tool_config") or {},
                      "functionCallingConfig", "function_calling_config") or {}).get("mode"))
        response = next((_get(p, "functionResponse", "function_response") for p in parts
                         if _get(p, "functionResponse", "function_response")), None)
        out: list[dict[str, Any]]
        if self.behaviour.reply is not None:
            out = [{"text": self.behaviour.reply}]
        elif self.behaviour.judge:
            out = [{"text": judge_reply(_texts(last), self.behaviour.judge_words)}]
        elif self.behaviour.fail_hard and response is None and hard_request(_texts(last)):
            out = [{"text": wrong_reply(self.label, model)}]
        elif response is not None:
            out = [{"text": f"The tool returned: {_enc.encode(response.get('response')).decode()}"}]
        elif decls and mode != "NONE":
            d = decls[0]
            schema = _get(d, "parametersJsonSchema", "parameters_json_schema") or d.get("parameters")
            out = [{"functionCall": {"name": d["name"], "args": fake_arguments(schema, _texts(last))}}]
        else:
            out = [{"text": reply_text(self.label, model, _texts(last))}]
        system = _get(body, "systemInstruction", "system_instruction") or {}
        prompt = " ".join(_texts(c) for c in contents) + " " + (_texts(system) if isinstance(system, dict) else "")
        completion = sum(count_tokens(p.get("text", "")) for p in out) + (3 if "functionCall" in out[0] else 0)
        return out, count_tokens(prompt), completion

    async def answer(self, request: web.Request, body: dict[str, Any], model: str, stream: bool) -> web.StreamResponse:
        parts, p, c = self.compose(body, model)
        p, c = self.reported(p, c)
        usage = {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c}

        def event(ps: list[dict[str, Any]], final: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"role": "model", "parts": ps}, "index": 0}
            ev: dict[str, Any] = {"candidates": [cand], "modelVersion": model, "responseId": "fake-response"}
            if final:
                cand["finishReason"] = "STOP"
                ev["usageMetadata"] = usage
            return ev

        if not stream:
            return web.Response(body=_enc.encode(event(parts, True)), content_type="application/json")
        if "text" in parts[0]:
            pieces = [[{"text": t}] for t in split_pieces(parts[0]["text"], self.behaviour.pieces)]
        else:
            pieces = [parts]
        events = [b"data: " + _enc.encode(event(ps, i == len(pieces) - 1)) + b"\r\n\r\n"
                  for i, ps in enumerate(pieces)]
        return await self.stream(request, "text/event-stream", events, [])
