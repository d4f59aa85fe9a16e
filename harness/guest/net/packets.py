"""Real packets between namespaces, from this process: ICMP echo over a raw socket, UDP and
TCP exchanges, AF_PACKET captures, and frame filters. Each socket is created in its
namespace (setns per socket) and has a deadline."""

from __future__ import annotations

import contextlib
import secrets
import socket
import struct
import time
from collections.abc import Iterator

from ..uapi import SO_MARK
from .netns import socket_in

ETH_P_ALL, ETH_P_IP, ETH_P_ARP = 0x0003, 0x0800, 0x0806
PACKET_OUTGOING = 4

#: how long to wait for traffic that must NOT arrive (it is local: microseconds when it does)
QUIET = 1.0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(ns: str, dst: str, count: int = 3, timeout: float = 2.0) -> int:
    """ICMP echo from netns `ns` over a raw socket; returns how many replies came back."""
    ident = secrets.randbelow(0xFFFF)
    replies = 0
    with socket_in(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(count):
            payload = secrets.token_bytes(16)
            head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            csum = checksum(head + payload)
            s.sendto(struct.pack("!BBHHH", 8, 0, csum, ident, seq) + payload, (dst, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    pkt, addr = s.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (pkt[0] & 0x0F) * 4
                typ, _code, _c, rid, rseq = struct.unpack_from("!BBHHH", pkt, ihl)
                if addr[0] == dst and typ == 0 and (rid, rseq) == (ident, seq):
                    if pkt[ihl + 8 :] == payload:
                        replies += 1
                    break
    return replies


def udp_probe(
    src_ns: str,
    dst_ns: str,
    dst_ip: str,
    *,
    count: int = 5,
    port: int = 0,
    mark: int | None = None,
    priority: int | None = None,
    wait: float = QUIET,
) -> int:
    """Send `count` UDP datagrams src_ns -> dst_ip:port (listening in dst_ns; port 0: any
    free one), optionally with SO_MARK / SO_PRIORITY; returns how many arrived."""
    token = secrets.token_bytes(8)
    with (
        socket_in(dst_ns, socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket_in(src_ns, socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind((dst_ip, port))
        port = rx.getsockname()[1]
        if mark is not None:
            tx.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        if priority is not None:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, priority)
        for i in range(count):
            tx.sendto(token + bytes([i]), (dst_ip, port))
        got: set[int] = set()
        deadline = time.monotonic() + wait
        while len(got) < count and (left := deadline - time.monotonic()) > 0:
            rx.settimeout(left)
            try:
                data = rx.recv(64)
            except TimeoutError:
                break
            if data[:8] == token:
                got.add(data[8])
        return len(got)


def tcp_exchange(client_ns: str, server_ns: str, server_ip: str, timeout: float = 3.0) -> bool:
    """TCP connect + request/response across the pair. False if the handshake times out."""
    payload = secrets.token_bytes(3000)  # more than one segment each way
    with socket_in(server_ns, socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind((server_ip, 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with socket_in(client_ns, socket.AF_INET, socket.SOCK_STREAM) as cli:
            cli.settimeout(timeout)
            try:
                cli.connect((server_ip, port))
            except (TimeoutError, ConnectionRefusedError, OSError):
                return False
            srv.settimeout(timeout)
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(timeout)
                cli.sendall(payload)
                received = b""
                while len(received) < len(payload):
                    chunk = conn.recv(65536)
                    assert chunk, "server side: connection closed early"
                    received += chunk
                assert received == payload
                conn.sendall(payload[::-1])
                echoed = b""
                while len(echoed) < len(payload):
                    chunk = cli.recv(65536)
                    assert chunk, "client side: connection closed early"
                    echoed += chunk
                assert echoed == payload[::-1]
    return True


class Capture:
    """AF_PACKET capture of every frame on one device, set up before the traffic."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[tuple[int, bytes]] = []

    def drain(self, wait: float = QUIET) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                break
            self.frames.append((addr[2], data))
        return self.frames

    def ethertype(self, etype: int, incoming_only: bool = True) -> list[bytes]:
        return [
            f
            for pkttype, f in self.frames
            if len(f) >= 14
            and struct.unpack_from("!H", f, 12)[0] == etype
            and not (incoming_only and pkttype == PACKET_OUTGOING)
        ]


@contextlib.contextmanager
def capture(ns: str, ifname: str) -> Iterator[Capture]:
    with socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, ETH_P_ALL))
        yield Capture(s)


def arp_requests_for(frames: list[bytes], target_ip: str) -> list[bytes]:
    want = socket.inet_aton(target_ip)
    return [f for f in frames if struct.unpack_from("!H", f, 20)[0] == 1 and f[38:42] == want]


def udp_to(frames: list[bytes], dst_ip: str) -> list[bytes]:
    want = socket.inet_aton(dst_ip)
    return [f for f in frames if f[14 + 9] == socket.IPPROTO_UDP and f[14 + 16 : 14 + 20] == want]


def udp_frame(dst_mac: bytes, src_mac: bytes, src_ip: str, dst_ip: str, sport: int,
              dport: int, payload: bytes, ident: int = 0) -> bytes:
    """An Ethernet + IPv4 (checksummed, DF) + UDP (checksum 0) frame, as bytes."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0x4000, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src_ip),
                     socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + udp


def mac_address(ifname: str) -> bytes:
    """The device's MAC address (sysfs of the calling process's view)."""
    with open(f"/sys/class/net/{ifname}/address") as fh:
        return bytes.fromhex(fh.read().strip().replace(":", ""))
