"""The resolved kernel: what every stage after "acquire" works with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel, whatever it came from (Debian package, build, path, host)."""

    #: the spec the user wrote (`debian:6.12`, `./linux`, `host`, ...), for messages
    spec: str
    #: short label used in test ids and report columns, e.g. `debian-6.12`
    label: str
    #: image handed to `vng -r`; modules (if any) are found beside it by virtme-ng
    image: Path
    #: `uname -r` of the kernel when known before booting (None: learnt at boot)
    release: str | None = None
    #: where it came from, one line for reports ("Debian package linux-image-... 6.12.117-1")
    origin: str = ""
    #: exact package version or build cache key: what "the same kernel" means
    version: str | None = None
    #: extra facts for reports (config check results, build key, ...)
    properties: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    #: its .config when known (a package's boot/config-*, a build's config): what the
    #: expectations read to tell "configured out" from "broken"
    config: Path | None = None

    @property
    def series(self) -> tuple[int, int] | None:
        """(major, minor) from the release, when the release is known."""
        m = re.match(r"(\d+)\.(\d+)", self.release or "")
        return (int(m.group(1)), int(m.group(2))) if m else None


_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.+-]+")


def make_label(text: str) -> str:
    """A test-id-safe label: no brackets, slashes or spaces (pytest ids, file names)."""
    label = _LABEL_BAD.sub("-", text.strip()).strip("-")
    return label or "kernel"
