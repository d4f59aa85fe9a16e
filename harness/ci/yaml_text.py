"""YAML text of a workflow built as Python data (PyYAML, no string templates): key order
kept, multi-line scripts as literal blocks, a comment header saying how it was made."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings as `|` blocks (shell scripts stay readable)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: dict[str, Any], header: list[str]) -> str:
    """`data` as YAML after `header` (comment lines, without the `# `)."""
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=4096, allow_unicode=True)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + body
