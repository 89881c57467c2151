"""Whether a process still runs on this machine (for files that name the process that wrote them).

A process killed with -9 stays in the process table as a zombie until its parent reaps it (a supervisor
may take its time, or never do it); `kill(pid, 0)` still succeeds on it. A zombie runs no code, so it
counts as dead here: its files are free to be taken over."""

from __future__ import annotations

import os

import psutil


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it runs, as another user (or is that user's zombie)
        pass
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # cannot tell (access denied): it exists, so it may run
        return True
