"""The console copier: everything QEMU prints lands in the log, and the kernel's banner is
noticed even when the serial port's small writes split it across reads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from harness.targets.qemu.vm import _copy_stream


class Pieces(io.RawIOBase):
    """A raw stream whose reads return the given pieces, one per read (as a pipe fed by
    QEMU's serial port returns a few bytes at a time)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.pieces:
            return 0
        piece = self.pieces.pop(0)
        buffer[:len(piece)] = piece
        return len(piece)


def stream(pieces: list[bytes]) -> io.BufferedReader:
    """What Popen gives: a buffered reader, whose read1 returns one raw read at most."""
    return io.BufferedReader(Pieces(pieces))


def test_banner_split_across_reads_is_noticed(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    pieces = [b"Probing EDD... ok\n[    0.000000] Linux v", b"ersion 6.12.117 (gcc)\n", b"x"]
    marks: dict[str, float] = {}
    _copy_stream(stream(pieces), log, marks)
    assert "banner" in marks
    assert log.read_bytes() == b"".join(pieces)


def test_no_banner_no_mark(tmp_path: Path) -> None:
    marks: dict[str, float] = {}
    _copy_stream(stream([b"Linux", b" is not the banner without its version\n"]),
                 tmp_path / "console.log", marks)
    assert marks == {}
