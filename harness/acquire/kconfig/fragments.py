"""Kconfig fragments: the format, version gating, and which fragments a build merges.

Pure logic, no commands: `acquire.build` runs `make`, this package decides what to ask for
and checks what came out. The fragment format is described in `kconfigs/README.md`:

    # kmatrix: min-version 6.7
    # kmatrix: optional CONFIG_Y
    CONFIG_NETKIT=y   # why it is there

Verification follows kunit_tool's `validate_config`: every requested symbol must have the
requested value in the final `.config` (a requested `n` is satisfied by an absent symbol);
each one that did not survive is named with the reason (unknown in this version, unmet
dependency, no prompt, overridden), and fails the check unless its fragment marks it optional.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError

#: (major, minor): fragments apply to kernel series, not to stable point releases
KVersion = tuple[int, int]

#: the fragments shipped with kmatrix
FRAGMENT_DIR = Path(__file__).resolve().parents[3] / "kconfigs"
#: always merged first: what a virtme-ng guest needs to boot
BASE_FRAGMENT = "base"

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)")
_DIRECTIVE_RE = re.compile(r"^#\s*kmatrix:\s*(\S+)\s*(.*?)\s*$")
_SET_RE = re.compile(
    r'^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^\s#]+)\s*(?:#\s*(.*?))?\s*$'
)
UNSET_RE = re.compile(r"^#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*(?:#\s*(.*?))?\s*$")


def parse_version(text: str) -> KVersion:
    """`6.12`, `6.12.117`, `v6.7-rc1`, `6.12.117-1~deb12u1` -> (major, minor)."""
    m = _VERSION_RE.match(text)
    if not m:
        raise ConfigError(f"not a kernel version: {text!r}", hint="write it as MAJOR.MINOR")
    return int(m.group(1)), int(m.group(2))


def format_version(version: KVersion) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class Option:
    """One requested Kconfig symbol value, as written in a fragment."""

    #: full symbol name, `CONFIG_NETKIT`
    name: str
    #: `y`, `m`, `n`, a number, or a quoted string exactly as in .config (`"-kmatrix"`)
    value: str
    #: the why-comment; every shipped option has one (tests/test_kconfig.py checks)
    why: str
    #: fragment that asked for it, for messages
    fragment: str
    #: line number in the fragment file, for messages
    line: int
    #: a miss is reported but does not fail the check
    optional: bool = False
    #: only requested on kernels >= this version (None: always)
    since: KVersion | None = None
    #: only requested on kernels <= this version (None: always)
    until: KVersion | None = None

    def render(self) -> str:
        if self.value == "n":
            return f"# {self.name} is not set"
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class Fragment:
    """A parsed kconfigs/*.config file."""

    #: file name without `.config`; what users pass to --fragment
    name: str
    #: where it was read from (None for fragments built in tests)
    path: Path | None
    #: one-line description for help text and reports
    summary: str
    #: requested options in file order
    options: tuple[Option, ...]
    #: the fragment applies to kernels >= this version (None: any)
    min_version: KVersion | None = None
    #: the fragment applies to kernels <= this version (None: any)
    max_version: KVersion | None = None
    #: other fragments merged before this one
    requires: tuple[str, ...] = ()
    #: excluded from `all` (slow debugging aids)
    opt_in: bool = False

    def applies_to(self, version: KVersion) -> bool:
        if self.min_version is not None and version < self.min_version:
            return False
        return not (self.max_version is not None and version > self.max_version)

    def range_text(self) -> str:
        lo = f">= {format_version(self.min_version)}" if self.min_version else ""
        hi = f"<= {format_version(self.max_version)}" if self.max_version else ""
        return " and ".join(t for t in (lo, hi) if t) or "any version"


def parse_fragment(text: str, name: str, path: Path | None = None) -> Fragment:
    """Parse fragment text; ConfigError (with file:line) for anything malformed."""
    where = str(path) if path else name
    summary = ""
    min_v: KVersion | None = None
    max_v: KVersion | None = None
    requires: list[str] = []
    opt_in = False
    optional: set[str] = set()
    since: dict[str, KVersion] = {}
    until: dict[str, KVersion] = {}
    raw: list[tuple[str, str, str, int]] = []

    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            d = _DIRECTIVE_RE.match(stripped)
            if d:
                key, arg = d.group(1), d.group(2)
                words = arg.split()
                if key == "summary":
                    summary = arg
                elif key == "min-version":
                    min_v = parse_version(arg)
                elif key == "max-version":
                    max_v = parse_version(arg)
                elif key == "requires":
                    requires.extend(words)
                elif key == "opt-in":
                    opt_in = True
                elif key == "optional":
                    optional.update(_symbols(words))
                elif key in ("since", "until"):
                    if len(words) < 2:
                        raise ConfigError(f"'{key}' needs a version and at least one symbol")
                    version = parse_version(words[0])
                    for sym in _symbols(words[1:]):
                        (since if key == "since" else until)[sym] = version
                else:
                    raise ConfigError(f"unknown directive 'kmatrix: {key}'")
                continue
            s = _SET_RE.match(stripped)
            if s:
                raw.append((s.group(1), s.group(2), s.group(3) or "", lineno))
                continue
            u = UNSET_RE.match(stripped)
            if u:
                raw.append((u.group(1), "n", u.group(2) or "", lineno))
                continue
            if stripped.startswith("#"):
                continue  # plain comment
            raise ConfigError(f"not a Kconfig line: {stripped!r}")
        except ConfigError as exc:
            raise ConfigError(
                f"{where}:{lineno}: {exc}",
                hint="see kconfigs/README.md for the fragment format",
            ) from None

    names = {r[0] for r in raw}
    for sym in sorted((optional | set(since) | set(until)) - names):
        raise ConfigError(
            f"{where}: directive names {sym}, which the fragment does not set",
            hint="add the option line or remove it from the directive",
        )
    options = tuple(
        Option(
            name=sym,
            value=value,
            why=why,
            fragment=name,
            line=lineno,
            optional=sym in optional,
            since=since.get(sym),
            until=until.get(sym),
        )
        for sym, value, why, lineno in raw
    )
    return Fragment(
        name=name,
        path=path,
        summary=summary,
        options=options,
        min_version=min_v,
        max_version=max_v,
        requires=tuple(requires),
        opt_in=opt_in,
    )


def _symbols(words: Iterable[str]) -> list[str]:
    out = []
    for w in words:
        if not re.fullmatch(r"CONFIG_[A-Za-z0-9_]+", w):
            raise ConfigError(f"not a CONFIG_ symbol: {w!r}")
        out.append(w)
    return out


def load_fragment(path: Path) -> Fragment:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read fragment {path}: {exc.strerror}") from exc
    return parse_fragment(text, path.name.removesuffix(".config"), path)


def available_fragments(directory: Path = FRAGMENT_DIR) -> dict[str, Fragment]:
    """Every fragment in `directory`, by name."""
    paths = sorted(directory.glob("*.config"))
    return {p.name.removesuffix(".config"): load_fragment(p) for p in paths}


def resolve_fragments(
    names: Sequence[str] | None, directory: Path = FRAGMENT_DIR
) -> list[Fragment]:
    """Fragments to merge, in order: base, then each requested one after what it requires.

    A name is a fragment in `directory`, `all` (every fragment that is not opt-in), a path
    to a fragment file, or `-NAME` to leave NAME out. None (or only `-NAME`s) means `all`.
    Leaving out a fragment that a selected one requires is an error.
    """
    known = available_fragments(directory)
    if BASE_FRAGMENT not in known:
        raise ConfigError(f"no {BASE_FRAGMENT}.config in {directory}")
    names = list(names or [])
    removed = {n[1:] for n in names if n.startswith("-")}
    names = [n for n in names if not n.startswith("-")] or ["all"]
    for name in sorted(removed - set(known)):
        raise ConfigError(f"cannot leave out unknown fragment {name!r}",
                          hint=f"choose from: {', '.join(sorted(known))}")
    if BASE_FRAGMENT in removed:
        raise ConfigError("the base fragment cannot be left out: the guest would not boot")
    wanted: list[Fragment] = []
    for name in names:
        if name in removed:
            continue
        if name == "all":
            wanted.extend(f for n, f in known.items() if not f.opt_in and n not in removed)
        elif name in known:
            wanted.append(known[name])
        elif "/" in name or name.endswith(".config"):
            wanted.append(load_fragment(Path(name)))
        else:
            raise ConfigError(
                f"unknown config fragment {name!r}",
                hint=f"choose from: all, {', '.join(sorted(known))} (or a path to a file)",
            )
    ordered: list[Fragment] = []
    seen: set[str] = set()

    def visit(frag: Fragment, chain: tuple[str, ...]) -> None:
        if frag.name in seen:
            return
        if frag.name in chain:
            raise ConfigError(f"fragment requires loop: {' -> '.join((*chain, frag.name))}")
        for req in frag.requires:
            if req not in known:
                raise ConfigError(f"fragment {frag.name} requires unknown fragment {req!r}")
            if req in removed:
                raise ConfigError(f"cannot leave out {req}: fragment {frag.name} requires it",
                                  hint=f"leave out {frag.name} too")
            visit(known[req], (*chain, frag.name))
        seen.add(frag.name)
        ordered.append(frag)

    visit(known[BASE_FRAGMENT], ())
    for frag in wanted:
        visit(frag, ())
    return ordered
