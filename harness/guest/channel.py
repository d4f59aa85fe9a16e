"""The agent's end of the control channel: JSON lines over the virtio-serial port."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..protocol import PORT_NAME, LineBuffer, Message, encode

#: seconds of EOF on the control port after which the host is taken to be gone
HOST_GONE_AFTER = 10.0


def find_port(name: str = PORT_NAME) -> Path:
    for entry in Path("/sys/class/virtio-ports").glob("*"):
        try:
            if (entry / "name").read_text().strip() == name:
                return Path("/dev") / entry.name
        except OSError:
            continue
    raise RuntimeError(f"virtio-serial port {name} not found in /sys/class/virtio-ports")


class Channel:
    """JSON lines over the virtio-serial control port."""

    def __init__(self, port: Path) -> None:
        self.fd = os.open(port, os.O_RDWR)
        self.buf = LineBuffer()

    def send(self, msg: Message) -> None:
        data = encode(msg)
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def messages(self) -> Iterator[Message]:
        eof_since: float | None = None
        while True:
            data = os.read(self.fd, 65536)
            if not data:  # host side not connected (yet, or any more)
                now = time.monotonic()
                eof_since = eof_since or now
                if now - eof_since > HOST_GONE_AFTER:
                    return
                time.sleep(0.1)
                continue
            eof_since = None
            yield from self.buf.feed(data)
