"""Kconfig fragments (kconfigs/): read them, merge them for a kernel series, verify the
final .config and explain what did not survive.

- `fragments`  the fragment format, version gating, selection (`resolve_fragments`)
- `merged`     one merged request per series, and .config reading/amending
- `kconfigdb`  a light reading of a tree's Kconfig files (dependencies, prompts, selects)
- `verify`     requested vs final values, each miss explained
"""

from __future__ import annotations

from .fragments import (
    BASE_FRAGMENT,
    FRAGMENT_DIR,
    Fragment,
    KVersion,
    Option,
    available_fragments,
    format_version,
    load_fragment,
    parse_fragment,
    parse_version,
    resolve_fragments,
)
from .kconfigdb import KconfigDb, Symbol, eval_expr, expr_symbols
from .merged import (
    MergedConfig,
    apply_to_dotconfig,
    dotconfig_version,
    merge,
    parse_dotconfig,
)
from .verify import ConfigCheck, Miss, check_config, explain

__all__ = [
    "BASE_FRAGMENT", "FRAGMENT_DIR", "ConfigCheck", "Fragment", "KVersion", "KconfigDb",
    "MergedConfig", "Miss", "Option", "Symbol", "apply_to_dotconfig", "available_fragments",
    "check_config", "dotconfig_version", "eval_expr", "explain", "expr_symbols",
    "format_version", "load_fragment", "merge", "parse_dotconfig", "parse_fragment",
    "parse_version", "resolve_fragments",
]
