"""Callers their rate limits just refused, remembered until their Retry-After (in this process, bounded).

The request path starts the semantic search before admission has answered (in the same write as the admission
script); for a caller refused a moment ago it does not, so a client hammering past its limit costs one admission
script per request, not a KNN search too."""

from __future__ import annotations

import time

from gateway.path.auth import Principal
from gateway.vocab.errors import RateLimited

KEPT = 10_000  # callers remembered (the oldest forgotten first)
LONGEST_S = 60.0  # a Retry-After is believed up to this


class RecentRefusals:
    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._until: dict[str, float] = {}  # caller -> until when (monotonic)

    @staticmethod
    def caller(principal: Principal) -> str:
        """Whose rate windows refused it: the key's lineage (its rotations share them), the key, or the tenant."""
        return principal.lineage or principal.key_id or principal.tenant

    def lately(self, principal: Principal) -> bool:
        caller = self.caller(principal)
        until = self._until.get(caller)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._until[caller]
        return False

    def note(self, principal: Principal, exc: RateLimited) -> None:
        caller = self.caller(principal)
        try:
            wait_s = float((exc.headers or {}).get("retry-after", 1))
        except ValueError:
            wait_s = 1.0
        if caller not in self._until and len(self._until) >= self.kept:
            del self._until[next(iter(self._until))]
        self._until[caller] = time.monotonic() + min(max(wait_s, 0.0), LONGEST_S)
