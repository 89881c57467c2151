"""The authenticator when the key store is slow or gone (issue 13, defect 4): one short wait, then keys
seen before work from memory without a lookup per request; unknown keys get a quick 503."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from gateway.db.keys import KeyRecord
from gateway.path.auth import Authenticator
from gateway.vocab.apikeys import hash_key
from gateway.vocab.errors import AuthenticationFailed, AuthUnavailable

KEY = "smr_known"
RECORD = KeyRecord(id="id-1", name="app", tenant="acme", prefix="smr_known", created_at=dt.datetime.now(dt.UTC))


class Store:
    def __init__(self) -> None:
        self.calls = 0
        self.mode = "up"  # up | hang | refuse

    async def by_hash(self, digest: bytes) -> tuple[KeyRecord, bytes] | None:
        self.calls += 1
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "refuse":
            raise ConnectionRefusedError("no database")
        return (RECORD, digest) if digest == hash_key(KEY) else None


def bearer(key: str) -> str:
    return f"Bearer {key}"


async def test_frozen_store_costs_one_short_wait_then_no_lookups() -> None:
    store = Store()
    auth = Authenticator(True, "admin", store, cache_ttl_s=0.0, lookup_timeout_s=0.05, retry_s=30)
    assert (await auth.authenticate(bearer(KEY), None)).tenant == "acme"
    store.mode = "hang"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert (await auth.authenticate(bearer(KEY), None)).tenant == "acme"  # from memory, after one timeout
    assert loop.time() - t0 < 1.0 and not auth.store_up
    calls = store.calls
    for _ in range(50):
        assert (await auth.authenticate(bearer(KEY), None)).key_id == "id-1"
    assert store.calls == calls  # no lookup per request while the store is known to be down
    with pytest.raises(AuthUnavailable) as err:
        await auth.authenticate(bearer("smr_never_seen"), None)
    assert err.value.status == 503


async def test_store_is_probed_again_after_the_retry_interval() -> None:
    store = Store()
    auth = Authenticator(True, "admin", store, cache_ttl_s=0.0, lookup_timeout_s=0.05, retry_s=0.05)
    store.mode = "refuse"
    with pytest.raises(AuthUnavailable):
        await auth.authenticate(bearer(KEY), None)
    await asyncio.sleep(0.06)
    store.mode = "up"
    assert (await auth.authenticate(bearer(KEY), None)).tenant == "acme" and auth.store_up
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(bearer("smr_wrong"), None)
