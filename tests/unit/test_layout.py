"""The shape of the code: no import circle in the runtime packages, no module over 400 lines, the
environment read only by the settings loader, and nothing for training or tests inside the runtime."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "router_core")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_files() -> list[Path]:
    return [f for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py")]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at run time (imports under TYPE_CHECKING excluded)."""
    files = {_module(f): f for f in _runtime_files()}
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        tree = ast.parse(f.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from gateway.cli import admin` imports the module gateway.cli.admin
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in files else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_cycle_finder_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_runtime_packages() -> None:
    graph = import_graph()
    assert "gateway.request_path" in graph and "gateway.routing" in graph["gateway.request_path"]
    assert find_cycle(graph) is None


def test_no_module_over_400_lines() -> None:
    long = {str(f.relative_to(ROOT)): n for f in _runtime_files() if (n := len(f.read_text().splitlines())) > 400}
    assert long == {}


def test_only_the_settings_loader_reads_the_environment_in_the_gateway() -> None:
    readers = {str(f.relative_to(ROOT)) for f in (ROOT / "gateway").rglob("*.py")
               if "os.environ.get(" in f.read_text() or "os.getenv(" in f.read_text()}
    # The embedded redis-stack-server is started with this process's environment plus OpenSSL 1.1 on
    # LD_LIBRARY_PATH: handing the environment to a child process, not reading a setting from it.
    assert readers == {"gateway/cache/embedded.py"}
    assert "env.get(" in (ROOT / "gateway" / "settings.py").read_text()


def test_training_and_scratch_helpers_live_outside_the_runtime_package() -> None:
    names = {f.name for f in (ROOT / "gateway").rglob("*.py")}
    assert not names & {"train_guard.py", "scratch.py"}
    assert (ROOT / "bench" / "studies" / "train_guard.py").exists() and (ROOT / "tests" / "scratch.py").exists()


def test_no_code_reads_a_folder_beside_the_repository() -> None:
    # A fresh clone has nothing beside it: the data the tests, `smr eval`, `smr train` and the studies read
    # is in data/ (router_core.outcomes.DATA). Only provenance text may name where data once came from.
    reads = re.compile(r"""["']\.\./shared|parents\[\d\]\s*/\s*["']shared["']|ROOT\.parent\s*/\s*["']shared""")
    offenders = [str(f.relative_to(ROOT)) for top in ("gateway", "router_core", "tests", "bench")
                 for f in (ROOT / top).rglob("*.py") if ".venv" not in f.parts and reads.search(f.read_text())]
    assert offenders == []
    assert (ROOT / "data" / "SOURCES.md").exists()
