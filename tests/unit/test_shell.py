"""The shell's host end (kmatrix attach) over a socket pair, and the guest shell's rc
file: no VM.

The fake shell reads until it has what the test typed (a stream may deliver attach's
opening newline and the typed line in one read or in several), and every wait is bounded,
so a broken attach fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from harness.guest.shell import rcfile
from harness.targets.qemu.attach import DETACH, attach

WAIT = 10.0


class _FakeShell(threading.Thread):
    """Listens at `path`; once `expect` has arrived, sends `reply`, then closes (the
    shell exits) or reads until the client goes (a detach)."""

    def __init__(self, path: Path, expect: bytes, reply: bytes, close: bool) -> None:
        super().__init__(daemon=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.srv.settimeout(WAIT)
        self.expect, self.reply, self.close = expect, reply, close
        self.got = b""
        self.client_left = False

    def run(self) -> None:
        with self.srv:
            conn, _ = self.srv.accept()
        with conn:
            conn.settimeout(WAIT)
            while not self.got.startswith(self.expect):
                data = conn.recv(100)
                if not data:
                    return
                self.got += data
            if self.reply:
                conn.sendall(self.reply)
            if self.close:
                return
            while data := conn.recv(100):
                self.got += data
            self.client_left = True


def test_attach_copies_both_ways_and_ends_when_the_shell_does(tmp_path: Path) -> None:
    shell = _FakeShell(tmp_path / "shell.sock", b"\nuname -r\n", b"prompt# ", close=True)
    shell.start()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"uname -r\n")
    assert attach(tmp_path / "shell.sock", stdin=in_r, stdout=out_w) == "exited"
    shell.join(WAIT)
    assert not shell.is_alive()
    assert shell.got == b"\nuname -r\n"
    assert os.read(out_r, 100) == b"prompt# "


def test_ctrl_close_bracket_detaches_after_sending_what_came_before(tmp_path: Path) -> None:
    shell = _FakeShell(tmp_path / "shell.sock", b"\nls\n", b"", close=False)
    shell.start()
    in_r, in_w = os.pipe()
    _, out_w = os.pipe()
    os.write(in_w, b"ls\n" + DETACH)  # one read may hold both: "ls" still goes first
    assert attach(tmp_path / "shell.sock", stdin=in_r, stdout=out_w) == "detached"
    shell.join(WAIT)
    assert shell.client_left
    assert shell.got == b"\nls\n"


def test_rcfile_defines_the_helpers() -> None:
    text = rcfile("debian-6.12", "kept: cases/test_x.py::test_y failed")
    assert "kmatrix-case()" in text and "unshare --net" in text
    assert "-p harness.guest.plugin" in text and "kmatrix-probes()" in text
    assert "PS1='kmatrix(debian-6.12)" in text
    assert "kept: cases/test_x.py::test_y failed" in text
