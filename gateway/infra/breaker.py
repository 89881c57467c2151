"""Circuit breakers, one per backend and process: a backend that keeps failing is taken out of its chains
for a cool-down, so requests go straight to the next backend instead of waiting on it; then one
request at a time probes it, and its first success puts it back.

    closed     normal; `failures` consecutive failures (errors, timeouts, 429, 5xx) open it
    open       skipped until `cooldown_s` has passed since it opened
    half_open  one probe request goes through; success closes it, failure opens it again

A request the upstream calls invalid (4xx other than 408/409/429) says nothing about the backend's
health and does not count. Each process keeps its own: it reflects what this process sees.
"""

from __future__ import annotations

import time
from typing import Literal

import msgspec

State = Literal["closed", "open", "half_open"]


class Circuit(msgspec.Struct):
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False
    opened_total: int = 0


class Breakers:
    def __init__(self, failures: int = 5, cooldown_s: float = 30.0) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self.circuits: dict[str, Circuit] = {}

    def _get(self, backend: str) -> Circuit:
        c = self.circuits.get(backend)
        if c is None:
            c = self.circuits[backend] = Circuit()
        return c

    def allow(self, backend: str) -> float | None:
        """None when the backend may be called now, else the seconds left of its cool-down."""
        c = self._get(backend)
        if c.state == "closed":
            return None
        left = c.opened_at + self.cooldown_s - time.monotonic()
        if c.state == "open" and left <= 0:
            c.state = "half_open"
        if c.state == "half_open" and not c.probing:
            c.probing = True
            return None
        return max(left, 0.0)

    def success(self, backend: str) -> None:
        c = self._get(backend)
        c.state, c.failures, c.probing = "closed", 0, False

    def failure(self, backend: str) -> None:
        c = self._get(backend)
        c.failures += 1
        if c.state == "half_open" or (c.state == "closed" and c.failures >= self.threshold):
            c.state, c.opened_at, c.probing = "open", time.monotonic(), False
            c.opened_total += 1

    def release(self, backend: str) -> None:
        """A probe that ended without a verdict (cancelled, or the request itself was bad)."""
        self._get(backend).probing = False

    def state(self, backend: str) -> State:
        c = self._get(backend)
        if c.state == "open" and time.monotonic() >= c.opened_at + self.cooldown_s:
            return "half_open"
        return c.state
