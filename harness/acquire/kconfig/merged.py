"""Merge fragments for one kernel series, and read or amend a .config with the result."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .fragments import UNSET_RE, Fragment, KVersion, Option, format_version, parse_version


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
            m = UNSET_RE.match(line)
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
        if line_symbol(line) not in merged.options
    ]
    return "\n".join([*kept, merged.render().rstrip("\n")]) + "\n"


def line_symbol(line: str) -> str | None:
    line = line.strip()
    if line.startswith("CONFIG_"):
        return line.partition("=")[0]
    m = UNSET_RE.match(line)
    return m.group(1) if m else None
