"""The change feed (key and tenant changes over Redis pub/sub) is closed by the gateway when it stops,
before the Redis client under it: a clean shutdown says nothing about a lost subscription."""

from __future__ import annotations

import logging

import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, make_settings


def test_a_clean_stop_closes_the_change_feed_quietly(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(fakes, db_url=pg_url, redis={"url": redis_stack.url})
    caplog.set_level(logging.INFO)
    with GatewayThread(settings):
        pass
    feed_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("changes:")]
    assert not [m for m in feed_lines if "not subscribed" in m], feed_lines
