"""What a build will be, decided before any compiler runs: source, merged config, keys."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import KernelSpecError
from .. import kconfig, sources
from ..kernel import make_label
from .toolchain import Toolchain, detect_toolchain

_FRAGMENT_SUFFIX = re.compile(r"[A-Za-z0-9_.+-]+(?:,[A-Za-z0-9_.+-]+)*")


def split_spec(spec: str) -> tuple[str, list[str] | None]:
    """`debian-source:6.12@-netkit` -> (`debian-source:6.12`, [`-netkit`]).

    The `@FRAGMENTS` suffix picks config fragments where only a spec can be given
    (`kmatrix run --kernel`): comma-separated names, `-NAME` leaves one out of `all`.
    """
    base, sep, tail = spec.rpartition("@")
    if sep and base and _FRAGMENT_SUFFIX.fullmatch(tail) and sources.is_source_spec(base):
        return base, tail.split(",")
    return spec, None


def is_source_spec(spec: str) -> bool:
    """True when `spec` names kernel sources (a tree, debian-source:X, a tarball or URL)."""
    return sources.is_source_spec(split_spec(spec)[0])


@dataclass(frozen=True)
class BuildPlan:
    """Everything decided before any compiler runs."""

    spec: str
    source: sources.SourceSpec
    identity: sources.SourceIdentity
    merged: kconfig.MergedConfig
    toolchain: Toolchain
    #: cache entry key: identity with uncommitted changes + config + toolchain + arch
    key: str
    #: O= folder key: source without uncommitted changes + toolchain + arch. The config is
    #: not part of it: Kbuild tracks each CONFIG_ symbol, so a config change rebuilds only
    #: what depends on the changed symbols (a lock keeps two builds out of one folder)
    dirkey: str

    @property
    def label(self) -> str:
        s = self.source
        if s.kind == "debian-source":
            base = f"debian-source-{s.location}"
        elif s.kind == "tree":
            base = f"src-{Path(s.location).name}-{self.identity.kernelversion}"
        else:
            base = Path(s.location).name
            for suffix in sources.TARBALL_SUFFIXES:
                base = base.removesuffix(suffix)
        extra = [f for f in kconfig.resolve_fragments(None) if f.name not in
                 self.merged.fragments and f.applies_to(self.merged.version)]
        tag = "" if not extra else "-no-" + "-".join(f.name for f in extra)
        return make_label(base + tag)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() + b"\0")
    return h.hexdigest()[:20]


def plan_build(
    spec: str,
    fragments: Sequence[str] | None,
    *,
    cache: Path | None = None,
    mirror: str | None = None,
) -> BuildPlan:
    """Resolve the spec, merge fragments, compute the keys; nothing is built or unpacked.

    An `@FRAGMENTS` suffix on the spec is used when `fragments` is None.
    """
    base, suffix = split_spec(spec)
    if fragments is None:
        fragments = suffix
    source = sources.parse_source_spec(base, mirror)
    if source is None:
        raise KernelSpecError(f"{spec!r} is not a kernel source spec",
                              hint="use a kernel tree, debian-source:X, a tarball or its URL")
    identity = sources.identify(source, cache)
    if not identity.kernelversion:
        identity = sources.prepare(source, cache).identity
    version = kconfig.parse_version(identity.kernelversion)
    merged = kconfig.merge(kconfig.resolve_fragments(list(fragments) if fragments else None),
                           version)
    toolchain = detect_toolchain()
    key = _digest(identity.full, merged.digest(), toolchain.key_text())
    dirkey = _digest(identity.stable, toolchain.key_text())
    return BuildPlan(spec, source, identity, merged, toolchain, key, dirkey)
