from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.libssl import fetched_libssl11
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
    """A private redis-stack-server (Redis with the query engine) on a free port, for this test run. Its
    libssl1.1 is fetched once for every run and worker (under .smr, as bench.libssl does) and linked where
    the server would fetch its own (`<base>/libssl11`), which tests hand to the gateways they start."""
    base = tmp_path_factory.mktemp("redis")
    lib = fetched_libssl11()
    if lib is not None:
        (base / "libssl11").symlink_to(lib.parents[2], target_is_directory=True)  # <libssl11>/usr/lib/<arch>
    server = EmbeddedRedis(base)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(fakes: ThreadedFakes, pg_url: str) -> Iterator[GatewayThread]:
    """An open gateway (no keys) in front of the fakes, logging every request to Postgres."""
    with GatewayThread(make_settings(fakes, db_url=pg_url)) as gw:
        yield gw


# The modules with the longest tests (minutes together: benchmarks' smoke runs, studies, trainings), first.
# Under `pytest -n 2 --dist worksteal` each worker takes a half of the list in order and an idle worker takes
# the not-yet-started end of the other's: with these first, what is left at the end is seconds-long tests and
# not a one-minute benchmark that keeps one worker busy while the other waits. Each module stays together.
SLOW_MODULES_FIRST = (
    "tests/integration/test_bench_smoke.py", "tests/integration/test_studies_smoke.py",
    "tests/integration/test_learning.py",
    "tests/integration/test_tails_smoke.py", "tests/integration/test_hotpath_smoke.py",
    "tests/integration/test_judged_learning.py", "tests/unit/test_train.py", "tests/integration/test_cli.py",
    "tests/integration/test_learning_bench_smoke.py",
)


# The frameworks' own environment (tests/frameworks/setup.sh: half a minute of pip on a fresh clone, much of it
# waiting on downloads and the disk) is built in the background from the start of a run that will need it, while
# other tests run; the fixture that needs it runs setup.sh itself, which waits for that one (a lock) and finds
# it done, or fails with pip's own output. One process starts it: the only one, or xdist's first worker.
FRAMEWORKS = "tests/integration/test_frameworks.py"
FRAMEWORKS_SETUP = Path(__file__).resolve().parent / "frameworks" / "setup.sh"
BACKGROUND_SETUP = pytest.StashKey[subprocess.Popen[bytes]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOW_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable: the rest keep order


def pytest_collection_finish(session: pytest.Session) -> None:
    """The tests to run are known (deselected ones gone): start the frameworks' setup if one of them needs it."""
    config = session.config
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    if worker != "gw0" or config.option.collectonly or not any(i.nodeid.startswith(FRAMEWORKS) for i in session.items):
        return
    # Niced: on a busy machine the tests running meanwhile keep the CPU, and pip takes what is left. A process
    # group of its own, so that an interrupted run stops pip as well as bash.
    config.stash[BACKGROUND_SETUP] = subprocess.Popen(["nice", "-n", "10", "bash", str(FRAMEWORKS_SETUP)],
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                      start_new_session=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing started here outlives the run: the background setup is waited for (stopped on an interrupt)."""
    setup = session.config.stash.get(BACKGROUND_SETUP, None)
    if setup is None:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED and setup.poll() is None:
        os.killpg(setup.pid, signal.SIGTERM)
    try:
        setup.wait(900)
    except subprocess.TimeoutExpired:
        os.killpg(setup.pid, signal.SIGKILL)
        setup.wait()
