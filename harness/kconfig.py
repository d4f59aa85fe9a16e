"""Kconfig fragments: parse, select by kernel version, merge, and verify after olddefconfig.

Pure logic, no commands: `harness.kbuild` runs `make`, this module decides what to ask for
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

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

#: (major, minor): fragments apply to kernel series, not to stable point releases
KVersion = tuple[int, int]

#: the fragments shipped with kmatrix
FRAGMENT_DIR = Path(__file__).resolve().parent.parent / "kconfigs"
#: always merged first: what a virtme-ng guest needs to boot
BASE_FRAGMENT = "base"

_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)")
_DIRECTIVE_RE = re.compile(r"^#\s*kmatrix:\s*(\S+)\s*(.*?)\s*$")
_SET_RE = re.compile(
    r'^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^\s#]+)\s*(?:#\s*(.*?))?\s*$'
)
_UNSET_RE = re.compile(r"^#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*(?:#\s*(.*?))?\s*$")


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
            u = _UNSET_RE.match(stripped)
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


@dataclass(frozen=True)
class MergedConfig:
    """What a build asks Kconfig for, after dropping what does not apply to the version."""

    #: the kernel series the merge was made for
    version: KVersion
    #: names of the fragments merged (applicable ones), in order
    fragments: tuple[str, ...]
    #: requested options by symbol; later fragments override earlier ones
    options: dict[str, Option]
    #: "netkit: not in this version (needs >= 6.7, tree is 6.1)", ...
    skipped: tuple[str, ...] = ()
    #: symbols two fragments set to different values (the later one wins)
    conflicts: tuple[str, ...] = ()

    def render(self) -> str:
        """The merged fragment as Kconfig text (sorted: the hash ignores fragment order)."""
        lines = [f"# kmatrix merged config for {format_version(self.version)}: "
                 + " ".join(self.fragments)]
        lines += [self.options[k].render() for k in sorted(self.options)]
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """Content hash of what is requested: part of the build cache key."""
        body = "\n".join(self.options[k].render() for k in sorted(self.options))
        return hashlib.sha256(body.encode()).hexdigest()


def merge(fragments: Sequence[Fragment], version: KVersion) -> MergedConfig:
    """Merge in order for kernel `version`: version-gated fragments/options are recorded."""
    options: dict[str, Option] = {}
    skipped: list[str] = []
    conflicts: list[str] = []
    used: list[str] = []
    vtext = format_version(version)
    for frag in fragments:
        if not frag.applies_to(version):
            skipped.append(f"{frag.name}: not in this version (needs {frag.range_text()}, "
                           f"tree is {vtext})")
            continue
        used.append(frag.name)
        for opt in frag.options:
            if opt.since is not None and version < opt.since:
                skipped.append(f"{frag.name}: {opt.render()} only requested from "
                               f"{format_version(opt.since)} on (tree is {vtext})")
                continue
            if opt.until is not None and version > opt.until:
                skipped.append(f"{frag.name}: {opt.render()} only requested up to "
                               f"{format_version(opt.until)} (tree is {vtext})")
                continue
            prev = options.get(opt.name)
            if prev is not None and prev.value != opt.value:
                conflicts.append(f"{opt.name}: {prev.fragment} sets {prev.value}, "
                                 f"{opt.fragment} sets {opt.value} (using {opt.value})")
            if prev is not None and prev.optional and not opt.optional:
                options[opt.name] = opt
            elif prev is not None and not prev.optional and opt.optional:
                # a required request stays required even if a later fragment is lenient
                options[opt.name] = Option(**{**opt.__dict__, "optional": False})
            else:
                options[opt.name] = opt
    return MergedConfig(version, tuple(used), options, tuple(skipped), tuple(conflicts))


# --- .config files ---------------------------------------------------------------------


def parse_dotconfig(text: str) -> dict[str, str]:
    """Symbol -> value of a .config; `# CONFIG_X is not set` gives `n`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
        else:
            m = _UNSET_RE.match(line)
            if m:
                values[m.group(1)] = "n"
    return values


def dotconfig_version(text: str) -> KVersion | None:
    """The series from a .config header (`# Linux/x86 6.12.117 Kernel Configuration`)."""
    m = re.search(r"^# Linux/\S+ (\d+\.\d+)\S* Kernel Configuration", text, re.M)
    return parse_version(m.group(1)) if m else None


