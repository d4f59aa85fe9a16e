"""A nested QEMU as the AF_XDP consumer of the bypass path, instead of our backend: QEMU
10.1+ has ``-netdev af-xdp,...,inhibit=on,map-path=PIN`` which creates its own XSKs and
inserts them into an XSKMAP pinned by someone else (the steering program's), starting at
``map-start-index``. This module finds out whether the QEMU at hand can do that (its
``-netdev help`` and version) and builds the command line; the case runs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

#: the first QEMU whose af-xdp netdev takes map-path / map-start-index
MAP_PATH_SINCE = (10, 1)


@dataclass(frozen=True)
class QemuNetdevs:
    """A QEMU binary, its version and the netdev backends it was built with."""

    path: str
    version: tuple[int, int, int]
    version_text: str
    backends: tuple[str, ...]

    @property
    def af_xdp(self) -> bool:
        return "af-xdp" in self.backends

    @property
    def map_path(self) -> bool:
        """af-xdp with map-path (10.1+)."""
        return self.af_xdp and self.version[:2] >= MAP_PATH_SINCE

    def why_not(self) -> str | None:
        """Why this QEMU cannot attach to a pinned XSKMAP (None if it can)."""
        listed = ", ".join(self.backends) or "none"
        if not self.af_xdp:
            return (f"{self.path} ({self.version_text}): `-netdev help` lists no af-xdp "
                    f"backend (it has: {listed}); QEMU 10.1+ built with libxdp has "
                    "-netdev af-xdp,...,inhibit=on,map-path=")
        if not self.map_path:
            return (f"{self.path} ({self.version_text}) has -netdev af-xdp but not map-path "
                    f"(since {MAP_PATH_SINCE[0]}.{MAP_PATH_SINCE[1]})")
        return None


def parse_netdev_help(text: str) -> tuple[str, ...]:
    """The backend names of ``qemu-system-* -netdev help`` ("Available netdev backend
    types:" then one per line)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("available netdev backend types"):
            return tuple(ln.strip() for ln in lines[i + 1:] if ln.strip())
    return ()


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, micro) of ``QEMU emulator version 10.0.2 (...)``; ValueError if the
    text has none."""
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"no QEMU version in {text[:120]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def inspect(binary: str = "qemu-system-x86_64", *, timeout: float = 120.0
            ) -> QemuNetdevs | None:
    """What `binary` (looked up in PATH) supports; None if there is no such program."""
    path = shutil.which(binary)
    if path is None:
        return None

    def run(*args: str) -> str:
        proc = subprocess.run([path, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        return proc.stdout + proc.stderr

    text = run("--version")
    return QemuNetdevs(path, parse_version(text), text.splitlines()[0].strip(),
                       parse_netdev_help(run("-netdev", "help")))


def af_xdp_netdev(netdev_id: str, ifname: str, map_path: str, *, queues: int = 1,
                  start_queue: int = 0, mode: str = "skb") -> str:
    """The -netdev argument attaching QEMU to a pinned XSKMAP: no program of its own
    (inhibit=on), its XSKs inserted from index `start_queue`, bound to queues
    start_queue .. start_queue + queues - 1 of `ifname`."""
    if mode not in ("skb", "native"):
        raise ValueError(f"af-xdp mode is skb or native, not {mode!r}")
    for name, value in (("id", netdev_id), ("ifname", ifname), ("map-path", map_path)):
        if not value or "," in value:
            raise ValueError(f"af-xdp {name} {value!r} is empty or has a comma")
    return (f"af-xdp,id={netdev_id},ifname={ifname},mode={mode},queues={queues},"
            f"start-queue={start_queue},inhibit=on,map-path={map_path},"
            f"map-start-index={start_queue}")


def nested_argv(qemu: str, netdev: str) -> list[str]:
    """A QEMU with no guest that only holds the netdev: enough for it to create its XSKs
    and insert them into the map (a frame steered to them then counts as redirected)."""
    return [qemu, "-machine", "none", "-nodefaults", "-display", "none", "-S",
            "-monitor", "none", "-serial", "none", "-netdev", netdev]
