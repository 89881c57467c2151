"""The pages' tests drive Debian's chromium with Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Screenshots of the pages as the tests saw them: tests/artifacts/ (SMR_TEST_ARTIFACTS).
ARTIFACTS = Path(os.environ.get("SMR_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))


@contextmanager
def launched() -> Iterator[Any]:
    """A headless chromium, closed on the way out."""
    # Not a skip: a missing browser fails the suite, saying how to install it (`make test` does).
    assert Path(CHROMIUM).exists(), "no chromium: apt-get install -y chromium (make test installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
