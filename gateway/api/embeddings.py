"""POST /v1/embeddings: OpenAI's embeddings API, served by the configured embedding models
(`gateway.path.embeddings`): text, a list of texts or token arrays in; float or base64 vectors out."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, post

from gateway.api.answers import JSON
from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.infra.request_ids import ids
from gateway.path.auth import Principal
from gateway.path.embeddings import EmbeddingCall, EmbeddingService, encode_vector
from gateway.vocab.errors import InvalidRequest
from gateway.vocab.wire import Explanation, ModelName, decode_json_object, encoder, validation_error

ENDPOINT = "/v1/embeddings"
Tokens = list[Annotated[int, msgspec.Meta(ge=0)]]


class EmbeddingsRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input: str | list[str | Annotated[int, msgspec.Meta(ge=0)] | Tokens]  # text(s), or token array(s)
    model: ModelName
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=65_536)] | None = None
    user: str | None = None


class EmbeddingData(msgspec.Struct, frozen=True):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, frozen=True):
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
    object: str = "list"
    smr: Explanation | None = None


def parse_embeddings_request(body: bytes) -> tuple[EmbeddingsRequest, list[str] | list[Tokens]]:
    """The request, and its input as a list: of texts, or of token arrays."""
    raw = decode_json_object(body)
    try:
        req = msgspec.convert(raw, EmbeddingsRequest)
    except msgspec.ValidationError as exc:
        err = validation_error(exc)
        if "unknown field" in err.message:
            err.code = "unsupported_parameter"
        raise err from None
    inputs: list[str] | list[Tokens]
    items = [req.input] if isinstance(req.input, str) else req.input
    if items and all(isinstance(i, int) for i in items):
        inputs = [[i for i in items if isinstance(i, int)]]  # one token array
    elif all(isinstance(i, str) for i in items):
        inputs = [i for i in items if isinstance(i, str)]
    elif all(isinstance(i, list) for i in items):
        inputs = [i for i in items if isinstance(i, list)]
    else:
        raise InvalidRequest("'input' must be a string, a list of strings, a token array or a list of token "
                             "arrays, not a mix", param="input", code="invalid_value")
    if not inputs or any(len(i) == 0 for i in inputs):
        raise InvalidRequest("'input' must be a non-empty string, list of strings or token arrays", param="input",
                             code="invalid_value")
    return req, inputs


@post(ENDPOINT, status_code=200, opt={"accounted": ENDPOINT}, operation_class=with_body(EmbeddingsRequest))
async def create_embeddings(request: Request, gw: Gateway, principal: Principal) -> Response:
    req, inputs = parse_embeddings_request(await request.body())
    service: EmbeddingService = request.app.state.embeddings
    rid, cid = ids(request.scope)
    call = EmbeddingCall(req.model, inputs, req.encoding_format, req.dimensions, req.user, principal, rid, cid)
    done = await service.serve(call, gw.path.admission, gw.path.accounting)
    data = [EmbeddingData(i, encode_vector(v, req.encoding_format)) for i, v in enumerate(done.vectors)]
    body = EmbeddingList(data, done.backend.name, EmbeddingUsage(done.prompt_tokens, done.prompt_tokens),
                         smr=done.smr)
    headers = {"x-smr-model": done.backend.name, "x-smr-provider": done.backend.provider, "x-smr-tier": "direct",
               "x-smr-cost-usd": f"{done.priced.cost_usd:.8f}", "x-smr-cache": "bypass", **(done.headers or {})}
    return Response(encoder.encode(body), media_type=JSON, headers=headers)
