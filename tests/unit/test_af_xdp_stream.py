"""QEMU -netdev stream framing (harness/guest/xdp/stream.py) without a kernel: frames cut
anywhere in the byte stream come back whole and in order; lengths QEMU refuses break the
stream for good; the VM-side relay (harness/guest/xdp/bypass.py) frames and unframes."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time

import pytest

from harness.guest.xdp.bypass import TapRelay
from harness.guest.xdp.stream import (
    HEADER,
    MAX_FRAME,
    FramingError,
    StreamDecoder,
    encode_frame,
    encode_frames,
)

FRAMES = [b"\x01" * 60, b"", bytes(range(256)) * 6, b"\xff" * 1514, b"x"]


def test_encoding_is_a_big_endian_length_then_the_frame() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(bytearray(b"\x10" * 300))[:HEADER] == struct.pack("!I", 300)
    assert encode_frames([b"a", b"bc"]) == b"\x00\x00\x00\x01a\x00\x00\x00\x02bc"


def test_one_feed_gives_every_frame_in_order() -> None:
    dec = StreamDecoder()
    assert dec.feed(encode_frames(FRAMES)) == FRAMES
    assert (dec.pending, dec.frames) == (0, len(FRAMES))


@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 7, 64, 1000])
def test_any_cut_of_the_stream_gives_the_same_frames(chunk: int) -> None:
    wire = encode_frames(FRAMES)
    dec = StreamDecoder()
    out: list[bytes] = []
    for i in range(0, len(wire), chunk):
        out += dec.feed(wire[i:i + chunk])
    assert out == FRAMES
    assert dec.pending == 0


def test_every_split_point_of_two_frames() -> None:
    wire = encode_frames([b"first frame", b"second"])
    for cut in range(len(wire) + 1):
        dec = StreamDecoder()
        got = dec.feed(wire[:cut]) + dec.feed(wire[cut:])
        assert got == [b"first frame", b"second"], cut


def test_partial_frames_wait_in_pending() -> None:
    dec = StreamDecoder()
    assert dec.feed(b"\x00\x00") == []
    assert dec.pending == 2
    assert dec.feed(b"\x00\x03ab") == []
    assert dec.pending == 6
    assert dec.feed(memoryview(b"c")) == [b"abc"]
    assert dec.pending == 0


def test_the_largest_frame_qemu_takes_passes() -> None:
    frame = b"\xaa" * MAX_FRAME
    assert StreamDecoder().feed(encode_frame(frame)) == [frame]


def test_a_longer_frame_is_refused_on_both_sides() -> None:
    with pytest.raises(FramingError, match="exceeds"):
        encode_frame(b"\0" * (MAX_FRAME + 1))
    dec = StreamDecoder()
    with pytest.raises(FramingError, match=str(MAX_FRAME + 1)):
        dec.feed(struct.pack("!I", MAX_FRAME + 1) + b"rest")
    with pytest.raises(FramingError, match="out of sync"):
        dec.feed(encode_frame(b"ok"))


def test_a_smaller_limit_is_honoured() -> None:
    dec = StreamDecoder(max_frame=10)
    assert dec.feed(encode_frame(b"0123456789")) == [b"0123456789"]
    with pytest.raises(FramingError):
        dec.feed(encode_frame(b"0123456789A"))


def test_tap_relay_moves_frames_both_ways() -> None:
    """The VM-side relay between a "TAP" (a SOCK_SEQPACKET pair keeps frame boundaries
    like a TAP fd) and a stream peer standing in for the backend: frames from the TAP
    leave framed, framed frames arrive at the TAP whole; counts and records exact."""
    frames_up = [bytes([i]) * (60 + i) for i in range(20)]
    frames_down = [bytes([0x80 | i]) * (1500 - i) for i in range(20)]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        vm_end, relay_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        relay_end.setblocking(False)
        with listener, vm_end, relay_end:
            with TapRelay(relay_end.fileno(), path, record=True) as relay:
                backend, _ = listener.accept()
                with backend:
                    backend.settimeout(10)
                    for frame in frames_up:
                        vm_end.send(frame)  # the VM's stack writes to its TAP
                    dec = StreamDecoder()
                    got: list[bytes] = []
                    while len(got) < len(frames_up):
                        got += dec.feed(backend.recv(65536))
                    assert got == frames_up
                    backend.sendall(encode_frames(frames_down))
                    vm_end.settimeout(10)
                    down = [vm_end.recv(65536) for _ in frames_down]
                    assert down == frames_down
                    deadline = time.monotonic() + 10
                    while relay.to_vm.frames < len(frames_down) and time.monotonic() < deadline:
                        time.sleep(0.01)
            assert relay.from_vm.seen == frames_up and relay.to_vm.seen == frames_down
            assert relay.from_vm.frames == 20 and relay.to_vm.octets == sum(map(len, frames_down))
            assert relay.tap_drops == 0
