"""`kmatrix attach SOCKET`: this terminal on a guest shell (harness/guest/shell.py).

The socket is the host end of the VM's shell port (QEMU listens on it). The terminal goes
raw while attached, so keys reach the guest's shell as typed (Ctrl-C included); Ctrl-]
detaches and leaves the shell running (a kept VM stays up; `kmatrix attach` again later).
Exiting the shell ends the session and powers the VM off.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

#: Ctrl-]: detach without ending the shell
DETACH = b"\x1d"


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """`fd` in raw mode for the block (nothing to do when it is not a terminal)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(path: Path, stdin: int | None = None, stdout: int | None = None) -> str:
    """Connect the terminal to the shell at `path` until the shell ends ("exited") or the
    user detaches ("detached")."""
    fin = sys.stdin.fileno() if stdin is None else stdin
    fout = sys.stdout.fileno() if stdout is None else stdout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, raw_terminal(fin):
        sock.connect(str(path))
        sock.sendall(b"\n")  # a fresh prompt for whoever attaches
        while True:
            ready, _, _ = select.select([sock, fin], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return "exited"
                os.write(fout, data)
            if fin in ready:
                data = os.read(fin, 4096)
                typed, detach, _ = data.partition(DETACH)
                if typed:
                    sock.sendall(typed)
                if not data or detach:
                    return "detached"
