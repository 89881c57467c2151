-- Tokens-per-minute limits: the API takes up to 10^12 (gateway.limits.TPM); `integer` stopped at 2^31 - 1
-- and a larger limit was a 500. Requests-per-minute (at most 10^9) fit `integer`.

ALTER TABLE api_keys ALTER COLUMN rate_limit_tpm TYPE bigint;
ALTER TABLE tenant_limits ALTER COLUMN rate_limit_tpm TYPE bigint;
