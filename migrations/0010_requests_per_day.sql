-- A rate limit on requests per day (LimitSet.rate_limit_rpd), for keys and tenants.
ALTER TABLE api_keys ADD COLUMN rate_limit_rpd integer;
ALTER TABLE tenant_limits ADD COLUMN rate_limit_rpd integer;
