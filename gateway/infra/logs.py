"""Process logging: text for people or one JSON object per line (log.format), and the access line.

`configure(log_settings)` sets up the root logger once, from the CLI. `AccessLog` writes one line per
finished request (`log.access`) with what an operator greps for and nothing secret: the key's prefix,
never the key; the prompt only when log.prompts is on.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import msgspec

from gateway.db.log_row import LogRow
from gateway.vocab.settings import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_encode = msgspec.json.Encoder().encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's `fields` (access lines)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return _encode(out).decode()


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("httpx", "httpx2", "httpcore", "google_genai", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class AccessLog:
    """`record(row, key_prefix)`: the access line of a finished request, at INFO on `gateway.access`."""

    def __init__(self, settings: LogSettings) -> None:
        self.log = logging.getLogger("gateway.access")
        self.prompts = settings.prompts

    def record(self, row: LogRow, key_prefix: str | None) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "request_id": row.request_id, "client_request_id": row.client_request_id, "tenant": row.tenant,
            "key_prefix": key_prefix, "route": row.endpoint, "model_requested": row.requested_model,
            "tier": row.tier, "model": row.backend, "cache": row.cache_status, "status": row.http_status,
            "latency_ms": row.latency_ms, "cost_usd": round(row.cost_usd, 10), "error": row.error_type}
        if self.prompts and row.prompt is not None:
            fields["prompt"] = row.prompt
        self.log.info("%s %s %d %s %s %.1fms $%.8f", row.request_id, row.endpoint, row.http_status,
                      row.tier or "-", row.backend or "-", row.latency_ms, row.cost_usd, extra={"fields": fields})
