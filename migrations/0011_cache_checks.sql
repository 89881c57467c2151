-- Checked semantic-cache answers (gateway.learning): a sampled hit's cached answer against a fresh answer
-- to the new prompt, or a sampled near miss's (a candidate just under the threshold) against the fresh
-- answer the client got. The semantic cache learns its acceptance threshold from these rows
-- (gateway/cache/acceptance.py). kind: 'hit' or 'near_miss'; threshold: the one in force at the time.
CREATE TABLE cache_checks (
    request_id  text PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    tenant      text,
    kind        text NOT NULL CHECK (kind IN ('hit', 'near_miss')),
    similarity  double precision NOT NULL,
    threshold   double precision NOT NULL,
    guard_score double precision,
    verdict     text NOT NULL CHECK (verdict IN ('right', 'wrong', 'unsure')),
    judge       text NOT NULL,
    cost_usd    double precision NOT NULL DEFAULT 0
);
CREATE INDEX cache_checks_ts ON cache_checks (ts);
