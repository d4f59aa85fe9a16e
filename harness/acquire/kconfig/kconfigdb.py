"""A light reading of a kernel tree's Kconfig files, enough to explain a missing option."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError


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
