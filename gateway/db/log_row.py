"""One request's row in the request log: its fields are the table's columns (a new column is a field here and
a migration), and how a batch of rows goes into the table: one JSON array per statement, each value read back
by `jsonb_to_recordset` through its column type's input function (`insert_statement`, `json_arrays`)."""

from __future__ import annotations

import asyncio
import datetime as dt

import msgspec


class LogRow(msgspec.Struct, frozen=True):
    request_id: str
    ts: dt.datetime
    endpoint: str
    cache_status: str
    latency_ms: float
    http_status: int
    key_id: str | None = None
    tenant: str | None = None
    requested_model: str | None = None
    tier: str | None = None
    classifier: str | None = None
    score: float | None = None
    backend: str | None = None
    provider: str | None = None
    attempts: int = 0
    fallback_errors: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    savings_usd: float = 0.0
    usage_estimated: bool = False
    ttft_ms: float | None = None
    stream: bool = False
    error_type: str | None = None
    prompt: str | None = None
    explanation: str | None = None  # the response's `smr` object, as JSON
    cache_savings_usd: float = 0.0  # the part of savings_usd a cache hit saved (the rest: routing)
    shadow_tier: str | None = None  # shadow mode: what routing would have chosen, and its price
    shadow_backend: str | None = None
    shadow_cost_usd: float | None = None
    cascade_reason: str | None = None  # why a cheap answer went to the next tier
    client_request_id: str | None = None  # the client's x-request-id, when it sent one


COLUMNS = LogRow.__struct_fields__
_encoder = msgspec.json.Encoder()

# The table's column types, read when the writer connects.
COLUMN_TYPES = ("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'request_log'::regclass AND attnum > 0 AND NOT attisdropped")
_MAX_STATEMENT_BYTES = 64 * 2**20  # rows past this much JSON go in another statement (jsonb stops at 256 MiB)


def insert_statement(types: dict[str, str]) -> str:
    """The batch insert for the table's column `types`: every value goes through its column type's input
    function, as COPY's text format did; a JSON column is read as text and cast (JSON holds it as a string)."""
    def read_as(c: str) -> str:  # a column the table lacks (a migration not run): the insert names it and fails
        return "text" if types.get(c, "text") in ("json", "jsonb") else types.get(c, "text")

    return (f"INSERT INTO request_log ({', '.join(COLUMNS)}) "
            f"SELECT {', '.join(f'{c}::{types[c]}' if read_as(c) != types.get(c, 'text') else c for c in COLUMNS)} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS r({', '.join(f'{c} {read_as(c)}' for c in COLUMNS)}) "
            "ON CONFLICT (request_id) DO NOTHING")


async def json_arrays(rows: list[LogRow]) -> list[str]:
    """The rows as JSON arrays of at most `_MAX_STATEMENT_BYTES` each (a longer row alone), encoded in C; the
    loop is let go every 100 rows (a batch of long prompts is CPU work)."""
    arrays: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for i, row in enumerate(rows):
        if i % 100 == 99:
            await asyncio.sleep(0)
        data = _encoder.encode(row)
        if current and size + len(data) > _MAX_STATEMENT_BYTES:
            arrays.append(current)
            current, size = [], 0
        current.append(data)
        size += len(data) + 1
    if current:
        arrays.append(current)
    return [(b"[" + b",".join(a) + b"]").decode() for a in arrays]
