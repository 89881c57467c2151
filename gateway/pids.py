"""Whether a process still runs on this machine (for files that name the process that wrote them)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True
