-- Rate limits and budgets per key and per tenant (the tighter of the two applies).

ALTER TABLE api_keys ADD COLUMN rate_limit_tpm integer;
ALTER TABLE api_keys ADD COLUMN budget_period text NOT NULL DEFAULT 'total'
    CHECK (budget_period IN ('day', 'month', 'total'));

CREATE TABLE tenant_limits (
    tenant         text PRIMARY KEY,
    rate_limit_rpm integer,
    rate_limit_tpm integer,
    budget_usd     double precision,
    budget_period  text NOT NULL DEFAULT 'total' CHECK (budget_period IN ('day', 'month', 'total')),
    allowed_tiers  text[],
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Rebuilding a key's or a tenant's spend from the log (when Redis has lost it) reads these.
CREATE INDEX request_log_key_ts ON request_log (key_id, ts);
