-- Shadow mode: what routing would have chosen for a request served as asked, priced on its tokens.
ALTER TABLE request_log ADD COLUMN shadow_tier text;
ALTER TABLE request_log ADD COLUMN shadow_backend text;
ALTER TABLE request_log ADD COLUMN shadow_cost_usd double precision;
-- Cascades: why a cheap tier's answer was escalated (both calls are in cost_usd and the token counts).
ALTER TABLE request_log ADD COLUMN cascade_reason text;

-- Ratings of answers (POST /v1/feedback): the latest rating of a request wins.
CREATE TABLE feedback (
    request_id  text PRIMARY KEY,
    tenant      text,
    key_id      uuid,
    rating      smallint NOT NULL CHECK (rating BETWEEN -1 AND 1),
    comment     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_tenant ON feedback (tenant, created_at);
