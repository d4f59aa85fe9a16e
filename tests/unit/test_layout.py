"""The layout's rules, checked on the import graph of the tree (no kernel needed).

- nothing under harness/guest/ imports a host module (guest code may import only
  harness.guest.* and harness.protocol, the one module both sides speak);
- the agent starts without importing host code (pytest plugin, session, VM, acquisition);
- no import cycles between harness modules;
- one definition of each shared thing;
- no private API of pytest or pytest-xdist.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "harness"
#: modules both sides may import
SHARED = {"harness", "harness.protocol"}
SOURCES = [p for d in ("harness", "cases", "benchmarks") for p in sorted((ROOT / d).rglob("*.py"))]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside `if TYPE_CHECKING:` blocks (imports there never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """(absolute module, line) of every import in `path`, lazy ones included."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if _is_package(path) else me.rpartition(".")[0]
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from . import x` imports the submodule x
                yield f"{target}.{alias.name}", node.lineno


def harness_modules() -> set[str]:
    return {module_name(p) for p in HARNESS.rglob("*.py")}


def _resolve(name: str, known: set[str]) -> str | None:
    """The harness module an import names (an imported attribute maps to its module)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def test_guest_imports_nothing_of_the_host() -> None:
    known = harness_modules()
    bad = []
    for path in sorted((HARNESS / "guest").rglob("*.py")):
        for name, line in imports_of(path):
            mod = _resolve(name, known)
            if mod is None or mod.startswith("harness.guest") or mod in SHARED:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "guest code imports host modules:\n" + "\n".join(bad)


def test_agent_starts_without_host_code() -> None:
    """Importing the agent (and what it imports before the first case) pulls in no host
    module: no pytest plugin, session, VM, acquisition, build or report code."""
    code = ("import sys, harness.guest.agent, harness.guest.plugin, harness.guest.probes, "
            "harness.guest.fixtures; print('\\n'.join(sorted(m for m in sys.modules "
            "if m.startswith('harness'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    host = [m for m in out if not m.startswith("harness.guest") and m not in SHARED]
    assert not host, f"the agent imports host modules: {host}"


def test_no_import_cycles() -> None:
    known = harness_modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for path in HARNESS.rglob("*.py"):
        me = module_name(path)
        for name, _ in imports_of(path):
            mod = _resolve(name, known)
            # a package importing its own submodules (facades) is not a cycle
            if mod and mod != me and not mod.startswith(me + "."):
                graph[me].add(mod)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            # importing a submodule first imports its packages: ignore edges into parents
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


#: names that must be defined (def, class or module-level assignment) exactly once
SHARED_THINGS = ("cache_root", "locked", "kernel_label_of", "without_kernel", "case_id",
                 "CLONE_NEWNET", "SO_COOKIE", "AF_XDP", "in_guest", "create_netns",
                 "in_new_netns", "run_in_netns", "EXIT_USAGE", "ExitCode", "candidate",
                 "parse_stanzas", "unique_name", "wait_until", "hits", "trace",
                 "object_path", "kmsg_message")


def _definitions(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id
                elif isinstance(target, ast.Tuple):
                    yield from (e.id for e in target.elts if isinstance(e, ast.Name))


#: the one allowed second definition: the host's object_path compiles, the guest's looks up
ALLOWED_TWICE = {"object_path": {"harness.bpf.compile", "harness.guest.bpf.objects"}}


@pytest.mark.parametrize("name", SHARED_THINGS)
def test_one_definition(name: str) -> None:
    where = sorted(module_name(p) for p in SOURCES if name in set(_definitions(p)))
    if name in ALLOWED_TWICE:
        assert set(where) <= ALLOWED_TWICE[name], where
        return
    assert len(where) <= 1, f"{name} is defined in {where}"


def test_no_private_api_of_pytest_or_xdist() -> None:
    bad = []
    for path in SOURCES + sorted((ROOT / "tests").rglob("*.py")):
        for name, line in imports_of(path):
            parts = name.split(".")
            if parts[0] == "_pytest" or (parts[0] in ("xdist", "pytest") and any(
                    p.startswith("_") for p in parts[1:])):
                bad.append(f"{path.relative_to(ROOT)}:{line} {name}")
        text = path.read_text()
        if "_split_scope" in text and path != Path(__file__):
            bad.append(f"{path.relative_to(ROOT)}: overrides xdist's private _split_scope")
    assert not bad, "private pytest/xdist API:\n" + "\n".join(bad)
