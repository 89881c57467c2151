"""The OpenAPI document the app publishes at `/openapi.json`. Litestar generates it from the route
handlers; the request bodies, which the handlers read raw (to keep the fields they do not interpret
for the upstream), are declared with `with_body(Struct)` from the wire Structs' JSON schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody

from gateway import __version__

_REF = "#/components/schemas/{name}"


class BodyOperation(Operation):
    """An operation whose JSON request body is described by `struct` (see `with_body`)."""

    components: ClassVar[dict[str, Any]] = {}


def with_body(struct: type[msgspec.Struct]) -> type[Operation]:
    """The `operation_class` of a handler whose body is `struct`, read by the handler itself."""
    (schema,), components = msgspec.json.schema_components([struct], ref_template=_REF)

    @dataclass
    class StructBody(BodyOperation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(content={"application/json": OpenAPIMediaType(schema=schema)},  # type: ignore[arg-type]
                                            required=True)

    StructBody.components = components
    return StructBody


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(title="Smart Model Router", version=__version__, path="/openapi",
                         render_plugins=[JsonRenderPlugin(path="/openapi.json")])


def add_body_schemas(app: Litestar) -> None:
    """On start-up: the Structs the bodies refer to, added to the components Litestar generated (it
    replaces any given in the config with its own registry)."""
    components: dict[str, Any] = {}
    for route in app.routes:
        for h in getattr(route, "route_handlers", ()):
            op = getattr(h, "operation_class", None)
            if isinstance(op, type) and issubclass(op, BodyOperation):
                components.update(op.components)
    schema = app.openapi_schema
    if schema.components.schemas is None:
        schema.components.schemas = {}
    schema.components.schemas.update(components)


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request) -> Response:
    """The schema at the conventional path (Litestar's own pages live under /openapi; / is the dashboard)."""
    return Response(msgspec.json.encode(request.app.openapi_schema.to_schema()),
                    media_type="application/vnd.oai.openapi+json")
