"""One libssl1.1 for every embedded Redis a benchmark's gateways start.

Each gateway with the cache on and no REDIS_URL starts a redis-stack-server in its data folder, and
fetches Debian 11's libssl1.1 there first (an apt download: seconds to minutes). A benchmark gives its
gateways fresh folders, so it fetched it once per folder; `share_libssl11()` fetches it once into the
repository's own data folder (`.smr`, as `smr serve` run there does) and points SMR_LIBSSL11_DIR at it
for every process the benchmark starts afterwards.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

from bench.procs import ROOT
from gateway.cache.embedded import EmbeddedRedisError, libssl11_dir


def fetched_libssl11() -> Path | None:
    """The folder of a libssl1.1 fetched once under `.smr` (two processes at once: one fetches, the other
    waits for it); None where it cannot be fetched."""
    base = ROOT / ".smr"
    base.mkdir(exist_ok=True)
    with open(base / ".libssl11.lock", "w") as lock:  # two benchmarks at once (pytest -n 2): one fetches
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return libssl11_dir(base)
        except (EmbeddedRedisError, OSError, subprocess.SubprocessError):
            return None


def share_libssl11() -> str | None:
    """Set SMR_LIBSSL11_DIR (unless already set) to the libssl1.1 fetched once under `.smr`, for every process
    this one starts; the folder, or None where it cannot be fetched (each gateway then tries itself, and says
    why it runs without Redis)."""
    if not os.environ.get("SMR_LIBSSL11_DIR"):
        lib = fetched_libssl11()
        if lib is None:
            return None
        os.environ["SMR_LIBSSL11_DIR"] = str(lib)
    return os.environ["SMR_LIBSSL11_DIR"]
