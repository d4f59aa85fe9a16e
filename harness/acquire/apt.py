"""The one reader of apt's package lists: candidates, stanzas, names, downloads.

Stanzas are parsed by python-debian (`Deb822`) and versions compared by its
`debian_support.Version` (Debian Policy 5.6.12), never by hand. `apt-cache show
--no-all-versions` prints the candidate stanza apt itself would install (pins and suites
applied), so "the candidate of a package" is apt's own choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822
from debian.debian_support import Version

from ..command import run, which
from ..errors import UserError

BOOTSTRAP_HINT = "run scripts/bootstrap: it adds bookworm-backports/trixie(-backports) to apt"


@dataclass(frozen=True)
class Package:
    """One stanza of `apt-cache show`, the fields kmatrix uses."""

    name: str
    version: str
    #: package names of Depends (alternatives and version constraints dropped)
    depends: tuple[str, ...]
    #: SHA256 of the .deb ("" when apt does not list one)
    sha256: str = ""

    @classmethod
    def from_stanza(cls, stanza: Deb822) -> Package:
        deps = tuple(
            d.strip().split(" ")[0].split("|")[0]
            for d in stanza.get("Depends", "").split(",") if d.strip()
        )
        return cls(stanza["Package"], stanza["Version"], deps, stanza.get("SHA256", ""))


def parse_stanzas(text: str) -> list[Package]:
    """Every stanza of `apt-cache show` output that names a package and a version."""
    return [Package.from_stanza(s) for s in Deb822.iter_paragraphs(text)
            if "Package" in s and "Version" in s]


def newest(packages: Iterable[Package]) -> Package:
    """The package with the highest Debian version (ValueError when there is none)."""
    return max(packages, key=lambda p: Version(p.version))


def show(specs: Sequence[str]) -> list[Package]:
    """`apt-cache show --no-all-versions SPEC...`: apt's candidate stanza of each."""
    if not specs:
        return []
    out = run([which("apt-cache"), "show", "--no-all-versions", *specs], check=False)
    return parse_stanzas(out.stdout or "")


def candidate(name: str) -> Package:
    """apt's candidate of package `name`; UserError when apt offers none."""
    found = [p for p in show([name]) if p.name == name]
    if not found:
        raise UserError(f"apt offers no candidate for package {name}", hint=BOOTSTRAP_HINT)
    return found[0]


def exact(name: str, version: str) -> Package:
    """The stanza of `name` at `version` (SHA256 and dependencies of that very .deb)."""
    out = run([which("apt-cache"), "show", f"{name}={version}"], check=False)
    found = [p for p in parse_stanzas(out.stdout or "") if p.version == version]
    if not found:
        raise UserError(f"apt knows no {name}={version}", hint=BOOTSTRAP_HINT)
    return found[0]


def search_names(regex: str) -> list[str]:
    """Names of the packages whose name matches `regex` (`apt-cache search --names-only`)."""
    out = run([which("apt-cache"), "search", "--names-only", regex]).stdout
    return [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]


def download(specs: Sequence[str], dest: Path, timeout: float = 1800,
             on_percent: Callable[[float], None] | None = None) -> list[Path]:
    """`apt-get download SPEC...` into `dest`; the .deb files it left there. `on_percent`
    gets apt's own progress (its status lines, APT::Status-Fd) as it comes."""

    def status(line: str) -> None:
        # dlstatus:<item>:<percent>:<description> (apt's documented status format)
        parts = line.split(":", 3)
        if on_percent is not None and len(parts) == 4 and parts[0] == "dlstatus":
            try:
                on_percent(float(parts[2]))
            except ValueError:
                pass

    run([which("apt-get"), "-o", "APT::Status-Fd=1", "download", *specs], cwd=dest,
        timeout=timeout, on_line=status)
    return sorted(dest.glob("*.deb"))
