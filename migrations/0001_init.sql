-- Smart Model Router: API keys and the request log.

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name           text NOT NULL,
    tenant         text NOT NULL,
    prefix         text NOT NULL,
    key_hash       bytea NOT NULL UNIQUE,          -- SHA-256 of the raw key; the raw key is never stored
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    rotated_from   uuid REFERENCES api_keys (id),
    allowed_tiers  text[],
    budget_usd     double precision,
    rate_limit_rpm integer
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

CREATE TABLE request_log (
    id                 bigserial PRIMARY KEY,
    request_id         text NOT NULL UNIQUE,
    ts                 timestamptz NOT NULL,
    key_id             uuid,
    tenant             text,
    endpoint           text NOT NULL,
    requested_model    text,
    tier               text,
    classifier         text,
    score              real,
    backend            text,
    provider           text,
    attempts           integer NOT NULL DEFAULT 0,
    fallback_errors    text,
    cache_status       text NOT NULL,
    prompt_tokens      integer NOT NULL DEFAULT 0,
    completion_tokens  integer NOT NULL DEFAULT 0,
    cost_usd           double precision NOT NULL DEFAULT 0,
    baseline_cost_usd  double precision NOT NULL DEFAULT 0,
    savings_usd        double precision NOT NULL DEFAULT 0,
    usage_estimated    boolean NOT NULL DEFAULT false,
    latency_ms         real NOT NULL,
    ttft_ms            real,
    stream             boolean NOT NULL DEFAULT false,
    http_status        integer NOT NULL,
    error_type         text,
    prompt             text
);
CREATE INDEX request_log_ts ON request_log (ts);
CREATE INDEX request_log_tenant_ts ON request_log (tenant, ts);
