"""The shape of the code: serving apart from research (the gateway and `smr serve` load no training,
fitting or evaluation code; router_core never imports router_lab), no import circle, no module over 400
lines, the environment read only by the settings loader, and nothing for training or tests inside the
runtime."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "router_core", "router_lab")
# What only training and evaluation load: the research package, its libraries, and the modules that held
# research inside router_core before the split (they must not come back).
RESEARCH = ("router_lab", "sklearn", "scipy", "router_core.evals", "router_core.irt",
            "router_core.outcomes", "router_core.data", "router_core.train", "router_core.feedback",
            "router_core.calibrate")


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
    assert "gateway.path.request_path" in graph and "gateway.path.routing" in graph["gateway.path.request_path"]
    assert "router_lab.difficulty" in graph and "router_core.difficulty" in graph["router_lab.difficulty"]
    assert (cycle := find_cycle(graph)) is None, f"import circle: {' -> '.join(cycle)}"


def test_no_module_over_400_lines() -> None:
    long = {str(f.relative_to(ROOT)): n for f in _runtime_files() if (n := len(f.read_text().splitlines())) > 400}
    assert long == {}, f"modules over 400 lines (split them): {long}"


def _top_level_imports(path: Path) -> set[str]:
    """The modules a file imports when it is imported (not inside a function or class)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _all_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_serving_never_depends_on_research() -> None:
    # router_core (what the gateway runs) imports nothing of router_lab, anywhere; the gateway imports it only
    # inside the functions of the commands that train or evaluate, so `smr serve` never loads it.
    lab = lambda mods: sorted(m for m in mods if m == "router_lab" or m.startswith("router_lab."))  # noqa: E731
    core = {str(f.relative_to(ROOT)): lab(_all_imports(f)) for f in (ROOT / "router_core").rglob("*.py")}
    assert {f: m for f, m in core.items() if m} == {}
    gw = {str(f.relative_to(ROOT)): lab(_top_level_imports(f)) for f in (ROOT / "gateway").rglob("*.py")}
    assert {f: m for f, m in gw.items() if m} == {}
    # router_lab is research on top of router_core; it never reaches up into the gateway.
    up = {str(f.relative_to(ROOT)): sorted(m for m in _all_imports(f) if m.split(".")[0] == "gateway")
          for f in (ROOT / "router_lab").rglob("*.py")}
    assert {f: m for f, m in up.items() if m} == {}


SERVE_PROBE = """
import sys
import msgspec
import gateway.app
import router_core
from gateway.cli import main, serve
from gateway.vocab.settings import read_settings, validate

print(" ".join(sorted(sys.modules)))
s = read_settings(None)
s = validate(msgspec.structs.replace(s, auth=msgspec.structs.replace(s.auth, admin_key="smr_admin_" + "x" * 24)))
gateway.app.create_app(s)
print(" ".join(sorted(sys.modules)))
"""


def test_serving_loads_no_training_code() -> None:
    # What `smr serve` loads: the app module, the CLI, and the app built with the default config (the tiered
    # classifier and its difficulty head; nothing is reached over the network to build it). Nothing of
    # training or evaluation among them.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), "SMR_ADMIN_KEY": "smr_admin_" + "x" * 24}
    done = subprocess.run([sys.executable, "-c", SERVE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported, built = (line.split() for line in done.stdout.splitlines()[-2:])
    # Importing the app, router_core and the CLI loads no torch (lazy: it costs seconds and hundreds of MiB;
    # building the app may load it where a GPU is present).
    assert "gateway.app" in imported and "torch" not in imported
    assert "router_core.classifiers.tiered" in built
    research = sorted(m for m in built if any(m == r or m.startswith(r + ".") for r in RESEARCH))
    assert research == [], f"serving loaded training/evaluation code: {research}"


def test_only_the_settings_loader_reads_the_environment_in_the_gateway() -> None:
    readers = {str(f.relative_to(ROOT)) for f in (ROOT / "gateway").rglob("*.py")
               if "os.environ.get(" in f.read_text() or "os.getenv(" in f.read_text()}
    # The embedded redis-stack-server is started with this process's environment plus OpenSSL 1.1 on
    # LD_LIBRARY_PATH: handing the environment to a child process, not reading a setting from it.
    assert readers == {"gateway/cache/embedded.py"}
    assert "env.get(" in (ROOT / "gateway" / "vocab" / "settings.py").read_text()


def test_training_and_scratch_helpers_live_outside_the_runtime_package() -> None:
    names = {f.name for f in (ROOT / "gateway").rglob("*.py")}
    assert not names & {"train_guard.py", "scratch.py"}
    assert (ROOT / "bench" / "studies" / "train_guard.py").exists() and (ROOT / "tests" / "scratch.py").exists()


def test_no_code_reads_a_folder_beside_the_repository() -> None:
    # A fresh clone has nothing beside it: the data the tests, `smr eval`, `smr train` and the studies read
    # is in data/ (router_lab.outcomes.DATA). Only provenance text may name where data once came from.
    reads = re.compile(r"""["']\.\./shared|parents\[\d\]\s*/\s*["']shared["']|ROOT\.parent\s*/\s*["']shared""")
    offenders = [str(f.relative_to(ROOT)) for top in ("gateway", "router_core", "router_lab", "tests", "bench")
                 for f in (ROOT / top).rglob("*.py") if ".venv" not in f.parts and reads.search(f.read_text())]
    assert offenders == []
    assert (ROOT / "data" / "SOURCES.md").exists()


# The parts of the gateway, lowest first. A module imports only from its own rank or below: the vocabulary
# from nothing of the gateway (but the provider descriptors it names), the stores and infrastructure from the
# vocabulary, the request path from those, the edge and the handlers from the request path, the composition
# (app, lifespan) from everything, and the CLI and the fakes from anything.
RANKS = {"vocab": 0, "providers": 1, "infra": 1, "db": 1, "cache": 1, "path": 2, "learning": 2, "edge": 3,
         "api": 3, "gateway": 3, "lifespan": 4, "app": 4, "cli": 5, "fakes": 5}
VOCABULARY_MAY_NAME = {"gateway.providers.base", "gateway.providers.catalog"}


def _rank(module: str) -> int | None:
    parts = module.split(".")
    return RANKS.get(parts[1]) if parts[0] == "gateway" and len(parts) > 1 else None


def test_the_folders_name_the_parts_and_imports_only_go_down() -> None:
    flat = sorted(f.name for f in (ROOT / "gateway").glob("*.py"))
    assert flat == ["__init__.py", "app.py", "gateway.py", "lifespan.py"], flat
    folders = {d.name for d in (ROOT / "gateway").iterdir() if (d / "__init__.py").exists()}
    assert folders - {"web"} <= set(RANKS), folders - set(RANKS)
    upward = []
    for name, deps in import_graph().items():
        if (mine := _rank(name)) is None:
            continue
        for dep in deps:
            theirs = _rank(dep)
            if theirs is not None and theirs > mine and not (mine == 0 and dep in VOCABULARY_MAY_NAME):
                upward.append(f"{name} -> {dep}")
    assert upward == [], f"imports that reach up a layer: {sorted(upward)}"
    core_up = sorted(f"{name} -> {dep}" for name, deps in import_graph().items() if name.startswith("router_core")
                     for dep in deps if dep.startswith("gateway"))
    assert core_up == [], core_up
