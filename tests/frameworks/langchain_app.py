"""A LangChain application pointed at the gateway as at any custom OpenAI endpoint (only `base_url`
changes). Run in tests/frameworks/.venv by tests/integration/test_frameworks.py; prints what it saw
as JSON, and the test judges it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

URL = sys.argv[1]
MODELS = sys.argv[2].split(",")


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return '{"temp_c": 21}'


def llm(model: str, **kw: Any) -> ChatOpenAI:
    return ChatOpenAI(base_url=URL + "/v1", api_key="unused", model=model, max_retries=0, **kw)


def invoke(model: str) -> dict[str, Any]:
    r = llm(model).invoke([SystemMessage("Be brief."), HumanMessage("Name three prime numbers please")])
    return {"content": r.content, "model": r.response_metadata.get("model_name"),
            "finish": r.response_metadata.get("finish_reason"), "usage": r.usage_metadata}


def stream(model: str) -> dict[str, Any]:
    chunks = list(llm(model, stream_usage=True).stream("Stream a short answer about rivers"))
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    return {"pieces": sum(1 for c in chunks if c.content), "content": merged.content,
            "usage": merged.usage_metadata}


def tools(model: str) -> dict[str, Any]:
    bound = llm(model).bind_tools([get_weather])
    history: list[BaseMessage] = [HumanMessage("What is the weather in Paris")]
    first = bound.invoke(history)
    call = first.tool_calls[0]
    history += [first, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    second = bound.invoke(history)
    streamed: Any = None
    for chunk in bound.stream("Weather in Oslo"):
        streamed = chunk if streamed is None else streamed + chunk
    return {"call": {"name": call["name"], "args": call["args"]}, "answer": second.content,
            "finish": second.response_metadata.get("finish_reason"),
            "streamed_calls": [{"name": t["name"], "args": t["args"]} for t in streamed.tool_calls]}


async def routed() -> dict[str, Any]:
    auto = llm("auto")
    r = await auto.ainvoke("What is the capital of France?")
    text = "".join([str(c.content) async for c in auto.astream("Design a fault-tolerant distributed queue")])
    return {"content": r.content, "model": r.response_metadata.get("model_name"), "streamed": text}


def error() -> dict[str, Any]:
    try:
        llm("no-such-model").invoke("hello")
    except Exception as exc:  # what the application sees
        return {"type": type(exc).__name__, "status": getattr(exc, "status_code", None), "message": str(exc)}
    return {}


if __name__ == "__main__":
    seen: dict[str, Any] = {m: {"invoke": invoke(m), "stream": stream(m), "tools": tools(m)} for m in MODELS}
    seen["auto"] = asyncio.run(routed())
    seen["error"] = error()
    print(json.dumps(seen))
