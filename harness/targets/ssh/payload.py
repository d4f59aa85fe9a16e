"""The files the agent needs on a target, as {path under the cache folder: local file}.

- `checkout/`: the guest half of this checkout (harness/__init__.py, harness/protocol.py,
  harness/guest/; the layout test keeps the guest to these), pyproject.toml and the root
  conftest.py (pytest's rootdir and fixtures), and each case folder with the conftest.py
  and __init__.py files on the way to it;
- `site/`: the Python distributions the guest imports (pytest, pyroute2) and what they
  require, file for file as installed here (pure Python; the target's Python >= 3.11 runs
  them), unless the target has an environment of its own (--target-python);
- `bpf/<set>/`: the BPF objects compiled on this host (the set's name is its digest:
  the agent's minimal BTF is keyed by it).

Bytecode caches and hidden files are never sent.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement

from ...errors import UserError

CHECKOUT = "checkout"
SITE = "site"
OBJECTS = "bpf"
#: the top folders of the cache a sync owns (it deletes what they hold and is not sent)
MANAGED = (CHECKOUT, SITE, OBJECTS)
#: what the guest side imports beyond the standard library (tests/unit/test_ssh_payload.py
#: checks this against the guest's and the cases' imports)
GUEST_DISTRIBUTIONS = ("pytest", "pyroute2")
#: the guest half of the checkout
GUEST_CODE = ("harness/__init__.py", "harness/protocol.py", "harness/guest")
_ROOT_FILES = ("pyproject.toml", "conftest.py")


def _skipped(rel: Path) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in rel.parts) or \
        rel.suffix in (".pyc", ".pyo")


def _tree(root: Path, rel: Path) -> Iterable[Path]:
    """Files of `root/rel` (a file or a folder), relative to `root`."""
    path = root / rel
    if path.is_file():
        yield rel
        return
    for found in sorted(path.rglob("*")):
        sub = found.relative_to(root)
        if found.is_file() and not _skipped(sub):
            yield sub


def checkout_files(root: Path, case_dirs: Sequence[Path]) -> dict[str, Path]:
    """{path under the checkout: local file} of what the agent imports and collects."""
    out: dict[str, Path] = {}
    rels = [Path(p) for p in (*_ROOT_FILES, *GUEST_CODE)]
    for case_dir in case_dirs:
        case_dir = case_dir.resolve()
        if not case_dir.is_relative_to(root):
            raise UserError(f"case folder {case_dir} is outside the checkout {root}",
                            hint="SSH targets get the checkout's case folders only")
        rel = case_dir.relative_to(root)
        for depth in range(1, len(rel.parts)):  # conftest.py and packages on the way
            parent = Path(*rel.parts[:depth])
            rels += [parent / n for n in ("conftest.py", "__init__.py")
                     if (root / parent / n).is_file()]
        rels.append(rel)
    for rel in rels:
        if (root / rel).exists():
            for sub in _tree(root, rel):
                out[sub.as_posix()] = root / sub
    return out


def requirement_closure(names: Sequence[str]) -> list[md.Distribution]:
    """The installed distributions `names` need, with their requirements (markers
    evaluated for this Python, no extras)."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError as exc:
            raise UserError(f"{name}, which the guest needs, is not installed here",
                            hint="run scripts/bootstrap (or pip install -e .)") from exc
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def distribution_files(names: Sequence[str] = GUEST_DISTRIBUTIONS) -> dict[str, Path]:
    """{path under site-packages: local file} of the distributions' files (their RECORD),
    without scripts installed elsewhere and bytecode. UserError for a compiled extension:
    it would not run on another machine's Python."""
    out: dict[str, Path] = {}
    for dist in requirement_closure(names):
        base = Path(str(dist.locate_file(""))).resolve()
        for entry in dist.files or []:
            path = Path(str(dist.locate_file(entry))).resolve()
            if not path.is_relative_to(base) or not path.is_file():
                continue
            rel = path.relative_to(base)
            if _skipped(rel):
                continue
            if rel.suffix in (".so", ".pyd"):
                raise UserError(
                    f"{dist.metadata['Name']} has a compiled extension ({rel}): it cannot "
                    "be copied to a target", hint="install the guest's Python packages on "
                    "the target and name that Python with --target-python PATH")
            out[rel.as_posix()] = path
    return out


def object_files(objects: Path) -> dict[str, Path]:
    """{SET/NAME.bpf.o: local file} of a compiled object set (harness.bpf.compile)."""
    return {f"{objects.name}/{p.name}": p for p in sorted(objects.glob("*.bpf.o"))}


def payload(root: Path, case_dirs: Sequence[Path], objects: Path | None,
            with_env: bool) -> dict[str, Path]:
    """Everything the agent needs, by path under the target's cache folder."""
    out = {f"{CHECKOUT}/{k}": v for k, v in checkout_files(root, case_dirs).items()}
    if with_env:
        out.update({f"{SITE}/{k}": v for k, v in distribution_files().items()})
    if objects is not None:
        out.update({f"{OBJECTS}/{k}": v for k, v in object_files(objects).items()})
    return out
