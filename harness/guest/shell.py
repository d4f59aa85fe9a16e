"""An interactive shell in the guest, over a virtio-serial port of its own.

`kmatrix shell` (and a VM kept by `kmatrix run --keep-failed`) gets a second control port
(`SHELL_PORT_NAME`) whose host end is a unix socket QEMU listens on; `kmatrix attach
SOCKET` connects a terminal to it. In the guest, the agent runs bash on a pseudo-terminal
and copies bytes between the pty and the port until bash exits.

The shell has the case environment: the checkout as working folder, the guest library on
PYTHONPATH, the compiled BPF objects, and two helpers:

- `kmatrix-case NODEID [pytest options]`: run a case as the agent does (a fresh network
  namespace, the guest plugin, the kernel's expectations where known), e.g. with --pdb;
- `kmatrix-probes`: the feature probes' table for this kernel.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time
from collections.abc import Mapping
from pathlib import Path

from ..protocol import SHELL_PORT_NAME
from .channel import find_port

RCFILE = """\
PS1='kmatrix({label}):\\w# '
kmatrix-case() {{
    unshare --net sh -c 'ip link set lo up; exec "$0" -m pytest -p harness.guest.plugin \
-p no:cacheprovider "$@"' {python} "$@"
}}
kmatrix-probes() {{ {python} -m harness.guest.probes; }}
echo "kmatrix shell on $(uname -r) ({label}): the case environment is ready."
echo "  kmatrix-case NODEID [pytest options]   run a case (fresh network namespace)"
echo "  kmatrix-probes                         the feature probes of this kernel"
{extra}echo "  exit                                   leave (the VM powers off)"
"""


def rcfile(label: str, extra: str = "") -> str:
    """bash's rc file for the shell: prompt, helpers, banner (`extra`: more banner)."""
    lines = "".join(f"echo {line!r}\n" for line in extra.splitlines())
    return RCFILE.format(label=label, python=sys.executable, extra=lines)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def serve(label: str, env: Mapping[str, str], cwd: str, *, rows: int = 40, cols: int = 120,
          banner: str = "") -> int:
    """Run bash on a pty bound to the shell port until it exits; its exit status."""
    port_path = find_port(SHELL_PORT_NAME)
    rc = Path(env.get("TMPDIR", "/tmp")) / "kmatrix-shell.rc"
    rc.write_text(rcfile(label, banner))
    port = os.open(port_path, os.O_RDWR | os.O_NONBLOCK)
    _wait_for_attach(port)  # what the shell prints first (its banner) is for someone
    pid, master = pty.fork()
    if pid == 0:  # the shell
        os.chdir(cwd)
        os.execve("/bin/bash", ["bash", "--rcfile", str(rc), "-i"],
                  {**os.environ, **env, "TERM": env.get("TERM", "xterm-256color")})
    _set_size(master, rows, cols)
    try:
        status = _copy(master, port, pid)
    finally:
        os.close(port)
        os.close(master)
    if status is None:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _wait_for_attach(port: int) -> None:
    """Until `kmatrix attach` connects (it sends a newline first, which is dropped): output
    written before would be lost (nobody on the host end)."""
    while True:
        select.select([port], [], [], 1.0)
        try:
            if os.read(port, 4096):
                return
        except BlockingIOError:
            pass
        time.sleep(0.2)  # EOF: the host end is not connected yet


def _copy(master: int, port: int, pid: int) -> int | None:
    """Shuttle bytes pty <-> port until the shell exits (the pty reads EIO then); its wait
    status when it was reaped here."""
    while True:
        ready, _, _ = select.select([master, port], [], [], 1.0)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as exc:
                if exc.errno == errno.EIO:  # the shell (and its children) closed the pty
                    return None
                raise
            if not data:
                return None
            _write_all(port, data)
        if port in ready:
            try:
                data = os.read(port, 65536)
            except BlockingIOError:
                data = b""
            if data:
                _write_all(master, data)
            else:  # nobody attached (yet, or any more): wait without spinning
                time.sleep(0.2)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        data = data[n:]
