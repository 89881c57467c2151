"""Static checks of what cannot run here (no container engine): the Containerfile and compose.yaml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_containerfile_copies_existing_paths() -> None:
    text = (ROOT / "Containerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Containerfile copies missing {src}"
    assert re.search(r"^USER (?!root)", text, re.M), "the image must not run as root"


def test_compose_wires_the_shared_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"gateway", "postgres", "redis"} <= set(services)
    env = services["gateway"]["environment"]
    for key in ("DATABASE_URL", "REDIS_URL", "SMR_ADMIN_KEY", "GOOGLE_API_KEY"):
        assert key in env
    assert "redis-stack" in services["redis"]["image"], "the semantic cache needs the Redis query engine"


def test_pyproject_pins_torch_and_exposes_smr() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [d for d in meta["dependencies"] if d.startswith("torch")]
    assert torch == ["torch==2.13.0"]
    assert "torch==2.13.0" in (ROOT / "Containerfile").read_text()
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert meta["scripts"]["smr"] == "gateway.cli:main"


def test_router_core_never_imports_the_web_stack() -> None:
    banned = re.compile(r"^\s*(from|import)\s+(litestar|redis|psycopg|gateway|uvicorn|aiohttp)\b", re.M)
    for f in (ROOT / "router_core").rglob("*.py"):
        assert not banned.search(f.read_text()), f"{f} imports a web/storage module"
