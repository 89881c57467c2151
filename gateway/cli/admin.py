"""`smr migrate`, `smr keys ...`, `smr usage`: administration straight against the database."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from psycopg_pool import AsyncConnectionPool

from gateway.cli.local import settings_without_admin_key
from gateway.db.embedded import start_embedded
from gateway.db.keys import KeyStore, NewKey
from gateway.db.migrate import migrate, migrations_dir
from gateway.db.usage import GROUP_SQL, ShadowGroup, parse_time, shadow_usage, usage
from gateway.lifespan import open_database
from gateway.vocab.errors import GatewayError
from gateway.vocab.limits import LIMIT_FIELDS, LimitSet
from gateway.vocab.settings import Settings

T = TypeVar("T")
MONEY_COLUMNS = ("cost_usd", "baseline_cost_usd", "routing_savings_usd", "cache_savings_usd", "savings_usd",
                 "shadow_cost_usd", "shadow_savings_usd")


def dollars(usd: float) -> str:
    """Money as a person reads it: $0.000375, $12.50, -$0.0012 (to 1e-10 dollars, no float noise)."""
    text = f"{abs(usd):.10f}".rstrip("0")
    whole, _, cents = text.partition(".")
    text = f"{whole}.{cents.ljust(2, '0')}"
    return ("-$" if usd < 0 and text.strip("0.") else "$") + text


def money_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: dollars(v) if k in MONEY_COLUMNS and isinstance(v, int | float) else v for k, v in row.items()}


def admin_settings(config: str | None) -> Settings:
    """The settings for commands that work on the database or Redis straight: no admin key needed."""
    return settings_without_admin_key(config)[0]


async def with_pool(settings: Settings, fn: Callable[[AsyncConnectionPool], Awaitable[T]]) -> T:
    url = await open_database(settings)
    async with AsyncConnectionPool(url, min_size=1, max_size=2, open=False) as pool:
        return await fn(pool)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def print_new(new: NewKey) -> None:
    r = new.record
    print(f"id:      {r.id}\nname:    {r.name}\ntenant:  {r.tenant}\nexpires: {r.expires_at or 'never'}\n"
          f"key:     {new.key}\n(the key is shown once; only its hash is stored)")


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = admin_settings(args.config)

    async def run() -> int:
        url = settings.database.url
        if url is None:
            url, _ = await asyncio.to_thread(start_embedded, settings.paths.data_dir)
        assert url is not None
        applied = await migrate(url, migrations_dir(settings.paths.migrations_dir))
        print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
        return 0

    return asyncio.run(run())


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per limit field (LimitSet's): --rate-limit-rpm, --budget-usd, --allowed-tiers simple,medium ..."""
    for field in LIMIT_FIELDS:
        flag = "--" + field.replace("_", "-")
        if field == "allowed_tiers":
            parser.add_argument(flag, "--tiers", dest=field, help="comma-separated tiers this key may use")
        else:
            parser.add_argument(flag, dest=field)


def limits_from_args(args: argparse.Namespace) -> LimitSet:
    """The flags as a LimitSet, checked as the API checks them (a bad value exits with one line)."""
    raw: dict[str, Any] = {f: getattr(args, f) for f in LIMIT_FIELDS if getattr(args, f) is not None}
    if "allowed_tiers" in raw:
        raw["allowed_tiers"] = [t.strip() for t in raw["allowed_tiers"].split(",") if t.strip()]
    try:
        return msgspec.convert(raw, LimitSet, strict=False)  # strict=False: "5" is 5 on a command line
    except msgspec.ValidationError as exc:
        raise SystemExit(f"smr keys create: {str(exc).replace('`', '')}") from None


def cmd_keys(args: argparse.Namespace) -> int:
    settings = admin_settings(args.config)

    async def run(pool: AsyncConnectionPool) -> int:
        store = KeyStore(pool)
        if args.action == "create":
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=args.expires_in)) if args.expires_in else None
            limits = limits_from_args(args)
            print_new(await store.create(args.name, args.tenant, expires_at=expires, limits=limits))
        elif args.action == "list":
            rows = [msgspec.to_builtins(r) for r in await store.list(args.tenant)]
            print(table(rows, ["id", "name", "tenant", "prefix", "created_at", "expires_at", "revoked_at"]))
        elif args.action == "revoke":
            if await store.revoke(args.id) is None:
                print(f"no key with id {args.id}")
                return 1
            print(f"revoked {args.id}")
        elif args.action == "rotate":
            grace = settings.auth.rotation_grace_s if args.grace is None else args.grace
            new = await store.rotate(args.id, dt.timedelta(seconds=grace))
            if new is None:
                print(f"no active key with id {args.id}")
                return 1
            print_new(new)
        return 0

    return asyncio.run(with_pool(settings, run))


