"""When a boot counts as stuck: silence, not total time."""

from __future__ import annotations

import time


class BootClock:
    """When a boot counts as stuck: no progress (new console output, an agent progress
    message) for `stall` seconds, or not ready after `cap_factor` x `stall` in all."""

    def __init__(self, stall: float, cap_factor: float = 3.0) -> None:
        self.stall = stall
        self.cap = stall * cap_factor
        self.start = self.last = time.monotonic()
        self.stage = "kernel boot"
        self._console = -1

    def progress(self, stage: str = "") -> None:
        self.last = time.monotonic()
        if stage:
            self.stage = stage

    def console(self, size: int) -> None:
        if size != self._console:
            if self._console >= 0:
                self.last = time.monotonic()
            self._console = size

    def expired(self) -> str:
        now = time.monotonic()
        if now - self.start > self.cap:
            return f"guest agent not ready after {now - self.start:.0f}s " \
                   f"(limit: 3 x --boot-timeout {self.stall:.0f}s)"
        if now - self.last > self.stall:
            return f"no sign of progress for {now - self.last:.0f}s " \
                   f"(--boot-timeout {self.stall:.0f}s)"
        return ""

    def where(self) -> str:
        return f"last stage: {self.stage}, {time.monotonic() - self.start:.0f}s after start"