def apply_to_dotconfig(dotconfig: str, merged: MergedConfig) -> str:
    """The .config with every requested symbol's old line removed and the request appended.

    The same thing scripts/kconfig/merge_config.sh does; `make olddefconfig` then resolves it.
    """
    kept = [
        line for line in dotconfig.splitlines()
        if _line_symbol(line) not in merged.options
    ]
    return "\n".join([*kept, merged.render().rstrip("\n")]) + "\n"


def _line_symbol(line: str) -> str | None:
    line = line.strip()
    if line.startswith("CONFIG_"):
        return line.partition("=")[0]
    m = _UNSET_RE.match(line)
    return m.group(1) if m else None


# --- the Kconfig database of a source tree, for explaining misses ----------------------


@dataclass
class Symbol:
    """What the tree's Kconfig files say about one symbol (without the CONFIG_ prefix)."""

    name: str
    #: `file:line` of each definition
    defined_at: list[str] = field(default_factory=list)
    #: `depends on` expressions, own and inherited from `if`/`menu` blocks
    depends: list[str] = field(default_factory=list)
    #: has a prompt (a user can set it); False: only `select` or defaults set it
    has_prompt: bool = False
    #: symbols that `select` this one, with their condition
    selected_by: list[str] = field(default_factory=list)


class KconfigDb:
    """A light reading of the Kconfig tree: definitions, dependencies, prompts, selects.

    Not a Kconfig implementation; enough to say *why* a requested value did not survive.
    """

    def __init__(self, symbols: dict[str, Symbol]) -> None:
        self.symbols = symbols

    @classmethod
    def scan(cls, srctree: Path, srcarch: str = "x86") -> KconfigDb:
        symbols: dict[str, Symbol] = {}
        root = srctree / "Kconfig"
        if not root.is_file():
            raise ConfigError(f"{srctree} has no Kconfig file: not a kernel source tree")
        _KconfigReader(srctree, srcarch, symbols).read(root, [])
        return cls(symbols)

    @classmethod
    def from_text(cls, files: Mapping[str, str], srcarch: str = "x86") -> KconfigDb:
        """For tests: Kconfig file contents by path; `Kconfig` is the root."""
        symbols: dict[str, Symbol] = {}
        reader = _KconfigReader(Path("/"), srcarch, symbols, files)
        reader.read(Path("/Kconfig"), [])
        return cls(symbols)


_WORD_RE = re.compile(r"\s+")


