"""PostgreSQL: migrations, the embedded server, API keys, the request log writer, usage queries."""
