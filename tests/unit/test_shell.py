"""The shell's host end (kmatrix attach) over a socket pair, and the guest shell's rc
file: no VM."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from harness.guest.shell import rcfile
from harness.targets.qemu.attach import DETACH, attach


def _server(path: Path, replies: list[bytes], got: list[bytes], close: bool) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(path))
        srv.listen(1)
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(100))  # the newline attach sends first
            for reply in replies:
                conn.sendall(reply)
            got.append(conn.recv(100))
            if not close:
                conn.recv(100)  # until the client goes


def test_attach_copies_both_ways_and_ends_when_the_shell_does(tmp_path: Path) -> None:
    sock = tmp_path / "shell.sock"
    got: list[bytes] = []
    server = threading.Thread(target=_server, args=(sock, [b"prompt# "], got, True))
    server.start()
    while not sock.exists():
        pass
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.write(in_w, b"uname -r\n")
    assert attach(sock, stdin=in_r, stdout=out_w) == "exited"
    server.join()
    assert got == [b"\n", b"uname -r\n"]
    assert os.read(out_r, 100) == b"prompt# "


def test_ctrl_close_bracket_detaches(tmp_path: Path) -> None:
    sock = tmp_path / "shell.sock"
    got: list[bytes] = []
    server = threading.Thread(target=_server, args=(sock, [], got, False))
    server.start()
    while not sock.exists():
        pass
    in_r, in_w = os.pipe()
    _, out_w = os.pipe()
    os.write(in_w, b"ls\n")
    os.write(in_w, DETACH)
    assert attach(sock, stdin=in_r, stdout=out_w) == "detached"
    server.join()


def test_rcfile_defines_the_helpers() -> None:
    text = rcfile("debian-6.12", "kept: cases/test_x.py::test_y failed")
    assert "kmatrix-case()" in text and "unshare --net" in text
    assert "-p harness.guest.plugin" in text and "kmatrix-probes()" in text
    assert "PS1='kmatrix(debian-6.12)" in text
    assert "kept: cases/test_x.py::test_y failed" in text
