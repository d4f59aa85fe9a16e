"""Check a final .config against what was requested, and explain every miss
(kunit_tool's `validate_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import ConfigError
from .fragments import Option, format_version
from .kconfigdb import KconfigDb, eval_expr, expr_symbols
from .merged import MergedConfig


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
