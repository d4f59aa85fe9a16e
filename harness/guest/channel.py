"""The agent's end of the control channel: JSON lines over the virtio-serial port, or over
stdin/stdout when the host started the agent over SSH (KMATRIX_CHANNEL=stdio)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..protocol import PORT_NAME, LineBuffer, Message, encode

#: seconds of EOF on the control port after which the host is taken to be gone
HOST_GONE_AFTER = 10.0
#: "stdio": speak over stdin/stdout (an SSH target), else the virtio-serial port
CHANNEL_ENV = "KMATRIX_CHANNEL"


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
        #: where messages go (the same fd as `fd` for the port)
        self.out = self.fd
        self.buf = LineBuffer()

    def send(self, msg: Message) -> None:
        data = encode(msg)
        while data:
            n = os.write(self.out, data)
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


class StdioChannel(Channel):
    """JSON lines over stdin/stdout (the agent started over an SSH channel). fd 1 becomes a
    copy of stderr, so what else writes there (the agent's prints, pytest's, a case's
    subprocesses) goes to the host's console log instead of corrupting the protocol; EOF
    on stdin means the host is gone (no reconnecting, unlike the port)."""

    def __init__(self) -> None:
        self.fd = os.dup(0)
        self.out = os.dup(1)
        os.dup2(2, 1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        self.buf = LineBuffer()

    def messages(self) -> Iterator[Message]:
        while data := os.read(self.fd, 65536):
            yield from self.buf.feed(data)


def open_channel() -> Channel:
    """The channel the host set up for this agent."""
    if os.environ.get(CHANNEL_ENV) == "stdio":
        return StdioChannel()
    return Channel(find_port())
