"""The reference point: a minimal Litestar + msgspec passthrough with one aiohttp client session.

`python -m bench.passthrough --upstream URL --port P`. It forwards /v1/chat/completions (JSON or
SSE) and does nothing else: no auth, routing, cost, headers or logging.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.response import Stream

_decode = msgspec.json.Decoder().decode


@post("/v1/chat/completions", status_code=200)
async def chat(request: Request, state: State) -> Response:
    body = await request.body()
    session: aiohttp.ClientSession = state.session
    url = state.upstream + "/v1/chat/completions"
    if _decode(body).get("stream"):
        async def relay() -> AsyncIterator[bytes]:
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                async for chunk in r.content.iter_any():
                    yield chunk
        return Stream(relay(), media_type="text/event-stream")
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
        return Response(await r.read(), media_type="application/json", status_code=r.status)


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()

    async def open_session(app: Litestar) -> None:
        app.state.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def close_session(app: Litestar) -> None:
        await app.state.session.close()

    app = Litestar([chat, health], on_startup=[open_session], on_shutdown=[close_session],
                   state=State({"upstream": a.upstream}), openapi_config=None)
    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
