"""Small traffic helpers of the project."""

from __future__ import annotations

import socket


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_udp(port: int, count: int) -> None:
    """`count` datagrams to 127.0.0.1:`port` (nobody needs to listen)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(bytes([i]) * 8, ("127.0.0.1", port))