def cmd_usage(args: argparse.Namespace) -> int:
    settings = admin_settings(args.config)

    async def run(pool: AsyncConnectionPool) -> int:
        try:
            start, end = parse_time(args.start, "from"), parse_time(args.end, "to")
        except GatewayError as exc:
            print(exc.message)
            return 2
        if args.view == "shadow":
            shadow = await shadow_usage(pool, args.group_by, start, end, args.tenant)
            print(table([money_row(msgspec.to_builtins(g)) for g in shadow], list(ShadowGroup.__struct_fields__)))
            return 0
        groups = await usage(pool, args.group_by, start, end, args.tenant, learning=args.view == "learning")
        rows = [money_row(msgspec.to_builtins(g)) for g in groups]
        print(table(rows, ["group", "requests", "prompt_tokens", "completion_tokens", "cost_usd",
                           "baseline_cost_usd", "routing_savings_usd", "cache_savings_usd", "savings_usd",
                           "savings_pct", "cache_hit_rate", "p50_latency_ms",
                           "p95_latency_ms", "errors"]))
        return 0

    return asyncio.run(with_pool(settings, run))


def cmd_cache(args: argparse.Namespace) -> int:
    from gateway.cache.embedded import running_url as running_redis
    from gateway.cache.keys import tenant_tag
    from gateway.cache.redis_store import (
        EXACT_PREFIX,
        OLD_SEM_PREFIXES,
        SEM_PREFIX,
        RedisExactStore,
        RedisVectorIndex,
        connect,
    )

    settings = admin_settings(args.config)
    url, where = settings.redis.url, "REDIS_URL"
    if not url:
        url, where = running_redis(settings.paths.data_dir), "the embedded one the running gateway started"
    if not url:
        print(f"smr cache needs Redis: no REDIS_URL is set, and no running smr demo or smr serve started an "
              f"embedded Redis in {settings.paths.data_dir} (SMR_DATA_DIR). Start one (make demo), run this "
              f"with that gateway's SMR_DATA_DIR, or set REDIS_URL; or use DELETE /v1/cache with the admin key")
        return 2

    async def run() -> int:
        client = connect(url, 1.0)
        store, index = RedisExactStore(client), RedisVectorIndex(client)
        try:
            await client.ping()
            if args.action == "stats":
                exact = semantic = 0
                async for key in client.scan_iter(match="smr:*", count=1000):
                    if key.startswith(EXACT_PREFIX.encode()):
                        exact += 1
                    elif key.startswith(tuple(p.encode() for p in (SEM_PREFIX, *OLD_SEM_PREFIXES))):
                        semantic += 1
                print(f"redis:            {url} ({where})\nexact entries:    {exact}\n"
                      f"semantic entries: {semantic}")
            else:
                tag = tenant_tag(args.tenant) if args.tenant else None
                removed = await store.clear(tag) + await index.clear(tag)
                print(f"cleared {removed} entries" + (f" of tenant {args.tenant}" if args.tenant else ""))
        finally:
            await store.aclose()
        return 0

    return asyncio.run(run())


def add_commands(sub: Any) -> None:
    ca = sub.add_parser("cache", help="cache statistics, or clear it (all tenants or one)")
    ca.add_argument("--config")
    ca.add_argument("action", choices=["stats", "clear"])
    ca.add_argument("--tenant")
    ca.set_defaults(func=cmd_cache)

    m = sub.add_parser("migrate", help="apply database migrations")
    m.add_argument("--config")
    m.set_defaults(func=cmd_migrate)

    k = sub.add_parser("keys", help="manage API keys")
    k.add_argument("--config")
    ks = k.add_subparsers(dest="action", required=True)
    c = ks.add_parser("create")
    c.add_argument("--name", required=True)
    c.add_argument("--tenant", required=True)
    c.add_argument("--expires-in", type=float, help="seconds until the key expires")
    add_limit_flags(c)
    ls = ks.add_parser("list")
    ls.add_argument("--tenant")
    r = ks.add_parser("revoke")
    r.add_argument("id")
    ro = ks.add_parser("rotate")
    ro.add_argument("id")
    ro.add_argument("--grace", type=float, help="seconds the old key keeps working")
    k.set_defaults(func=cmd_keys)

    u = sub.add_parser("usage", help="print usage, cost and savings")
    u.add_argument("--config")
    u.add_argument("--group-by", choices=sorted(GROUP_SQL), default="day")
    u.add_argument("--from", dest="start")
    u.add_argument("--to", dest="end")
    u.add_argument("--tenant")
    u.add_argument("--view", choices=["served", "shadow", "learning"], default="served",
                   help="shadow: what routing would have cost for requests served in shadow mode")
    u.set_defaults(func=cmd_usage)
