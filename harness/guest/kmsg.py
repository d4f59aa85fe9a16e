"""Kernel log records from /dev/kmsg, read without blocking."""

from __future__ import annotations

import os


def kmsg_message(record: str) -> str:
    """The message of a /dev/kmsg record ("pri,seq,usec,flags;message")."""
    _, _, message = record.partition(";")
    return message.rstrip("\n")


class Kmsg:
    """Kernel log records that appear after the last `drain()`, read from /dev/kmsg."""

    def __init__(self) -> None:
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def drain(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                rec = os.read(self._fd, 8192)
            except BlockingIOError:
                return out
            except BrokenPipeError:  # records overwritten while we were away; go on
                continue
            if not rec:
                return out
            out.append(kmsg_message(rec.decode(errors="replace")))


def record_time(record: str) -> float:
    """Seconds since boot of a /dev/kmsg record ("pri,seq,usec,flags;message")."""
    return int(record.split(";", 1)[0].split(",")[2]) / 1e6


def init_started() -> float | None:
    """When the kernel started init (seconds since boot, from the kernel's own "Run ... as
    init process" record), None when the log no longer has it."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                rec = os.read(fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return None
            except BrokenPipeError:
                continue
            if not rec:
                return None
            if "as init process" in rec:
                return record_time(rec)
    finally:
        os.close(fd)
