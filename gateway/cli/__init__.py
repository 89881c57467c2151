"""`smr`: the one command-line entry point. One module per command group:

    serve.py    smr serve, smr demo
    admin.py    smr migrate, smr keys, smr usage, smr cache
    router.py   smr train, smr classify, smr calibrate, smr eval (scoring.py: what they share)
    from_logs.py  smr calibrate --from-logs, smr train --from-logs
    doctor.py   smr doctor
    local.py    what they find on this machine: the running demo's record, settings without the admin key
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import admin, doctor, router, serve
from gateway.infra.logs import configure
from gateway.vocab.errors import SettingsError
from gateway.vocab.settings import LogSettings, read_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smr", description="Smart Model Router: an OpenAI-compatible LLM gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_commands(sub)
    admin.add_commands(sub)
    router.add_commands(sub)
    doctor.add_commands(sub)
    return parser


def _log_settings(config: str | None) -> LogSettings:
    """The log section of the settings (SMR_LOG_LEVEL, SMR_LOG_FORMAT override it); the defaults when the
    settings cannot be read yet (the command then says why)."""
    try:
        return read_settings(config).log
    except SettingsError:
        return LogSettings()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(_log_settings(getattr(args, "config", None)))
    try:
        result: int = args.func(args)
        return result
    except SettingsError as exc:
        print(f"smr: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
