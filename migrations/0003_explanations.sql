-- Why each request was routed as it was (the response's `smr` object), for GET /v1/requests/{id}.
ALTER TABLE request_log ADD COLUMN explanation jsonb;
