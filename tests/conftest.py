from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gateway.cache.embedded import EmbeddedRedis
from gateway.fakes.server import ThreadedFakes
from tests.helpers import GatewayThread, make_settings
from tests.scratch import ScratchDatabase

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def fakes() -> Iterator[ThreadedFakes]:
    f = ThreadedFakes().start_in_thread()
    yield f
    f.stop_thread()


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "fakes" in request.fixturenames:
        f: ThreadedFakes = request.getfixturevalue("fakes")
        for s in (*f.servers, *f.extra):
            s.behaviour = type(s.default)(**{k: getattr(s.default, k) for k in s.default.__struct_fields__})


@pytest.fixture(scope="session")
def database() -> Iterator[ScratchDatabase]:
    db = ScratchDatabase()
    yield db
    db.drop()


@pytest.fixture(scope="session")
def pg_url(database: ScratchDatabase) -> str:
    return database.url


@pytest.fixture(scope="session")
def redis_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A private redis-stack-server (Redis with the query engine) on a free port, for this test run."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    """An open gateway (no keys) in front of the fakes, logging every request to Postgres."""
    with GatewayThread(make_settings(fakes, db_url=pg_url)) as gw:
        yield gw
