"""Frame builders of the AF_XDP cases (harness/guest/xdp/frames.py) and the steering
program's configuration layout (harness/guest/xdp/steer.py), without a kernel: exact
lengths, numbering, IPv4 and UDP checksums checked against an independent computation
(RFC 1071 by 32-bit accumulation), and what a checksum offload would do to a PARTIAL
frame."""

from __future__ import annotations

import ctypes
import socket
import struct

import pytest

from harness.guest.xdp import frames as fr
from harness.guest.xdp.steer import BypassConf, Counts, SteerConf

A = bytes.fromhex("02aa00000001")
B = bytes.fromhex("02bb00000002")


def rfc1071(data: bytes) -> int:
    """Internet checksum, computed differently: 32-bit sum of big-endian words, then
    folded twice."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_of(frame: bytes) -> bytes:
    return frame[fr.UDP_CSUM_START:]


def pseudo(frame: bytes) -> bytes:
    ip = frame[fr.ETH_HLEN: fr.ETH_HLEN + 20]
    return ip[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp_of(frame)))


def test_rfc1071_example() -> None:
    """The worked example of RFC 1071 section 3 (sum 0xddf2, checksum 0x220d)."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert fr.ones_sum(data) == 0xDDF2
    assert rfc1071(data) == 0x220D


@pytest.mark.parametrize("length", [fr.MIN_FRAME, 64, 65, 333, 1514, 9014])
def test_numbered_frames_have_exact_length_and_number(length: int) -> None:
    flow = fr.Flow(A, B)
    frame = flow.frame(77, length)
    assert len(frame) == length
    assert frame[:6] == B and frame[6:12] == A
    assert fr.frame_number(frame) == 77
    assert frame[fr.HEADERS:] == fr.pattern(77, length - fr.HEADERS)
    ip = frame[fr.ETH_HLEN: fr.ETH_HLEN + 20]
    assert rfc1071(ip) == 0, "the IPv4 header checksum does not verify"
    assert struct.unpack_from("!H", ip, 2)[0] == length - fr.ETH_HLEN


def test_pattern_words_say_frame_and_position() -> None:
    raw = fr.pattern(3, 14)
    assert raw == bytes.fromhex("00030000" "00030001" "00030002" "0003")
    assert fr.pattern(0xFFFF, 4) == b"\xff\xff\x00\x00"
    with pytest.raises(ValueError):
        fr.pattern(0x10000, 4)


def test_pattern_index_wraps_at_16_bits() -> None:
    raw = fr.pattern(0x1234, 4 * 0x10002)
    words = struct.unpack(f"!{0x10002}I", raw)
    assert words[0xFFFF] == 0x1234FFFF
    assert words[0x10000:] == (0x12340000, 0x12340001)
    assert all(w == 0x12340000 | i for i, w in enumerate(words[:0x10000]))


def test_too_short_and_foreign_frames() -> None:
    with pytest.raises(ValueError):
        fr.Flow(A, B).frame(1, fr.MIN_FRAME - 1)
    with pytest.raises(ValueError):
        fr.frame_number(b"\0" * 64)


def test_full_checksum_verifies_independently() -> None:
    for n in (64, 99, 1514):
        frame = fr.Flow(A, B).frame(5, n, csum=fr.Csum.FULL)
        assert rfc1071(pseudo(frame) + udp_of(frame)) == 0
        assert fr.udp4_checksum_ok(frame)


def test_no_checksum_is_zero_and_not_ok() -> None:
    frame = fr.Flow(A, B).frame(5, 64)
    assert struct.unpack_from("!H", frame, fr.UDP_CSUM_START + 6)[0] == 0
    assert not fr.udp4_checksum_ok(frame)


def test_partial_checksum_finished_like_an_offload_gives_the_full_frame() -> None:
    """skb_checksum_help: sum everything from csum_start (the field holding the
    pseudo-header sum), fold, invert, write at csum_offset; 0 becomes 0xffff."""
    flow = fr.Flow(A, B)
    for n in (64, 200, 1514):
        partial = flow.frame(9, n, csum=fr.Csum.PARTIAL)
        field = struct.unpack_from("!H", partial, fr.UDP_CSUM_START + 6)[0]
        assert field == fr.pseudo_header_sum(flow.src_ip, flow.dst_ip, len(udp_of(partial)))
        done = ~fr.ones_sum(partial[fr.UDP_CSUM_START:]) & 0xFFFF or 0xFFFF
        finished = bytearray(partial)
        struct.pack_into("!H", finished, fr.UDP_CSUM_START + fr.UDP_CSUM_OFFSET, done)
        assert bytes(finished) == flow.frame(9, n, csum=fr.Csum.FULL)


def test_zero_sum_is_sent_as_ffff() -> None:
    """RFC 768: a computed checksum of 0 is transmitted as all ones."""
    udp = struct.pack("!HHHH", 0, 0, 8, 0)
    # pick addresses whose pseudo-header sum cancels the header: search a few
    for last in range(256):
        src, dst = "0.0.0.0", f"0.0.255.{last}"
        if ~fr.ones_sum(udp, fr.pseudo_header_sum(src, dst, 8)) & 0xFFFF == 0:
            assert fr.udp4_checksum(src, dst, udp) == 0xFFFF
            return
    pytest.skip("no zero-sum example among the candidates")


def test_lengths_cover_the_range() -> None:
    got = fr.lengths(64, smallest=64, largest=1514)
    assert len(got) == 64 and got[0] == 64 and got[-1] == 1514
    assert all(64 <= n <= 1514 for n in got) and len(set(got)) > 32
    assert fr.lengths(1) == [64] and fr.lengths(0) == []


def test_mac_text_roundtrip() -> None:
    assert fr.mac_text(A) == "02:aa:00:00:00:01"
    assert fr.mac_bytes("02:aa:00:00:00:01") == A
    with pytest.raises(ValueError):
        fr.mac_bytes("02:aa")


def test_steer_conf_layout_is_the_c_struct() -> None:
    """struct bypass_conf: vm_mac[6], tuple u8, proto u8, vm_ip, saddr, daddr (network
    order), sport, dport (network order): 24 bytes."""
    assert ctypes.sizeof(BypassConf) == 24
    raw = SteerConf(A, "10.200.0.3", (socket.IPPROTO_UDP, "10.200.0.2", "10.200.0.3",
                                      40000, 5301)).encode()
    assert raw[:6] == A and raw[6:8] == bytes([1, socket.IPPROTO_UDP])
    assert raw[8:12] == socket.inet_aton("10.200.0.3")
    assert raw[12:16] == socket.inet_aton("10.200.0.2")
    assert raw[16:20] == socket.inet_aton("10.200.0.3")
    assert raw[20:24] == struct.pack("!HH", 40000, 5301)
    plain = SteerConf(A).encode()
    assert plain[6:] == bytes(18)
    with pytest.raises(ValueError):
        SteerConf(b"\0" * 5).encode()


def test_counts_difference_and_balance() -> None:
    before = Counts(10, 4, 6, 0, 1000, 400, 600, 1)
    after = Counts(15, 7, 8, 0, 1500, 700, 800, 2)
    delta = after.minus(before)
    assert delta == Counts(5, 3, 2, 0, 500, 300, 200, 1)
    assert delta.balanced and not Counts(3, 1, 1, 0, 0, 0, 0, 0).balanced
