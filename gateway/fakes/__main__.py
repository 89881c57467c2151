"""`python -m gateway.fakes --kind openai --port 9000`: run one fake upstream in the foreground."""

from __future__ import annotations

import argparse
import asyncio

from gateway.fakes.common import Behaviour
from gateway.fakes.gemini_fake import FakeGemini
from gateway.fakes.ollama_fake import FakeOllama
from gateway.fakes.openai_fake import FakeOpenAI

KINDS = {"openai": FakeOpenAI, "ollama": FakeOllama, "gemini": FakeGemini}


async def _serve(kind: str, host: str, port: int, latency_ms: float) -> None:
    server = KINDS[kind](Behaviour(latency_ms=latency_ms))
    bound = await server.start(host, port)
    print(f"fake {kind} listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m gateway.fakes")
    p.add_argument("--kind", choices=sorted(KINDS), required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency-ms", type=float, default=0.0)
    args = p.parse_args()
    try:
        asyncio.run(_serve(args.kind, args.host, args.port, args.latency_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
