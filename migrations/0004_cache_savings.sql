-- Honest savings: what a cache hit saved against the same model without the cache, apart from what
-- routing saved against the baseline model. savings_usd stays the sum of the two.
ALTER TABLE request_log ADD COLUMN cache_savings_usd double precision NOT NULL DEFAULT 0;
