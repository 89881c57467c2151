"""Start the fakes together, in the running loop or in a background thread of their own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, cast

from gateway.fakes.common import FakeServer
from gateway.fakes.gemini_fake import FakeGemini
from gateway.fakes.ollama_fake import FakeOllama
from gateway.fakes.openai_fake import FakeOpenAI
from gateway.providers.catalog import PROVIDERS, load, spec


class FakeUpstreams:
    """One fake per wire the catalog's provider types speak (several types may share one, as every
    OpenAI-compatible type shares the OpenAI fake)."""

    def __init__(self) -> None:
        self.by_class: dict[str, FakeServer] = {}
        for provider in PROVIDERS.values():
            if provider.fake not in self.by_class:
                self.by_class[provider.fake] = load(provider.fake)()

    @property
    def ollama(self) -> FakeOllama:
        return cast(FakeOllama, self.by_class[spec("ollama").fake])

    @property
    def gemini(self) -> FakeGemini:
        return cast(FakeGemini, self.by_class[spec("gemini").fake])

    @property
    def openai(self) -> FakeOpenAI:
        return cast(FakeOpenAI, self.by_class[spec("openai").fake])

    @property
    def servers(self) -> tuple[FakeServer, ...]:
        return tuple(self.by_class.values())

    async def start(self, host: str = "127.0.0.1") -> None:
        for s in self.servers:
            await s.start(host)
        self.host = host

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()

    def url(self, server: FakeServer) -> str:
        return f"http://{self.host}:{server.port}"

    def url_for(self, provider: str) -> str:
        """The base URL a backend of this provider type uses to reach its fake."""
        described = spec(provider)
        return self.url(self.by_class[described.fake]) + described.fake_path

    @property
    def ollama_url(self) -> str:
        return self.url_for("ollama")

    @property
    def gemini_url(self) -> str:
        return self.url_for("gemini")

    @property
    def openai_url(self) -> str:
        return self.url_for("openai")


class ThreadedFakes(FakeUpstreams):
    """The fakes on their own event loop in a daemon thread, so a blocking caller can use them."""

    def __init__(self) -> None:
        super().__init__()
        self.extra: list[FakeServer] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-upstreams", daemon=True)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def add(self, server: FakeServer) -> str:
        """Start one more fake on this loop (for tests that need a second, misbehaving upstream)."""
        self.run(server.start(self.host))
        self.extra.append(server)
        return self.url(server)

    def start_in_thread(self, host: str = "127.0.0.1") -> ThreadedFakes:
        self._thread.start()
        self.run(self.start(host))
        return self

    def stop_thread(self) -> None:
        self.run(self.stop())
        for server in self.extra:
            self.run(server.stop())
        self.run(_cancel_pending())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _cancel_pending() -> None:
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me]
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
