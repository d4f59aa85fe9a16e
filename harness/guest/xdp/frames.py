"""Frames for the AF_XDP cases: numbered IPv4/UDP frames of an exact length, their
checksums, and reading a frame's number back.

A numbered frame is Ethernet + IPv4 (no options, DF, header checksum) + UDP to a test port
+ a payload whose 4-byte big-endian words are ``number << 16 | word index`` (the last word
cut to fit), so any byte of any frame says which frame and where it came from, and a
received frame is compared with what was sent byte for byte.

UDP checksums come in three kinds (`Csum`): NONE (0: "no checksum", valid for IPv4), FULL
(the real one; 0 is sent as 0xFFFF, RFC 768), PARTIAL (the folded, not inverted, sum of the
pseudo-header only: what a stack leaves for checksum offload to finish, e.g. an AF_XDP tx
frame asking for XDP_TXMD_FLAGS_CHECKSUM).
"""

from __future__ import annotations

import array
import enum
import functools
import socket
import struct
import sys
from dataclasses import dataclass

ETH_HLEN = 14
IP4_HLEN = 20
UDP_HLEN = 8
#: bytes in front of a UDP payload
HEADERS = ETH_HLEN + IP4_HLEN + UDP_HLEN
#: the smallest numbered frame: headers + one payload word
MIN_FRAME = HEADERS + 4
ETH_P_IP = 0x0800
#: offsets of the UDP checksum field within a frame, and where the checksum starts
UDP_CSUM_START = ETH_HLEN + IP4_HLEN
UDP_CSUM_OFFSET = 6


class Csum(enum.Enum):
    """How a frame's UDP checksum field is filled."""

    NONE = "none"
    FULL = "full"
    PARTIAL = "partial"


def ones_sum(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """The 16-bit one's complement sum of `data` (odd length padded with a zero byte),
    folded, plus `start`; not inverted."""
    raw = bytes(data)
    if len(raw) % 2:
        raw += b"\0"
    total = start + sum(int(v) for v in struct.unpack(f"!{len(raw) // 2}H", raw))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ip4_header_checksum(header: bytes) -> int:
    """The IPv4 header checksum of `header` (its checksum field taken as it is: zero it
    first to compute, leave it to verify, when the result is 0)."""
    return ~ones_sum(header) & 0xFFFF


def pseudo_header_sum(src_ip: str, dst_ip: str, udp_length: int,
                      proto: int = socket.IPPROTO_UDP) -> int:
    """Folded one's complement sum of the IPv4 pseudo-header (not inverted)."""
    return ones_sum(socket.inet_aton(src_ip) + socket.inet_aton(dst_ip)
                    + struct.pack("!BBH", 0, proto, udp_length))


def udp4_checksum(src_ip: str, dst_ip: str, udp: bytes) -> int:
    """The UDP checksum of datagram `udp` (header with checksum field 0 + payload), as
    sent: 0xFFFF where the sum gives 0."""
    csum = ~ones_sum(udp, pseudo_header_sum(src_ip, dst_ip, len(udp))) & 0xFFFF
    return csum or 0xFFFF


def udp4_frame(dst_mac: bytes, src_mac: bytes, src_ip: str, dst_ip: str, sport: int,
               dport: int, payload: bytes, *, ident: int = 0,
               csum: Csum = Csum.NONE) -> bytes:
    """Ethernet + IPv4 (DF, TTL 64, header checksum) + UDP + `payload`."""
    udp_len = UDP_HLEN + len(payload)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    if csum is Csum.FULL:
        value = udp4_checksum(src_ip, dst_ip, udp)
    elif csum is Csum.PARTIAL:
        value = pseudo_header_sum(src_ip, dst_ip, udp_len)
    else:
        value = 0
    udp = udp[:6] + struct.pack("!H", value) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IP4_HLEN + udp_len, ident & 0xFFFF, 0x4000,
                     64, socket.IPPROTO_UDP, 0, socket.inet_aton(src_ip),
                     socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", ip4_header_checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + ip + udp


def pattern(number: int, length: int) -> bytes:
    """`length` bytes of words ``number << 16 | index`` (big-endian, the last one cut)."""
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"frame number {number} does not fit 16 bits")
    words = (length + 3) // 4
    raw = bytearray(4 * words)
    raw[0::4] = bytes([number >> 8]) * words
    raw[1::4] = bytes([number & 0xFF]) * words
    index = _indexes(words)
    raw[2::4] = index[0::2]
    raw[3::4] = index[1::2]
    return bytes(raw[:length])


