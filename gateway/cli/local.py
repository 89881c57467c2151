"""What the command line finds on this machine: the settings without the admin key, and the running
`smr demo` (or gateway) whose servers live in the data folder (`paths.data_dir`).

`smr demo` records itself in `<data_dir>/demo.json` (its pid and URL) while it runs; the embedded
redis-stack-server a gateway starts records its URL beside its pid file (gateway/cache/embedded.py), and
the embedded PostgreSQL names its socket in `postmaster.pid` (gateway/db/embedded.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec

from gateway.infra.pids import pid_alive
from gateway.vocab.settings import Settings, read_settings, validate

DEMO_FILE = "demo.json"


class DemoRecord(msgspec.Struct, frozen=True):
    pid: int
    url: str  # the gateway, e.g. http://127.0.0.1:8080


def settings_without_admin_key(config: str | None) -> tuple[Settings, bool]:
    """The settings, validated in all but the admin key, and whether that key is missing. The admin key
    guards the HTTP API; commands that work on the database or Redis straight do not need it."""
    raw = read_settings(config)
    missing = raw.auth.enabled and not raw.auth.admin_key
    if missing:
        validate(msgspec.structs.replace(raw, auth=msgspec.structs.replace(raw.auth, admin_key="(not set)")))
        return raw, True
    return validate(raw), False


def _demo_path(settings: Settings) -> Path:
    return Path(settings.paths.data_dir).resolve() / DEMO_FILE


def record_demo(settings: Settings, host: str, port: int) -> Path:
    """Write the running demo's record; the caller removes it (`forget_demo`) when the demo ends."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    path = _demo_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{reach}:{port}"}) + "\n")
    return path


def forget_demo(settings: Settings) -> None:
    path = _demo_path(settings)
    try:
        if running_demo(settings) is None or json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink(missing_ok=True)
    except (OSError, ValueError):
        pass


def running_demo(settings: Settings) -> DemoRecord | None:
    """The `smr demo` recorded in the data folder, when its process still runs."""
    try:
        record = msgspec.json.decode(_demo_path(settings).read_bytes(), type=DemoRecord)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return record if pid_alive(record.pid) else None
