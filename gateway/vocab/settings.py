"""Typed settings: `config.toml` (or `--config` / `SMR_CONFIG`) overlaid with environment variables.

Everything is a frozen msgspec Struct; `load_settings` is the only place in the gateway that reads the
config file or the environment, and it turns every problem into one `SettingsError` line naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from gateway.providers.catalog import PROVIDERS
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings_model import (  # noqa: F401  (re-exported: the settings' names live here)
    AuthSettings,
    Backend,
    CacheSettings,
    Capabilities,
    DatabaseSettings,
    LimitsSettings,
    LogSettings,
    PathSettings,
    ProviderType,
    RedisSettings,
    RoutingSettings,
    ServerSettings,
    Settings,
    TierSettings,
    Timeouts,
    TracingSettings,
)
from router_core.registry import OptionError, configure
from router_core.types import TIERS


def _validation_line(exc: msgspec.ValidationError, source: str) -> str:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.server.port`"; turn the path into a name.
    text = str(exc)
    if " - at `$." in text:
        message, _, path = text.partition(" - at `$.")
        path = path.rstrip("`")
        return f"{source}: setting '{path}': {message.replace('`', '')}"
    return f"{source}: {text.replace('`', '')}"


def parse_settings(data: Mapping[str, object], source: str = "config") -> Settings:
    try:
        settings = msgspec.convert(data, Settings, str_keys=True)
    except msgspec.ValidationError as exc:
        raise SettingsError(_validation_line(exc, source)) from None
    return settings


def apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    """Overlay secrets and URLs from the environment; resolve each backend's API key."""
    backends = []
    for b in settings.backends:
        changes: dict[str, object] = {}
        provider = PROVIDERS.get(b.provider)
        if provider is None:  # refused by validate(), with the known types
            backends.append(b)
            continue
        if env.get(provider.url_env):
            changes["base_url"] = env[provider.url_env]
        key_envs = (b.api_key_env,) if b.api_key_env else provider.key_env
        key_env = next((name for name in key_envs if env.get(name)), None)
        if key_env:
            changes["api_key"] = env[key_env]
        backends.append(msgspec.structs.replace(b, **changes) if changes else b)
    server = settings.server
    if env.get("SMR_HOST"):
        server = msgspec.structs.replace(server, host=env["SMR_HOST"])
    if env.get("SMR_PORT"):
        try:
            server = msgspec.structs.replace(server, port=int(env["SMR_PORT"]))
        except ValueError:
            raise SettingsError(f"environment: SMR_PORT must be an integer, got {env['SMR_PORT']!r}") from None
    auth = settings.auth
    if env.get("SMR_ADMIN_KEY"):
        auth = msgspec.structs.replace(auth, admin_key=env["SMR_ADMIN_KEY"])
    database = settings.database
    if env.get("DATABASE_URL"):
        database = msgspec.structs.replace(database, url=env["DATABASE_URL"])
    redis = settings.redis
    if env.get("REDIS_URL"):
        redis = msgspec.structs.replace(redis, url=env["REDIS_URL"])
    paths = settings.paths
    path_env = {"data_dir": "SMR_DATA_DIR", "migrations_dir": "SMR_MIGRATIONS_DIR", "libssl11_dir": "SMR_LIBSSL11_DIR"}
    changed = {field: env[name] for field, name in path_env.items() if env.get(name)}
    if paths.model_cache_dir is None and env.get("XDG_CACHE_HOME"):
        changed["model_cache_dir"] = str(Path(env["XDG_CACHE_HOME"]) / "smr")
    if changed:
        paths = msgspec.structs.replace(paths, **changed)
    log = settings.log
    if env.get("SMR_LOG_LEVEL"):
        log = msgspec.structs.replace(log, level=env["SMR_LOG_LEVEL"].upper())
    if env.get("SMR_LOG_FORMAT"):
        fmt = env["SMR_LOG_FORMAT"].lower()
        if fmt not in ("text", "json"):
            raise SettingsError(f"environment: SMR_LOG_FORMAT must be text or json, got {env['SMR_LOG_FORMAT']!r}")
        log = msgspec.structs.replace(log, format=fmt)
    tracing = settings.tracing
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        tracing = msgspec.structs.replace(tracing, otlp_endpoint=env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    if env.get("OTEL_SERVICE_NAME"):
        tracing = msgspec.structs.replace(tracing, service_name=env["OTEL_SERVICE_NAME"])
    routing, cache = _seed_env(settings.routing, settings.cache, env)
    return msgspec.structs.replace(
        settings, backends=backends, server=server, auth=auth, database=database, redis=redis, paths=paths, log=log,
        tracing=tracing, routing=routing, cache=cache,
    )


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    value = env.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"environment: {name} must be true or false (1/0, yes/no, on/off), got {env[name]!r}")


