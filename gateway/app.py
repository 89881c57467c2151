"""`create_app(settings)`: the whole app is composed here; nothing is read or opened at import."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException

from gateway.api.backends import list_backends
from gateway.api.cache_admin import clear_cache
from gateway.api.chat import chat_completions
from gateway.api.complete import complete
from gateway.api.deps import provide_gateway, provide_principal
from gateway.api.embeddings import create_embeddings
from gateway.api.feedback import post_feedback
from gateway.api.health import health
from gateway.api.keys import create_key, list_keys, revoke_key, rotate_key, update_key_limits
from gateway.api.metrics import metrics
from gateway.api.models import list_models
from gateway.api.pages import console, dashboard, favicon, index, playground, static
from gateway.api.requests import get_request, list_requests
from gateway.api.responses import create_response
from gateway.api.route import dry_run
from gateway.api.tenants import get_tenant_limits, put_tenant_limits
from gateway.api.usage import get_usage
from gateway.edge.openapi import add_body_schemas, openapi_config, openapi_json
from gateway.infra.request_ids import add_request_id, ids
from gateway.lifespan import lifespan
from gateway.path.accounting import RequestContext
from gateway.path.embeddings import EmbeddingService
from gateway.vocab.errors import GatewayError, InternalError, InvalidRequest, NotFound, PayloadTooLarge, SettingsError
from gateway.vocab.settings import Settings
from router_core import ClassifierPipeline, registry
from router_core.classifiers.base import ENCODER
from router_core.embedder import Embedder

log = logging.getLogger("gateway")

JSON = "application/json"


def _log_failure(request: Request, err: GatewayError) -> None:
    """Requests to a routed endpoint that were refused before the request path (bad key, unreadable
    body) are logged here; the path logs every request that reaches it itself (`err.accounted`)."""
    if err.accounted:
        return
    handler = request.scope.get("route_handler")
    endpoint = handler.opt.get("accounted") if handler is not None else None
    gw = request.app.state.get("gateway")
    if endpoint is None or gw is None:
        return
    ctx = RequestContext(endpoint, request.state.get("principal"), *ids(request.scope))
    gw.path.accounting.record(ctx, err.status, err)


def _gateway_error(request: Request, exc: GatewayError) -> Response:
    _log_failure(request, exc)
    return Response(content=exc.to_json(), status_code=exc.status, media_type=JSON, headers=exc.headers)


def _http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    err: GatewayError
    if status == 413:
        err = PayloadTooLarge("Request body is larger than the configured limit (server.max_body_bytes)")
    elif status == 404:
        err = NotFound(f"No route for {request.method} {request.url.path}")
    elif status == 405:
        err = InvalidRequest(f"Method {request.method} is not allowed on {request.url.path}",
                             code="method_not_allowed")
        err.status = 405
    else:
        err = InvalidRequest(str(exc.detail))
        err.status = status
    _log_failure(request, err)
    return Response(content=err.to_json(), status_code=err.status, media_type=JSON, headers=exc.headers)


def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    err = InternalError("The gateway hit an internal error; it has been logged.")
    _log_failure(request, err)
    return Response(content=err.to_json(), status_code=500, media_type=JSON)


def classifier_context(settings: Settings) -> registry.Context:
    """What every classifier may read besides its options: the cut-offs and the encoder's device."""
    return registry.Context(settings.routing.cutoffs, settings.cache.device)


def classifier_options(settings: Settings, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The typed options of each classifier named (default: the configured ones), from
    `routing.classifier_options` over the old flat spelling; a bad one is a SettingsError naming it."""
    r = settings.routing
    try:
        return registry.configure(r.classifiers if names is None else names, r.classifier_options,
                                  msgspec.structs.asdict(r))
    except registry.OptionError as exc:
        raise SettingsError(f"config: setting '{exc.setting}': {exc}") from None


def difficulty_reads(settings: Settings) -> str:
    """The difficulty classifier's embedding, `auto` resolved: minilm where the encoder's device is a GPU."""
    options = classifier_options(settings, ["difficulty"])["difficulty"]
    return registry.difficulty_reads(options, classifier_context(settings))


def routing_needs_encoder(settings: Settings) -> bool:
    """Whether a configured classifier declares that it needs the transformer encoder (asked of the
    registry from its options, nothing built)."""
    context = classifier_context(settings)
    return any(ENCODER in registry.needs(name, options, context)
               for name, options in classifier_options(settings).items())


def build_embedder(settings: Settings) -> Embedder | None:
    """One encoder for the semantic cache and the classifiers that read it (loaded in the lifespan)."""
    c = settings.cache
    if (c.enabled and c.semantic) or routing_needs_encoder(settings):
        return Embedder(c.embedding_model, c.device, window_s=c.embedding_batch_window_s,
                        max_batch=c.embedding_max_batch, backend=c.embedding_backend,
                        max_batch_tokens=c.embedding_max_batch_tokens, cache_dir=settings.paths.model_cache_dir)
    return None


def build_pipeline(settings: Settings, embedder: Embedder | None) -> ClassifierPipeline:
    """Each configured classifier built from the registry and its typed options, in order."""
    r, context = settings.routing, classifier_context(settings)
    classifiers = []
    for name, options in classifier_options(settings).items():
        try:
            classifiers.append(registry.build(name, options, context, embedder))
        except registry.OptionError as exc:  # e.g. its head file: missing, unreadable, another embedding's
            where = registry.setting(name, exc.field, r.classifier_options.get(name)) if exc.field else exc.setting
            raise SettingsError(f"config: setting '{where}': {exc}") from None
    return ClassifierPipeline(classifiers, r.cutoffs, r.classifier_budget_s)


def create_app(settings: Settings) -> Litestar:
    embedder = build_embedder(settings)
    embeddings = EmbeddingService(settings, embedder)  # POST /v1/embeddings; reuses the cache's encoder
    handlers = [chat_completions, complete, list_models, health, create_key, list_keys, revoke_key, rotate_key,
                update_key_limits, put_tenant_limits, get_tenant_limits, get_usage, clear_cache, metrics, get_request,
                dry_run, post_feedback, list_requests, index, dashboard, playground, static, openapi_json,
                list_backends, console, favicon, create_response, create_embeddings]
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        dependencies={"gw": Provide(provide_gateway, sync_to_thread=False),
                      "principal": Provide(provide_principal)},
        state=State({"settings": settings, "embedder": embedder, "pipeline": build_pipeline(settings, embedder),
                     "embeddings": embeddings}),
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        request_max_body_size=settings.server.max_body_bytes,
        before_send=[add_request_id],
        logging_config=None,  # logging is the process's (gateway.infra.logs.configure, from the CLI), not Litestar's
        openapi_config=openapi_config(),
        on_startup=[add_body_schemas],
        on_shutdown=[embeddings.aclose],
        debug=False,
    )
