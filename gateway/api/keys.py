"""Admin endpoints for API keys: create, list (with each key's spend in its budget period), revoke, rotate.
All need the admin key.

A change is announced to every gateway process sharing the Redis (`gateway.infra.changes`). A rotated key keeps
its predecessor's lineage, and with it the rate windows and the spend (`gateway.db.keys`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from litestar import Request, Response, delete, get, patch, post
from msgspec import Meta

from gateway.api.deps import admin_only, decode_body, label_param
from gateway.db.keys import KeyListing, KeyStore, NewKey
from gateway.edge.openapi import with_body
from gateway.gateway import Gateway
from gateway.vocab.errors import InvalidRequest, NotFound, PermissionDenied
from gateway.vocab.limits import LIMIT_FIELDS, LimitSet
from gateway.vocab.wire import decode_json_object, encoder, validation_error

# Printable text only (no NUL or other control characters), of a sensible length.
Label = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
TEN_YEARS_S = 10 * 365 * 86_400.0


class KeyCreate(LimitSet, frozen=True, kw_only=True):
    """A new key: its name, tenant and expiry, and any of the limit fields (LimitSet's)."""

    name: Label
    tenant: Label
    expires_at: dt.datetime | None = None
    expires_in_s: Annotated[float, Meta(gt=0, le=TEN_YEARS_S)] | None = None

    @property
    def limits(self) -> LimitSet:
        return LimitSet(**{f: getattr(self, f) for f in LIMIT_FIELDS})


class RotateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    grace_s: Annotated[float, Meta(ge=0, le=TEN_YEARS_S)] | None = None


class KeyList(msgspec.Struct, frozen=True):
    data: list[KeyListing]
    object: str = "list"


def _store(gw: Gateway) -> KeyStore:
    if gw.keys is None:
        raise PermissionDenied("API keys need the database, which is disabled")
    return gw.keys


def _created(new: NewKey) -> Response:
    body = {"key": new.key, **msgspec.to_builtins(new.record)}
    return Response(encoder.encode(body), status_code=201, media_type="application/json")


@post("/v1/keys", status_code=201, guards=[admin_only], operation_class=with_body(KeyCreate))
async def create_key(request: Request, gw: Gateway) -> Response:
    store = _store(gw)
    body = decode_body(await request.body(), KeyCreate)
    if not body.name.strip() or not body.tenant.strip():
        raise InvalidRequest("'name' and 'tenant' must not be empty", param="name")
    expires = body.expires_at
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    if expires is not None and expires <= dt.datetime.now(dt.UTC):
        raise InvalidRequest("'expires_at' must be in the future", param="expires_at", code="invalid_value")
    if body.expires_in_s is not None:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.expires_in_s)
    new = await store.create(body.name, body.tenant, expires_at=expires, limits=body.limits)
    return _created(new)


@patch("/v1/keys/{key_id:str}", status_code=200, guards=[admin_only], operation_class=with_body(LimitSet))
async def update_key_limits(request: Request, gw: Gateway, key_id: str) -> Response:
    """Change a key's limits: any of LimitSet's fields (null removes that limit). Every process sharing the
    Redis applies it at once (`gateway.infra.changes`); without Redis, others see it within auth.key_cache_ttl_s."""
    store = _store(gw)
    raw = decode_json_object(await request.body())
    if raw.get("allowed_tiers") == []:  # not "every tier", which is null
        raise InvalidRequest("'allowed_tiers' must name at least one tier (null: every tier)", param="allowed_tiers",
                             code="invalid_value")
    unknown = set(raw) - set(LIMIT_FIELDS)
    if unknown:
        raise InvalidRequest(f"only the limit fields can be changed ({', '.join(LIMIT_FIELDS)}); "
                             f"got {', '.join(sorted(unknown))}", param=sorted(unknown)[0], code="invalid_value")
    try:
        checked = msgspec.convert({k: v for k, v in raw.items() if v is not None}, LimitSet)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    changes = {f: (getattr(checked, f) if raw[f] is not None else None) for f in raw}
    if changes.get("budget_period", "") is None:
        changes["budget_period"] = "total"
    record = await store.set_limits(key_id, changes)
    if record is None:
        raise NotFound(f"No API key with id {key_id!r}", param="id")
    await gw.changes.announce("key", record.id)
    return Response(encoder.encode(record), media_type="application/json")


@get("/v1/keys", guards=[admin_only])
async def list_keys(request: Request, gw: Gateway) -> Response:
    store = _store(gw)
    tenant = label_param(request, "tenant")
    keys = await store.listing(tenant, dt.datetime.now(dt.UTC))
    return Response(encoder.encode(KeyList(keys)), media_type="application/json")


@delete("/v1/keys/{key_id:str}", status_code=200, guards=[admin_only])
async def revoke_key(gw: Gateway, key_id: str) -> Response:
    store = _store(gw)
    record = await store.revoke(key_id)
    if record is None:
        raise NotFound(f"No API key with id {key_id!r}", param="id")
    await gw.changes.announce("key", record.id)
    return Response(encoder.encode(record), media_type="application/json")


@post("/v1/keys/{key_id:str}/rotate", status_code=201, guards=[admin_only],
      operation_class=with_body(RotateRequest))
async def rotate_key(request: Request, gw: Gateway, key_id: str) -> Response:
    store = _store(gw)
    body = decode_body(await request.body(), RotateRequest)
    grace = gw.settings.auth.rotation_grace_s if body.grace_s is None else body.grace_s
    new = await store.rotate(key_id, dt.timedelta(seconds=grace))
    if new is None:
        raise NotFound(f"No active API key with id {key_id!r}", param="id")
    await gw.changes.announce("key", key_id)  # its grace ends when it says, in every process
    return _created(new)
