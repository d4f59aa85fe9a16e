"""The compiler identity that goes into a build's cache key, and the tools a build needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ...command import run, which
from ...errors import MissingToolError
from .. import kconfig

#: kbuild ARCH for the host; only x86_64 guests are built today
ARCH = "x86_64"
#: default parallelism: the machines have 2 cores shared with VMs
DEFAULT_JOBS = 3
#: headers the build needs, with the Debian package that provides them
HEADERS = {
    "libelf.h": ("libelf-dev", "objtool and resolve_btfids read ELF with libelf"),
    "openssl/opensslv.h": ("libssl-dev", "module signing and certificate tools"),
}



@dataclass(frozen=True)
class Toolchain:
    """The compiler identity that goes into the cache key."""

    #: first line of `gcc --version`
    gcc: str
    #: `pahole --version` ("" when pahole is absent)
    pahole: str
    #: the kbuild ARCH
    arch: str
    #: whether ccache wraps the compiler (not part of the key: same output either way)
    ccache: str | None

    def key_text(self) -> str:
        return f"gcc={self.gcc}\npahole={self.pahole}\narch={self.arch}\n"


def detect_toolchain() -> Toolchain:
    gcc = run([which("gcc"), "--version"]).stdout.splitlines()[0].strip()
    try:
        pahole = run([which("pahole"), "--version"]).stdout.strip()
    except MissingToolError:
        pahole = ""
    try:
        ccache: str | None = which("ccache")
    except MissingToolError:
        ccache = None
    return Toolchain(gcc, pahole, ARCH, ccache)


def _pahole_number(text: str) -> int:
    m = re.search(r"(\d+)\.(\d+)", text)
    return int(m.group(1)) * 100 + int(m.group(2)) if m else 0


def check_build_tools(merged: kconfig.MergedConfig, toolchain: Toolchain) -> None:
    """MissingToolError naming the package for anything the build will need."""
    for tool in ("gcc", "make", "flex", "bison", "bc", "tar"):
        which(tool)
    btf = merged.options.get("CONFIG_DEBUG_INFO_BTF")
    if btf is not None and btf.value == "y":
        if not toolchain.pahole:
            raise MissingToolError(
                "CONFIG_DEBUG_INFO_BTF=y needs pahole, which is not installed",
                hint="install dwarves (pahole >= 1.16)",
            )
        if _pahole_number(toolchain.pahole) < 116:
            raise MissingToolError(f"pahole {toolchain.pahole} is too old for BTF (>= 1.16)",
                                   hint="install a newer dwarves")
    for header, (pkg, why) in HEADERS.items():
        if not any(Path(d, header).is_file() for d in ("/usr/include", "/usr/local/include")):
            raise MissingToolError(f"header {header} not found ({why})", hint=f"install {pkg}")
