"""A LlamaIndex application pointed at the gateway through `OpenAILike`, LlamaIndex's class for any
OpenAI-compatible server. Run in tests/frameworks/.venv by tests/integration/test_frameworks.py;
prints what it saw as JSON, and the test judges it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

URL = sys.argv[1]
MODELS = sys.argv[2].split(",")


def weather(city: str) -> str:
    """Current weather in a city."""
    return '{"temp_c": 21}'


def llm(model: str) -> OpenAILike:
    return OpenAILike(model=model, api_base=URL + "/v1", api_key="unused", is_chat_model=True,
                      is_function_calling_model=True, context_window=32768, max_retries=0)


def basics(model: str) -> dict[str, Any]:
    m = llm(model)
    reply = m.chat([ChatMessage(role="system", content="Be brief."),
                    ChatMessage(role="user", content="Summarise the water cycle")])
    deltas = [r.delta or "" for r in m.stream_chat([ChatMessage(role="user", content="Stream about mountains")])]
    return {"chat": reply.message.content, "complete": m.complete("Write a haiku about autumn").text,
            "pieces": sum(1 for d in deltas if d), "streamed": "".join(deltas)}


def tools(model: str) -> dict[str, Any]:
    m = llm(model)
    response = m.chat_with_tools([FunctionTool.from_defaults(fn=weather, name="get_weather")],
                                 user_msg="What is the weather in Paris")
    calls = m.get_tool_calls_from_response(response, error_on_no_tool_call=False)
    return {"calls": [{"name": c.tool_name, "args": c.tool_kwargs} for c in calls]}


async def routed() -> dict[str, Any]:
    reply = await llm("auto").achat([ChatMessage(role="user", content="What is 2 + 2?")])
    text = ""
    async for r in await llm("auto").astream_chat([ChatMessage(role="user", content="Explain recursion")]):
        text += r.delta or ""
    return {"chat": reply.message.content, "streamed": text}


if __name__ == "__main__":
    seen: dict[str, Any] = {m: {**basics(m), **tools(m)} for m in MODELS}
    seen["auto"] = asyncio.run(routed())
    print(json.dumps(seen))
