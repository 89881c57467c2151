"""What the three fake upstreams share: deterministic answers, token counts and fault injection.

Each fake is a real aiohttp server. Its behaviour is set at start-up or at run time with
`POST /__fake__/behaviour` (a `Behaviour` JSON object; `DELETE` resets it), and `GET /__fake__/stats`
reports what it saw, including the last request body, so tests can check what was forwarded.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
from aiohttp import web

from gateway.vocab.wire import split_pieces

__all__ = ["Behaviour", "FakeServer", "Stats", "count_tokens", "fake_arguments", "hard_request", "judge_reply",
           "reply_text", "split_pieces", "wrong_reply"]

_word = re.compile(r"\S+")
_word_chars = re.compile(r"[a-z]+")
# What the weak-model and judge knobs call "a multi-step maths or code request": LaTeX maths, digits joined
# by an operator, a code fence or a Python def, "function", or solve / calculate / compute / how many.
HARD = re.compile(r"\$|\\frac|\d\s*[-+*/^=]\s*\d|```|\bdef \w+\(|\b(function|solve|calculate|compute|how many)\b",
                  re.IGNORECASE)
WRONG = "Simulated wrong answer"
_SECTION = re.compile(r"\[(Request|Answer A|Answer B)\]\n(.*?)(?=\n\[(?:Answer A|Answer B)\]\n|\nReply with |\Z)",
                      re.DOTALL)


class Behaviour(msgspec.Struct, omit_defaults=True):
    latency_ms: float = 0.0          # wait before answering
    chunk_delay_ms: float = 0.0      # wait between streamed pieces
    fail_status: int | None = None   # answer with this HTTP status instead (429, 500, 503, ...)
    fail_times: int = -1             # how many requests fail that way (-1: all of them)
    hang: bool = False               # never answer (the client must time out)
    cut_stream_after: int | None = None  # drop the connection after this many streamed pieces
    malformed: bool = False          # answer with JSON that does not parse
    pieces: int = 4                  # how many pieces a streamed answer is split into
    reply: str | None = None         # fixed reply text instead of the generated one
    omit_usage: bool = False         # report no token usage (as some OpenAI-compatible servers do)
    # The OpenAI fake only: answer with this finish_reason ("length": cut short), and tool calls with
    # these raw arguments instead of ones that fit the tool's schema.
    finish_reason: str | None = None
    tool_arguments: str | None = None
    # Usage as a misbehaving upstream reports it: these counts instead of the counted ones (any integer,
    # negative or past any context window), and a stream with one line this long after its first piece.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    long_line_bytes: int | None = None
    # A weak model: a multi-step maths or code request (`hard_request`) gets a wrong answer (`wrong_reply`:
    # no number in it, so the final-number rule sees it differ); other requests the usual reply.
    fail_hard: bool = False
    # A pairwise judge (gateway/learning/judge_pairwise.md's prompt): `judge_reply`.
    judge: bool = False
    # The judge also simulates near misses for the semantic cache's checks: questions whose right answer
    # hinges on one of these words ("simple" vs "technical" terms). An answer to a question with other of
    # these words than the request loses to one with the request's own (the fakes' answers quote the
    # question they answer). Empty: the judge as before.
    judge_words: tuple[str, ...] = ()


class Stats(msgspec.Struct):
    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    last_body: Any = None
    last_path: str = ""


def count_tokens(text: str) -> int:
    return max(1, len(_word.findall(text))) if text else 0


def reply_text(label: str, model: str, prompt: str) -> str:
    words = prompt.split()
    gist = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    return f"[{label} {model}] Simulated answer to: {gist}"


def hard_request(text: str) -> bool:
    return bool(HARD.search(text))


def wrong_reply(label: str, model: str) -> str:
    return f"[{label} {model}] {WRONG}: I worked it through and got nowhere."


def judge_reply(prompt: str, words: tuple[str, ...] = ()) -> str:
    """A simulated pairwise judge: on a multi-step maths or code request it prefers the answer that is not
    a weak model's wrong one (`wrong_reply`), [[A]] or [[B]]; with `words` (Behaviour.judge_words), the
    answer that mentions the same of them as the request over one that does not; everything else is a
    tie, [[C]]. It reads the request and the answers from the judge prompt's [Request], [Answer A] and
    [Answer B] sections."""
    parts = {m.group(1): m.group(2) for m in _SECTION.finditer(prompt)}
    a_wrong, b_wrong = WRONG in parts.get("Answer A", ""), WRONG in parts.get("Answer B", "")
    verdict = "C"
    if hard_request(parts.get("Request", "")) and a_wrong != b_wrong:
        verdict = "B" if a_wrong else "A"
    elif words:
        want = _mentions(parts.get("Request", ""), words)
        a_fits, b_fits = (_mentions(parts.get(k, ""), words) == want for k in ("Answer A", "Answer B"))
        if a_fits != b_fits:
            verdict = "A" if a_fits else "B"
    return f"Simulated judgement. [[{verdict}]]"


def _mentions(text: str, words: tuple[str, ...]) -> frozenset[str]:
    lowered = set(_word_chars.findall(text.lower()))
    return frozenset(w for w in words if w in lowered)


def fake_arguments(schema: dict[str, Any] | None, prompt: str) -> dict[str, Any]:
    """Arguments that fit a JSON schema's required properties, derived from the prompt."""
    schema = schema or {}
    props: dict[str, Any] = schema.get("properties") or {}
    required = schema.get("required") or list(props)
    last_word = (prompt.split() or ["x"])[-1].strip("?.!,;:'\"")
    args: dict[str, Any] = {}
    for name in required:
        kind = (props.get(name) or {}).get("type", "string")
        args[name] = {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(kind, last_word)
    return args


def _long_line(content_type: str, size: int) -> bytes:
    """One well-formed event whose line is `size` bytes long (it carries nothing but padding)."""
    line = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
    return b"data: " + line + b"\n\n" if content_type == "text/event-stream" else line + b"\n"


class FakeServer:
    """Base class: behaviour, stats and the control endpoints. Subclasses add the wire protocol."""

    label = "fake"

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.default = behaviour or Behaviour()
        self.behaviour = msgspec.structs.replace(self.default)
        self.stats = Stats()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/__fake__/behaviour", self._set_behaviour)
        self.app.router.add_delete("/__fake__/behaviour", self._reset)
        self.app.router.add_get("/__fake__/stats", self._stats)
        self.routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=2048)  # bursts of hundreds of connections
        await site.start()
        server: Any = site._server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _set_behaviour(self, request: web.Request) -> web.Response:
        self.behaviour = msgspec.json.decode(await request.read(), type=Behaviour)
        return web.json_response({"ok": True})

    async def _reset(self, request: web.Request) -> web.Response:
        self.behaviour = msgspec.structs.replace(self.default)
        self.stats = Stats()
        return web.json_response({"ok": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.Response(body=msgspec.json.encode(self.stats), content_type="application/json")

    async def begin(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """Read the body, count it, apply latency and failures. Returns (body, early response)."""
        raw = await request.read()
        self.stats.requests += 1
        self.stats.last_path = request.path
        try:
            body = msgspec.json.decode(raw) if raw else {}
        except msgspec.DecodeError:
            return None, self.error_response(400, "request body is not JSON")
        self.stats.last_body = body
        b = self.behaviour
        if b.hang:
            await self._stopping.wait()
            return body, self.error_response(503, "fake server shutting down")
        if b.latency_ms:
            await asyncio.sleep(b.latency_ms / 1000)
        if b.fail_status is not None and b.fail_times != 0:
            if b.fail_times > 0:
                b.fail_times -= 1
            return body, self.error_response(b.fail_status, f"simulated failure {b.fail_status}")
        if b.malformed:
            return body, web.Response(body=b'{"choices": [ {"message": tru', content_type="application/json")
        return body, None

    def error_response(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "fake_error", "code": status}},
                                 status=status)

    def reported(self, prompt: int, completion: int) -> tuple[int, int]:
        """The usage to report: the counted tokens, or what the behaviour says to claim instead."""
        b = self.behaviour
        return (prompt if b.prompt_tokens is None else b.prompt_tokens,
                completion if b.completion_tokens is None else b.completion_tokens)

    async def pace(self, index: int) -> bool:
        """Between streamed pieces: wait, and say whether the stream should be cut here."""
        b = self.behaviour
        if b.cut_stream_after is not None and index >= b.cut_stream_after:
            return True
        if b.chunk_delay_ms and index:
            await asyncio.sleep(b.chunk_delay_ms / 1000)
        return False

    async def stream(self, request: web.Request, content_type: str, pieces: list[bytes],
                     tail: list[bytes]) -> web.StreamResponse:
        """Send `pieces` paced as the behaviour says (slowed, or cut by closing the connection), then
        `tail`; count started, completed and cancelled streams."""
        self.stats.streams_started += 1
        resp = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            for i, piece in enumerate(pieces):
                if await self.pace(i):
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                await resp.write(piece)
                if i == 0 and self.behaviour.long_line_bytes:
                    await resp.write(_long_line(content_type, self.behaviour.long_line_bytes))
            for piece in tail:
                await resp.write(piece)
            await resp.write_eof()
        except ConnectionResetError:
            self.stats.streams_cancelled += 1
            return resp
        except asyncio.CancelledError:
            self.stats.streams_cancelled += 1
            raise
        self.stats.streams_completed += 1
        return resp