def _seed_env(routing: RoutingSettings, cache: CacheSettings,
              env: Mapping[str, str]) -> tuple[RoutingSettings, CacheSettings]:
    """The first version's settings: USE_LLM_ROUTER (the `llm` classifier first in the pipeline, or out of
    it), USE_SEMANTIC_CACHE (cache.semantic), CACHE_TTL_SECONDS (cache.ttl_s)."""
    llm = _flag(env, "USE_LLM_ROUTER")
    if llm is not None:
        rest = [c for c in routing.classifiers if c != "llm"]
        routing = msgspec.structs.replace(routing, classifiers=["llm", *rest] if llm else rest or ["heuristic"])
    semantic = _flag(env, "USE_SEMANTIC_CACHE")
    if semantic is not None:
        cache = msgspec.structs.replace(cache, semantic=semantic)
    if env.get("CACHE_TTL_SECONDS"):
        try:
            cache = msgspec.structs.replace(cache, ttl_s=int(env["CACHE_TTL_SECONDS"]))
        except ValueError:
            raise SettingsError("environment: CACHE_TTL_SECONDS must be a whole number of seconds, got "
                                f"{env['CACHE_TTL_SECONDS']!r}") from None
    return routing, cache


def validate(settings: Settings) -> Settings:
    names = [b.name for b in settings.backends]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SettingsError(f"config: setting 'backends': duplicate backend name {sorted(dupes)[0]!r}")
    reserved = {"auto"} | {f"smr/{t}" for t in TIERS}
    for b in settings.backends:
        if b.name in reserved:
            raise SettingsError(f"config: setting 'backends': name {b.name!r} is reserved")
        if b.input_price < 0 or b.output_price < 0:
            raise SettingsError(f"config: setting 'backends.{b.name}': prices must be >= 0")
        if b.max_output_tokens < 1:
            raise SettingsError(f"config: setting 'backends.{b.name}.max_output_tokens': must be >= 1")
        t = b.timeouts
        if min(t.connect_s, t.first_token_s, t.total_s) <= 0:
            raise SettingsError(f"config: setting 'backends.{b.name}.timeouts': every timeout must be > 0")
        if b.provider not in PROVIDERS:
            raise SettingsError(f"config: setting 'backends.{b.name}.provider': unknown provider type "
                                f"{b.provider!r} (known: {', '.join(PROVIDERS)})")
        if PROVIDERS[b.provider].default_base_url is None and not b.base_url:
            raise SettingsError(f"config: setting 'backends.{b.name}.base_url': required for {b.provider}")
    for tier in TIERS:
        chain = settings.tiers.chain(tier)
        if not chain:
            raise SettingsError(f"config: setting 'tiers.{tier}': needs at least one backend")
        for name in chain:
            if name not in names:
                raise SettingsError(f"config: setting 'tiers.{tier}': unknown backend {name!r}")
    for name in settings.tiers.cascade:
        if name not in TIERS[:-1]:
            raise SettingsError(f"config: setting 'tiers.cascade': {name!r} is not a tier with a tier above it "
                                f"(one of {', '.join(TIERS[:-1])})")
    r = settings.routing
    lo, hi = r.cutoffs
    if not 0.0 <= lo <= hi <= 1.0:
        raise SettingsError("config: setting 'routing.cutoffs': need 0 <= simple cut-off <= medium cut-off <= 1")
    if r.baseline not in names:
        raise SettingsError(f"config: setting 'routing.baseline': unknown backend {r.baseline!r}")
    if r.max_attempts < 1:
        raise SettingsError("config: setting 'routing.max_attempts': must be >= 1")
    if r.follow_up_tokens < 0 or not 0 <= r.follow_up_decay <= 1 or r.sticky_margin < 0 or r.conversation_lookback < 0:
        raise SettingsError("config: setting 'routing': need follow_up_tokens >= 0, 0 <= follow_up_decay <= 1, "
                            "sticky_margin >= 0, conversation_lookback >= 0")
    if any(not 0 < share <= 1 or shift < 1 for share, shift in r.budget_downgrade):
        raise SettingsError("config: setting 'routing.budget_downgrade': each step is [share in (0, 1], tiers >= 1]")
    if r.breaker_failures < 1 or r.breaker_cooldown_s <= 0:
        raise SettingsError("config: setting 'routing': need breaker_failures >= 1 and breaker_cooldown_s > 0")
    if not r.classifiers:
        raise SettingsError("config: setting 'routing.classifiers': needs at least one classifier")
    try:  # each classifier's typed options (and its name), as the pipeline will be built
        configure(r.classifiers, r.classifier_options, msgspec.structs.asdict(r))
    except OptionError as exc:
        raise SettingsError(f"config: setting '{exc.setting}': {exc}") from None
    if r.default_model != "auto" and r.default_model not in reserved and r.default_model not in names:
        raise SettingsError(f"config: setting 'routing.default_model': unknown model {r.default_model!r}")
    if settings.server.max_body_bytes < 1024:
        raise SettingsError("config: setting 'server.max_body_bytes': must be >= 1024")
    if settings.server.max_messages < 1 or settings.server.max_content_parts < 1:
        raise SettingsError("config: setting 'server': need max_messages >= 1 and max_content_parts >= 1")
    if settings.auth.enabled and not settings.auth.admin_key:
        raise SettingsError("auth.enabled is true but no admin key is set: export SMR_ADMIN_KEY "
                            "(or set auth.enabled = false for an open local gateway)")
    c = settings.cache
    if c.ttl_s < 1 or not 0.0 < c.similarity <= 1.0 or c.lookup_timeout_s <= 0:
        raise SettingsError("config: setting 'cache': need ttl_s >= 1, 0 < similarity <= 1, lookup_timeout_s > 0")
    if not -1.0 <= c.prefilter_similarity <= 1.0:
        raise SettingsError("config: setting 'cache.prefilter_similarity': need a cosine from -1 to 1 "
                            "(-1 lets every candidate through to MiniLM)")
    if not 0.0 < c.max_wrong_hit_rate < 1.0:
        raise SettingsError("config: setting 'cache.max_wrong_hit_rate': need 0 < max_wrong_hit_rate < 1")
    if c.embedding_batch_window_s < 0 or c.embedding_max_batch < 1 or c.embedding_max_batch_tokens < 1:
        raise SettingsError("config: setting 'cache': need embedding_batch_window_s >= 0, embedding_max_batch >= 1, "
                            "embedding_max_batch_tokens >= 1")
    lim = settings.limits
    if lim.redis_timeout_s <= 0:
        raise SettingsError("config: setting 'limits.redis_timeout_s': must be > 0")
    if lim.hold_margin_s < 0:
        raise SettingsError("config: setting 'limits.hold_margin_s': must be >= 0")
    lg = settings.log
    if lg.batch_size < 1 or lg.buffer_max < lg.batch_size or lg.flush_interval_s <= 0:
        raise SettingsError("config: setting 'log': need batch_size >= 1, buffer_max >= batch_size, "
                            "flush_interval_s > 0")
    if lg.spill_after_s <= 0 or lg.write_timeout_s <= 0:
        raise SettingsError("config: setting 'log': need spill_after_s > 0 and write_timeout_s > 0")
    judge = settings.learning.judge
    if judge is not None and judge not in names:
        raise SettingsError(f"config: setting 'learning.judge': unknown backend {judge!r}")
    return settings


def default_config_path() -> Path | None:
    p = Path("config.toml")
    return p if p.is_file() else None


def read_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The config file (explicit path, then SMR_CONFIG, then ./config.toml, else defaults) overlaid with
    the environment, not yet validated (`smr demo` adds its own admin key first)."""
    env = os.environ if env is None else env
    chosen: Path | None
    if path is not None:
        chosen = Path(path)
    elif env.get("SMR_CONFIG"):
        chosen = Path(env["SMR_CONFIG"])
    else:
        chosen = default_config_path()
    data: dict[str, object] = {}
    source = "defaults"
    if chosen is not None:
        source = str(chosen)
        try:
            data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file not found: {chosen}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{chosen}: invalid TOML: {exc}") from None
    return apply_env(parse_settings(data, source), env)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """`read_settings`, validated: every problem is one `SettingsError` line naming the setting."""
    return validate(read_settings(path, env))
