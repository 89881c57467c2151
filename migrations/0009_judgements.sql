-- Sampled second opinions (gateway.learning): a served `auto` answer compared with the reference tier's.
-- verdict: 'served' (the served answer is better), 'reference' (the reference's is), 'tie'.
-- The prompt is kept here only for sampled requests, and only while learning is on.
CREATE TABLE judgements (
    request_id        text PRIMARY KEY,
    ts                timestamptz NOT NULL DEFAULT now(),
    tenant            text,
    tier              text NOT NULL,
    classifier        text,
    score             double precision,
    backend           text NOT NULL,
    reference_tier    text NOT NULL,
    reference_backend text NOT NULL,
    verdict           text NOT NULL CHECK (verdict IN ('served', 'reference', 'tie')),
    judge             text NOT NULL,
    cost_usd          double precision NOT NULL DEFAULT 0,
    prompt            text
);
CREATE INDEX judgements_tenant_ts ON judgements (tenant, ts);
