"""Which link the request path's Redis commands travel on (`gateway.lifespan.hot_link`): the multiplexed
`RespClient` on the URL's server, database and credentials, or redis-py itself over TLS. No server needed."""

from __future__ import annotations

import sys

import pytest
import redis.asyncio as aioredis

from gateway.infra.redis_link import PyRedisLink
from gateway.infra.resp import RespClient
from gateway.lifespan import hot_link


def test_a_plain_url_gets_the_multiplexed_client_with_its_database_and_credentials() -> None:
    client = aioredis.Redis.from_url("redis://bob:secret@cache.internal:6390/3", socket_timeout=0.4,
                                     socket_connect_timeout=2.0)
    link = hot_link(client)
    assert isinstance(link, RespClient)
    assert (link.host, link.port, link.db, link.username, link.password) == ("cache.internal", 6390, 3, "bob", "secret")
    assert (link.connect_timeout_s, link.reply_timeout_s) == (2.0, 0.4)


def test_a_unix_socket_is_kept() -> None:
    link = hot_link(aioredis.Redis.from_url("unix:///run/redis/redis.sock?db=2"))
    assert isinstance(link, RespClient) and (link.path, link.db) == ("/run/redis/redis.sock", 2)


def test_tls_stays_on_redis_py() -> None:
    client = aioredis.Redis.from_url("rediss://cache.internal:6390/0")
    link = hot_link(client)
    assert isinstance(link, PyRedisLink) and link.client is client


def test_without_hiredis_the_client_itself_carries_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # bench.server_stack measures stacks with hiredis blocked; a gateway there must still start.
    monkeypatch.delitem(sys.modules, "gateway.infra.resp")
    monkeypatch.setitem(sys.modules, "hiredis", None)  # `import hiredis` raises ImportError
    client = aioredis.Redis.from_url("redis://cache.internal:6390/0")
    link = hot_link(client)
    assert isinstance(link, PyRedisLink) and link.client is client