class _KconfigReader:
    def __init__(
        self,
        srctree: Path,
        srcarch: str,
        symbols: dict[str, Symbol],
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.srctree = srctree
        self.srcarch = srcarch
        self.symbols = symbols
        self.files = files
        self.seen: set[Path] = set()

    def _text(self, path: Path) -> str | None:
        if self.files is not None:
            return self.files.get(str(path.relative_to("/")))
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def read(self, path: Path, outer: list[str]) -> None:
        if path in self.seen:
            return
        self.seen.add(path)
        text = self._text(path)
        if text is None:
            return
        # stack of (kind, condition): kind is if/menu/choice; condition may be ""
        stack: list[tuple[str, str]] = []
        current: Symbol | None = None
        pending_block: int | None = None  # index in stack of a menu/choice taking depends
        in_help = False
        help_indent: int | None = None
        lines = text.replace("\\\n", " ").splitlines()
        for lineno, raw in enumerate(lines, 1):
            if in_help:
                if not raw.strip():
                    continue
                indent = len(raw.expandtabs()) - len(raw.expandtabs().lstrip())
                if help_indent is None:
                    help_indent = indent
                if indent >= help_indent and indent > 0:
                    continue
                in_help = False
            line = _strip_comment(raw).strip()
            if not line:
                continue
            word, _, rest = line.partition(" ")
            word = word.strip()
            rest = rest.strip()
            if word in ("config", "menuconfig"):
                sym = self.symbols.setdefault(rest, Symbol(rest))
                sym.defined_at.append(f"{path.relative_to(self.srctree)}:{lineno}")
                sym.depends.extend(outer + [c for _, c in stack if c])
                current = sym
                pending_block = None
            elif word in ("help", "---help---"):
                in_help, help_indent = True, None
            elif word == "if":
                stack.append(("if", rest))
                current, pending_block = None, None
            elif word in ("menu", "choice"):
                stack.append((word, ""))
                current, pending_block = None, len(stack) - 1
            elif word in ("endif", "endmenu", "endchoice"):
                if stack:
                    stack.pop()
                current, pending_block = None, None
            elif word in ("source", "rsource", "osource", "orsource"):
                target = rest.strip('"').replace("$(SRCARCH)", self.srcarch)
                base = path.parent if word.startswith(("r", "or")) else self.srctree
                for sub in sorted(base.glob(target)) if "*" in target else [base / target]:
                    self.read(sub, outer + [c for _, c in stack if c])
                current, pending_block = None, None
            elif word == "depends" and rest.startswith("on "):
                expr = rest[3:].strip()
                if current is not None:
                    current.depends.append(expr)
                elif pending_block is not None:
                    kind, cond = stack[pending_block]
                    stack[pending_block] = (kind, f"({cond}) && ({expr})" if cond else expr)
            elif word in ("bool", "tristate", "string", "int", "hex", "prompt"):
                if current is not None and rest.startswith('"'):
                    current.has_prompt = True
            elif word in ("select", "imply") and current is not None:
                target, _, cond = rest.partition(" if ")
                tsym = self.symbols.setdefault(target.strip(), Symbol(target.strip()))
                tsym.selected_by.append(current.name + (f" if {cond.strip()}" if cond else ""))
            elif word in ("comment", "mainmenu"):
                current = None


def _strip_comment(line: str) -> str:
    """The line without a trailing `# comment` (a `#` inside quotes is kept)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


# --- Kconfig expressions ---------------------------------------------------------------

_TOKEN_RE = re.compile(r'\s*(\|\||&&|!=|<=|>=|=|<|>|!|\(|\)|"[^"]*"|\'[^\']*\'|[^\s()!=<>&|]+)')


def eval_expr(expr: str, values: Mapping[str, str]) -> int:
    """Evaluate a Kconfig `depends on` expression: 0 (n), 1 (m), 2 (y).

    `values` maps symbols *without* the CONFIG_ prefix to .config values; absent means n.
    """
    tokens: list[str] = [str(t) for t in _TOKEN_RE.findall(expr) if t]
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ConfigError(f"truncated Kconfig expression: {expr!r}")
        pos += 1
        return tokens[pos - 1]

    def value_of(tok: str) -> str:
        if tok[0] in "\"'":
            return tok[1:-1]
        if tok in ("y", "m", "n"):
            return tok
        if re.fullmatch(r"-?\d+|0x[0-9a-fA-F]+", tok):
            return tok
        return values.get(tok, "n").strip('"')

    def tri(v: str) -> int:
        return {"y": 2, "m": 1}.get(v, 0)

    def compare(a: str, op: str, b: str) -> int:
        def num(v: str) -> int | None:
            try:
                return int(v, 0)
            except ValueError:
                return None

        na, nb = num(a), num(b)
        left: int | str
        right: int | str
        if na is not None and nb is not None:
            left, right = na, nb
        else:
            left, right = a, b
        result = {
            "=": left == right, "!=": left != right,
            "<": left < right, "<=": left <= right,  # type: ignore[operator]
            ">": left > right, ">=": left >= right,  # type: ignore[operator]
        }[op]
        return 2 if result else 0

    def primary() -> int:
        tok = take()
        if tok == "!":
            return 2 - primary()
        if tok == "(":
            v = or_expr()
            if take() != ")":
                raise ConfigError(f"unbalanced parentheses in {expr!r}")
            return v
        nxt = peek()
        if nxt in ("=", "!=", "<", "<=", ">", ">="):
            op = take()
            return compare(value_of(tok), op, value_of(take()))
        return tri(value_of(tok))

    def and_expr() -> int:
        v = primary()
        while peek() == "&&":
            take()
            v = min(v, primary())
        return v

    def or_expr() -> int:
        v = and_expr()
        while peek() == "||":
            take()
            v = max(v, and_expr())
        return v

    result = or_expr()
    if pos != len(tokens):
        raise ConfigError(f"cannot parse Kconfig expression {expr!r}")
    return result


def expr_symbols(expr: str) -> list[str]:
    """Symbol names referenced by an expression (no constants, numbers or strings)."""
    out = []
    for tok in map(str, _TOKEN_RE.findall(expr)):
        ident = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok)
        if ident and tok not in ("y", "m", "n") and tok not in out:
            out.append(tok)
    return out


# --- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Miss:
    """A requested value that did not survive olddefconfig."""

    option: Option
    #: the value in the final .config (`n` when absent)
    actual: str
    #: why, in words: "unknown in this version", "unmet dependency: ...", ...
    reason: str

    def describe(self) -> str:
        tag = "optional, " if self.option.optional else ""
        return (f"{self.option.name}: wanted {self.option.value}, got {self.actual} "
                f"({tag}{self.option.fragment}:{self.option.line}): {self.reason}")


@dataclass(frozen=True)
class ConfigCheck:
    """Result of checking a final .config against a merged request."""

    merged: MergedConfig
    #: requested symbols that have the requested value
    satisfied: tuple[Option, ...]
    #: requested symbols that do not
    misses: tuple[Miss, ...]

    @property
    def failures(self) -> tuple[Miss, ...]:
        return tuple(m for m in self.misses if not m.option.optional)

    @property
    def ok(self) -> bool:
        return not self.failures

    def format(self, verbose: bool = False) -> str:
        lines = []
        if verbose:
            lines += [f"  ok    {o.render()}  ({o.fragment})" for o in self.satisfied]
        lines += [f"  skip  {s}" for s in self.merged.skipped]
        lines += [f"  warn  conflicting values: {c}" for c in self.merged.conflicts]
        for m in self.misses:
            lines.append(f"  {'opt ' if m.option.optional else 'FAIL'}  {m.describe()}")
        n_fail = len(self.failures)
        head = (f"config check: {len(self.satisfied)}/{len(self.merged.options)} requested "
                f"options present, {n_fail} failed, {len(self.misses) - n_fail} optional missing")
        return "\n".join([head, *lines])

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "version": format_version(self.merged.version),
            "fragments": list(self.merged.fragments),
            "skipped": list(self.merged.skipped),
            "conflicts": list(self.merged.conflicts),
            "satisfied": [o.render() for o in self.satisfied],
            "misses": [
                {"symbol": m.option.name, "wanted": m.option.value, "actual": m.actual,
                 "optional": m.option.optional, "fragment": m.option.fragment,
                 "reason": m.reason}
                for m in self.misses
            ],
        }


def _matches(wanted: str, actual: str | None) -> bool:
    if wanted == "n":
        return actual in (None, "n")
    return actual == wanted


def check_config(
    merged: MergedConfig, final: Mapping[str, str], db: KconfigDb | None = None
) -> ConfigCheck:
    """Compare the final .config with the request; explain each miss using `db` if given."""
    satisfied: list[Option] = []
    misses: list[Miss] = []
    for name in sorted(merged.options):
        opt = merged.options[name]
        actual = final.get(name)
        if _matches(opt.value, actual):
            satisfied.append(opt)
            continue
        misses.append(Miss(opt, actual or "n", explain(opt, final, db)))
    return ConfigCheck(merged, tuple(satisfied), tuple(misses))


def explain(opt: Option, final: Mapping[str, str], db: KconfigDb | None) -> str:
    """Why `opt` did not get its value, in one line."""
    bare = {k.removeprefix("CONFIG_"): v for k, v in final.items()}
    short = opt.name.removeprefix("CONFIG_")
    if db is None:
        return "not set as requested (no source tree to explain why)"
    sym = db.symbols.get(short)
    if sym is None or not sym.defined_at:
        return "unknown in this version (no 'config " + short + "' in any Kconfig file)"
    if opt.value != "n":
        unmet = []
        for dep in sym.depends:
            try:
                ok = eval_expr(dep, bare) > 0
            except ConfigError:
                continue
            if not ok:
                parts = [f"{s}={bare.get(s, 'n')}" for s in expr_symbols(dep)]
                unmet.append(f"depends on {dep} [{', '.join(parts)}]")
        if unmet:
            return "unmet dependency: " + "; ".join(unmet)
        if not sym.has_prompt:
            by = ", ".join(sym.selected_by) or "nothing"
            return f"has no prompt: only a select can set it (selected by: {by})"
        return "dependencies are met but Kconfig chose another value (a choice or a range?)"
    forcing = []
    for entry in sym.selected_by:
        selector, _, cond = entry.partition(" if ")
        if bare.get(selector, "n") in ("y", "m"):
            try:
                if not cond or eval_expr(cond, bare) > 0:
                    forcing.append(selector)
            except ConfigError:
                forcing.append(selector)
    if forcing:
        return "forced on: selected by " + ", ".join(forcing)
    if not sym.has_prompt:
        return "has no prompt: its default turns it on"
    return "Kconfig kept it on (a default that the request could not override?)"
