"""`smr doctor` (issue 16) on a healthy setup and on a broken one: each problem printed with its fix,
exit status 0 only when all is well."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from gateway.cache.embedded import EmbeddedRedis
from gateway.db.migrate import migrate, migrations_dir
from gateway.fakes.server import ThreadedFakes, free_port
from tests.integration.test_cli import CLEAN_ENV, ROOT


def doctor(config: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "doctor", "--config", str(config), *extra],
                          cwd=ROOT, env={**CLEAN_ENV, "SMR_ADMIN_KEY": "doc-admin", **env}, capture_output=True,
                          text=True, timeout=600)


def write_config(path: Path, fakes: ThreadedFakes, ollama_model: str = "granite4:350m",
                 migrations: Path | None = None) -> Path:
    path.write_text(f"""
[paths]
{f'migrations_dir = "{migrations}"' if migrations else ''}

[tiers]
simple = ["local"]
medium = ["flash"]
complex = ["pro"]

[routing]
baseline = "pro"

[[backends]]
name = "local"
provider = "ollama"
model = "{ollama_model}"
base_url = "{fakes.ollama_url}"

[[backends]]
name = "flash"
provider = "gemini"
model = "gemini-2.5-flash"
base_url = "{fakes.gemini_url}"

[[backends]]
name = "pro"
provider = "gemini"
model = "gemini-2.5-pro"
base_url = "{fakes.gemini_url}"
""")
    return path


def test_a_healthy_setup_is_all_well(fakes: ThreadedFakes, pg_url: str, redis_stack: EmbeddedRedis,
                                     tmp_path: Path) -> None:
    asyncio.run(migrate(pg_url, migrations_dir(None)))
    config = write_config(tmp_path / "smr.toml", fakes)
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_stack.url, "GOOGLE_API_KEY": "k"}
    first = doctor(config, env, "--fix")  # exports the ONNX model if this machine has not yet
    assert first.returncode == 0, first.stdout + first.stderr
    out = doctor(config, env)
    assert out.returncode == 0, out.stdout
    print(out.stdout)
    assert out.stdout.strip().endswith("all well") and "FAIL" not in out.stdout
    migrations = len(list((ROOT / "migrations").glob("*.sql")))
    for line in ("ok   database:", f"all {migrations} migrations applied", "ok   redis:", "query engine present",
                 "ok   backend local: reachable, model granite4:350m listed", "ok   backend pro:", "ONNX export"):
        assert line in out.stdout, line
    assert "***@" in out.stdout or "postgres@" not in out.stdout  # no credentials printed


def test_a_broken_setup_names_each_problem_and_its_fix(fakes: ThreadedFakes, pg_url: str, tmp_path: Path) -> None:
    future = tmp_path / "migrations"
    shutil.copytree(migrations_dir(None), future)
    (future / "9999_future.sql").write_text("SELECT 1;\n")
    config = write_config(tmp_path / "smr.toml", fakes, ollama_model="granite4:999m", migrations=future)
    env = {"DATABASE_URL": pg_url, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
    out = doctor(config, env)
    print(out.stdout)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    text = out.stdout
    expected = [
        ("FAIL database:", "9999_future.sql", "fix: smr migrate"),
        ("FAIL redis: cannot reach", "", "fix: check REDIS_URL"),
        ("FAIL backend local: reachable, but model 'granite4:999m' is not listed", "",
         "fix: ollama pull granite4:999m"),
        ("FAIL backend flash: no API key (GOOGLE_API_KEY is not set)", "", "fix: export GOOGLE_API_KEY=..."),
    ]
    for problem, detail, fix in expected:
        assert problem in text and detail in text and fix in text, problem
    assert text.strip().endswith("problem(s)")
    bad = tmp_path / "bad.toml"
    bad.write_text("[routing]\ncutoffs = [0.9, 0.1]\n")
    broken = doctor(bad, {})
    assert broken.returncode == 1 and "FAIL config:" in broken.stdout and "routing.cutoffs" in broken.stdout
    gone = doctor(config, {"DATABASE_URL": f"postgresql://u:secret@127.0.0.1:{free_port()}/x", "GOOGLE_API_KEY": "k",
                           "REDIS_URL": env["REDIS_URL"]})
    assert "FAIL database: cannot connect" in gone.stdout and "secret" not in gone.stdout
    assert os.path.exists(config)