def _indexes(count: int) -> bytes:
    """The 16-bit big-endian words 0, 1, ... (wrapping at 0x10000), `count` of them; built
    at C speed (a frame's pattern word by word in Python costs milliseconds under TCG)."""
    table = _index_table()
    return (table * (count // 0x10000 + 1))[:2 * count]


@functools.cache
def _index_table() -> bytes:
    words = array.array("H", range(0x10000))
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


@dataclass(frozen=True)
class Flow:
    """Addresses of a stream of numbered frames (MACs as 6 bytes)."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: str = "198.18.200.1"
    dst_ip: str = "198.18.200.2"
    sport: int = 40000
    dport: int = 4791

    def frame(self, number: int, length: int, *, dport: int | None = None,
              csum: Csum = Csum.NONE) -> bytes:
        """Numbered frame `number` of exactly `length` bytes (>= MIN_FRAME)."""
        if length < MIN_FRAME:
            raise ValueError(f"a numbered frame needs at least {MIN_FRAME} bytes, not {length}")
        payload = pattern(number, length - HEADERS)
        return udp4_frame(self.dst_mac, self.src_mac, self.src_ip, self.dst_ip, self.sport,
                          self.dport if dport is None else dport, payload, ident=number,
                          csum=csum)

    def frames(self, lengths: list[int], *, first: int = 0) -> list[bytes]:
        """Frames numbered first, first + 1, ... of the given lengths."""
        return [self.frame(first + i, n) for i, n in enumerate(lengths)]


def frame_number(frame: bytes) -> int:
    """The number of a numbered frame (from its first payload word); ValueError if it is
    not an IPv4/UDP frame carrying one."""
    if len(frame) < MIN_FRAME or frame[12:14] != struct.pack("!H", ETH_P_IP):
        raise ValueError(f"a {len(frame)}-byte frame is not a numbered IPv4/UDP frame")
    (word,) = struct.unpack_from("!I", frame, HEADERS)
    if word & 0xFFFF:
        raise ValueError(f"first payload word {word:#010x} has a non-zero index")
    return int(word >> 16)


def udp4_checksum_ok(frame: bytes) -> bool:
    """The UDP checksum of an IPv4/UDP frame verifies (0 counts as "none", not ok)."""
    (value,) = struct.unpack_from("!H", frame, UDP_CSUM_START + UDP_CSUM_OFFSET)
    if value == 0:
        return False
    src = socket.inet_ntoa(frame[ETH_HLEN + 12: ETH_HLEN + 16])
    dst = socket.inet_ntoa(frame[ETH_HLEN + 16: ETH_HLEN + 20])
    udp = frame[UDP_CSUM_START:]
    return ones_sum(udp, pseudo_header_sum(src, dst, len(udp))) == 0xFFFF


def lengths(count: int, *, smallest: int = 64, largest: int = 1514) -> list[int]:
    """`count` frame lengths spread over [smallest, largest], first and last included."""
    if count <= 0:
        return []
    if count == 1:
        return [smallest]
    span = largest - smallest
    middle = [smallest + (i * 7919) % (span + 1) for i in range(1, count - 1)]
    return [smallest, *middle, largest]


def mac_text(mac: bytes) -> str:
    """aa:bb:cc:dd:ee:ff"""
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    """The 6 bytes of an aa:bb:cc:dd:ee:ff address."""
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return raw
