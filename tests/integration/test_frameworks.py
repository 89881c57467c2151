"""LangChain and LlamaIndex apps, set up as for any custom OpenAI endpoint, work against the gateway
unchanged: plain and streamed chat, async, tool calls, routed (`auto`) requests and errors, in front
of each upstream type. The apps run in an environment of their own (tests/frameworks/setup.sh), as a
user's application does; each prints what it saw, and the assertions are here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import GatewayThread

APPS = Path(__file__).resolve().parents[1] / "frameworks"
MODELS = ("oai", "flash", "local")
ROUTED = {"local", "flash", "pro", "oai"}  # the backends of the tier chains


@pytest.fixture(scope="module")
def framework_python() -> Path:
    subprocess.run(["bash", str(APPS / "setup.sh")], check=True, timeout=900)
    return APPS / ".venv" / "bin" / "python"


def run_app(python: Path, app: str, gateway: GatewayThread) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTHONPATH"))}
    out = subprocess.run([str(python), str(APPS / app), gateway.url, ",".join(MODELS)], capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    seen: dict[str, Any] = json.loads(out.stdout)
    return seen


def test_langchain_app(framework_python: Path, gateway: GatewayThread) -> None:
    seen = run_app(framework_python, "langchain_app.py", gateway)
    for model in MODELS:
        invoke, stream, tools = seen[model]["invoke"], seen[model]["stream"], seen[model]["tools"]
        assert "Name three prime numbers please" in invoke["content"], model
        assert invoke["model"] == model and invoke["finish"] == "stop"
        usage = invoke["usage"]
        assert usage["output_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert stream["pieces"] >= 3, "the answer should arrive in several pieces"
        assert "Stream a short answer about rivers" in stream["content"]
        assert stream["usage"]["total_tokens"] > 0, "stream_usage asks for the final usage chunk"
        assert tools["call"] == {"name": "get_weather", "args": {"city": "Paris"}}, model
        assert tools["finish"] == "stop" and "21" in tools["answer"]
        assert tools["streamed_calls"] == [{"name": "get_weather", "args": {"city": "Oslo"}}], model
    assert "What is the capital of France?" in seen["auto"]["content"]
    assert seen["auto"]["model"] in ROUTED
    assert "Design a fault-tolerant distributed queue" in seen["auto"]["streamed"]
    error = seen["error"]
    assert error["status"] == 404 and error["type"] == "OpenAIModelNotFoundError", error  # LangChain read the code
    assert "no-such-model" in error["message"] and "model_not_found" in error["message"]


def test_llamaindex_app(framework_python: Path, gateway: GatewayThread) -> None:
    seen = run_app(framework_python, "llamaindex_app.py", gateway)
    for model in MODELS:
        got = seen[model]
        assert "Summarise the water cycle" in got["chat"], model
        assert "Write a haiku about autumn" in got["complete"]
        assert got["pieces"] >= 3 and "Stream about mountains" in got["streamed"]
        assert got["calls"] == [{"name": "get_weather", "args": {"city": "Paris"}}], model
    assert "What is 2 + 2?" in seen["auto"]["chat"]
    assert "Explain recursion" in seen["auto"]["streamed"]
