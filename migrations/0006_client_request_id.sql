-- The client's own x-request-id (when it sent one), beside the gateway's unique request_id.
ALTER TABLE request_log ADD COLUMN client_request_id text;
CREATE INDEX request_log_client_request_id ON request_log (client_request_id) WHERE client_request_id IS NOT NULL;
