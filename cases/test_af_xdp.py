"""AF_XDP sockets on a veth pair, after the kernel selftests' xskxceiver (test_xsk.c,
prog_tests/xsk.c): every case in generic (SKB) and native (DRV) XDP mode.

Topology: a veth pair in the case's own namespace. Frames are numbered IPv4/UDP frames
(harness/guest/xdp/frames.py) sent from end `b`, by an XSK bound there in copy mode
(veth has no zero-copy), to end `a`, where an XDP program redirects the test port's frames
into the XSK of their rx queue (bpf/xsk_redirect.bpf.c, bpf/xsk_cases.bpf.c; other frames
go to the stack). Every received frame is compared with what was sent byte for byte, in
order; counts are exact: frames received, completions, XDP_STATISTICS, the program's
own counters.

Cases: send/receive (4 KiB and 2 KiB frames, one packet), poll rx/tx (and their
timeouts: rx ring empty, tx ring full), rx ring full, fill ring empty, rx dropped, tx
invalid descriptors, invalid descriptors (aligned mode), UMEM headroom, bidirectional, XDP
program cleanup, XDP_DROP of half the frames, shared UMEM (one queue, two sockets; two
devices), busy polling, multi-buffer (6.6), rx metadata from the XDP program, tx metadata
with a checksum request (6.8). Deadlines are xskxceiver's scaled for TCG
(harness/guest/xdp/rig.py); no check is weaker than upstream's.
"""

from __future__ import annotations

import ctypes
import errno
import select
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest import xdp
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.links import delete_link
from harness.guest.net.packets import ETH_P_ALL
from harness.guest.net.veth import VethPair, create_veth_pair
from harness.guest.wait import wait_until
from harness.guest.xdp import device, rig
from harness.guest.xdp.frames import Csum, Flow, frame_number, lengths, udp4_checksum_ok
from harness.guest.xdp.rig import POLL_TIMEOUT, QUIET, TIMEOUT
from harness.guest.xdp.sockopt import wakeup_rx, wakeup_tx
from harness.guest.xdp.uapi import XDP_TX_METADATA

#: every case moves a few hundred frames through Python rings: minutes under TCG
pytestmark = [pytest.mark.requires("af_xdp"), pytest.mark.case_timeout(300)]

PORT = 4793
MODES = {"skb": xdp.XdpMode.SKB, "drv": xdp.XdpMode.DRV}
#: xskxceiver's MIN_PKT_SIZE and its too-long frame (MAX_ETH_JUMBO_SIZE + 1)
MIN_PKT = 64
INVALID_LEN = 9001
#: SOL_SOCKET options of include/uapi/asm-generic/socket.h
SO_BUSY_POLL, SO_PREFER_BUSY_POLL, SO_BUSY_POLL_BUDGET = 46, 69, 70
#: struct xsk_tx_metadata (include/uapi/linux/if_xdp.h): flags, csum_start, csum_offset
XDP_TXMD_FLAGS_CHECKSUM = 1 << 1
TX_META_LEN = 24


@dataclass
class Veth:
    """The veth pair of a case, its XDP mode and the flow from `b` to `a`."""

    pair: VethPair
    mode: xdp.XdpMode
    stack: ExitStack
    a_mac: bytes
    b_mac: bytes

    @property
    def a(self) -> int:
        return self.pair.a.ifindex

    @property
    def b(self) -> int:
        return self.pair.b.ifindex

    def flow(self, *, reverse: bool = False) -> Flow:
        if reverse:
            return Flow(self.a_mac, self.b_mac, "198.18.200.2", "198.18.200.1", dport=PORT)
        return Flow(self.b_mac, self.a_mac, dport=PORT)

    def program(self, name: str = "xsk_redirect", prog: str = "xsk_redirect", *,
                on: int | None = None, socks: tuple[xdp.XskSocket, ...] = (),
                ports: int = 1) -> lb.BpfObject:
        """Load bpf/NAME, attach `prog` to `on` (default end a) in the case's mode and
        register `socks` at XSKMAP keys 0, 1, ..."""
        obj = rig.load_program(self.stack, name, port=PORT, ports=ports)
        rig.redirect_to(self.stack, obj, prog, self.a if on is None else on, self.mode,
                        socks)
        return obj

    def xsk(self, ifindex: int, *, umem_config: xdp.UmemConfig | None = None,
            config: xdp.XskConfig | None = None) -> xdp.XskSocket:
        """An XSK on queue 0 of `ifindex` over a UMEM of its own (rig.open_xsk)."""
        return rig.open_xsk(self.stack, ifindex, umem_config=umem_config, config=config)


@pytest.fixture(params=list(MODES))
def veth(request: pytest.FixtureRequest) -> Iterator[Veth]:
    """A veth pair (both ends in the case's namespace, up, no addresses) and the XDP mode
    of this run of the case; everything on it is closed before the pair is deleted."""
    pair = create_veth_pair(prefix="kx", addresses=False)
    try:
        with ExitStack() as stack:
            yield Veth(pair, MODES[request.param], stack, device.mac_of(pair.a.name),
                       device.mac_of(pair.b.name))
    finally:
        delete_link(pair.a.name)


def assert_same(got: list[xdp.RxFrame], sent: list[bytes]) -> None:
    """The received frames are the sent ones, byte for byte, in order."""
    data = [f.data for f in got]
    if data != sent:
        for i, (g, s) in enumerate(zip(data, sent, strict=False)):
            assert g == s, (f"frame {i} differs: sent {len(s)} bytes {s[:48].hex()}..., "
                            f"got {len(g)} bytes {g[:48].hex()}...")
        assert len(data) == len(sent), f"{len(data)} frames received, {len(sent)} sent"


def zero_stats(sock: xdp.XskSocket) -> None:
    """No drop, no invalid descriptor, no full or empty ring on the receive path. (Not
    tx_ring_empty_descs: every kick that finds the tx ring drained counts there, and
    waiting for completions kicks.)"""
    stats = sock.statistics()
    nonzero = {k: v for k, v in vars(stats).items()
               if k not in ("filled", "tx_ring_empty_descs") and v}
    assert not nonzero, f"XDP_STATISTICS of {sock}: {nonzero}"


def stats_v2(sock: xdp.XskSocket, expect: KernelExpectations) -> xdp.XskStatistics:
    """The statistics, refused (skip/fail) where the kernel has only the 5.9-less three."""
    stats = sock.statistics()
    if stats.filled < 6:
        expect.refused("af_xdp_stats_v2", f"XDP_STATISTICS returned {stats.filled} "
                       "counters (no rx_ring_full, fill-ring-empty, tx-ring-empty)")
    return stats


def record_invalid_completion(record_property: Callable[[str, object], None],
                              completed: list[int], valid: list[int],
                              posted: list[int]) -> None:
    """Copy-mode tx completes either only the valid descriptors (the classic behaviour,
    what xskxceiver's outstanding_tx accounting assumes) or every descriptor it consumed,
    invalid ones included (seen on 6.18.y after the 2025 rework of completion-queue
    production, "xsk: Fix immature cq descriptor production" and its follow-ups). Either
    is exact; anything else (a missing valid address, an address never posted, a
    partial set of the invalid ones) fails. The case records which one it saw."""
    if sorted(completed) == sorted(valid):
        record_property("observed", "invalid tx descriptors: skipped, not completed")
    elif sorted(completed) == sorted(posted):
        record_property("observed", "invalid tx descriptors: completed with the valid ones")
    else:
        raise AssertionError(f"completions {sorted(completed)} are neither the valid "
                             f"descriptors {sorted(valid)} nor all posted {sorted(posted)}")


def stats_when(sock: xdp.XskSocket, cond: Callable[[xdp.XskStatistics], bool],
               what: str) -> xdp.XskStatistics:
    """The socket's statistics once `cond` holds for them (deadline TIMEOUT)."""
    box: list[xdp.XskStatistics] = []

    def check() -> bool:
        box[:] = [sock.statistics()]
        return cond(box[0])

    try:
        wait_until(check, timeout=TIMEOUT, what=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last statistics: {box[-1] if box else None}") from None
    return box[0]


# === send and receive =======================================================================


@pytest.mark.parametrize("frame_size", [4096, 2048])
def test_send_receive(veth: Veth, frame_size: int) -> None:
    """64 frames of 64..1514 bytes from an XSK on b to an XSK on a (UMEM frames of 4 KiB
    and 2 KiB): all arrive byte for byte in order, each at XDP_PACKET_HEADROOM into its
    frame; 64 completions; the program redirected exactly 64; no socket counts anything."""
    cfg = xdp.UmemConfig(frame_count=256, frame_size=frame_size, fill_size=128,
                         completion_size=128)
    rx = veth.xsk(veth.a, umem_config=cfg)
    tx = veth.xsk(veth.b, umem_config=cfg)
    obj = veth.program(socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(64, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    got = rig.receive_exactly(rx, len(frames))
    assert_same(got, frames)
    offsets = {rig.data_offset(f.desc, frame_size) for f in got}
    assert offsets == {xdp.XDP_PACKET_HEADROOM}, offsets
    assert rig.prog_counts(obj) == rig.ProgCounts(64, 64, 0, 0)
    zero_stats(rx)
    zero_stats(tx)


def test_send_receive_single_packet(veth: Veth) -> None:
    """One 64-byte frame, the smallest the selftests send: it arrives alone and intact."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    obj = veth.program(socks=(rx,))
    rx.fill()
    frame = veth.flow().frame(0, MIN_PKT)
    rig.send_all(tx, [frame])
    assert_same(rig.receive_exactly(rx, 1), [frame])
    rig.assert_nothing_received(rx)
    assert rig.prog_counts(obj) == rig.ProgCounts(1, 1, 0, 0)


# === poll =================================================================================


def test_poll_rx(veth: Veth) -> None:
    """poll(POLLIN) times out on an empty rx ring, then reports every batch of the 32
    frames sent, which are read only after poll said so; all arrive intact."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    rx.fill()
    assert rx.poll(select.POLLIN, QUIET) == 0, "POLLIN on an empty rx ring"
    frames = veth.flow().frames(lengths(32, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    got: list[xdp.RxFrame] = []
    while len(got) < len(frames):
        events = rx.poll(select.POLLIN, POLL_TIMEOUT)
        assert events & select.POLLIN, (f"poll gave {events:#x} with {len(got)} of "
                                        f"{len(frames)} frames read")
        batch = rx.receive(64)
        assert batch, "POLLIN reported, yet the rx ring was empty"
        got += batch
    assert_same(got, frames)


def test_poll_tx(veth: Veth) -> None:
    """Send 256 frames through a 32-entry tx ring, waiting for room with poll(POLLOUT)
    only (XDP_USE_NEED_WAKEUP: in copy mode poll drives transmission); all arrive intact
    and complete."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b, config=xdp.XskConfig(rx_size=32, tx_size=32,
                                               bind_flags=xdp.XDP_USE_NEED_WAKEUP))
    veth.program(socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(256, smallest=MIN_PKT))
    assert tx.tx is not None
    got: list[xdp.RxFrame] = []
    sent = completed = 0
    while sent < len(frames):
        completed += len(tx.complete())
        room = min(tx.tx.free(1), tx.umem.free_count, len(frames) - sent)
        if room:
            tx.transmit(frames[sent:sent + room])
            sent += room
        else:
            events = tx.poll(select.POLLOUT, POLL_TIMEOUT)
            assert events & select.POLLOUT, f"no POLLOUT with {sent} frames posted"
        got += rx.receive(64)
    completed += len(tx.wait_complete(len(frames) - completed))
    assert completed == len(frames)
    if len(got) < len(frames):
        got += rig.receive_exactly(rx, len(frames) - len(got))
    assert_same(got, frames)


def test_poll_tx_queue_full(veth: Veth) -> None:
    """The tx ring cannot drain while the completion ring is full (copy mode reserves a
    completion slot per frame: the backpressure of the tx path): 64 frames are sent and
    their completions left unread, the 64-entry completion ring is then full; 64 more
    fill the tx ring, and poll(POLLOUT) times out (poll drives tx in copy mode, but the
    kernel cannot take any) with nothing more reaching a. Once the completions are read,
    POLLOUT comes back and the second 64 frames arrive; all 128 intact, in order."""
    rx = veth.xsk(veth.a, config=xdp.XskConfig(rx_size=256, tx_size=32))
    tx = veth.xsk(veth.b, umem_config=xdp.UmemConfig(
        frame_count=256, frame_size=4096, fill_size=64, completion_size=64),
                  config=xdp.XskConfig(rx_size=64, tx_size=64))
    veth.program(socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(128, smallest=MIN_PKT))
    assert tx.tx is not None

    def post(batch: list[bytes]) -> list[int]:
        addrs = tx.umem.alloc_frames(len(batch))
        descs = []
        for addr, frame in zip(addrs, batch, strict=True):
            tx.umem.write(addr, frame)
            descs.append(xdp.Desc(addr, len(frame)))
        assert tx.tx is not None and tx.tx.put_descs(descs) == len(descs)
        return addrs

    first = post(frames[:64])
    got: list[xdp.RxFrame] = []

    def delivered(count: int) -> bool:
        wakeup_tx(tx.socket)
        got.extend(rx.receive(64))
        return len(got) >= count

    wait_until(lambda: delivered(64), timeout=TIMEOUT, what="the first 64 frames")
    wait_until(lambda: tx.completion_ring.available() == 64, timeout=TIMEOUT,
               what="64 completions waiting (the completion ring full)")
    second = post(frames[64:])
    assert tx.tx.free(1) == 0
    assert tx.poll(select.POLLOUT, QUIET) == 0, "POLLOUT while the completion ring is full"
    rig.assert_nothing_received(rx)
    assert len(got) == 64
    assert sorted(tx.complete()) == sorted(first)
    assert tx.poll(select.POLLOUT, POLL_TIMEOUT) & select.POLLOUT
    done: list[int] = []

    def drained() -> bool:
        done.extend(tx.complete(recycle=False))
        return delivered(128)

    wait_until(drained, timeout=TIMEOUT, what="the second 64 frames")
    assert_same(got, frames)
    done += rig.settled_completions(tx, 64 - len(done))
    assert sorted(done) == sorted(second)


def test_poll_rx_queue_timeout(veth: Veth) -> None:
    """Nothing sent: poll(POLLIN) on the bound, filled socket times out (returns 0)."""
    rx = veth.xsk(veth.a)
    veth.program(socks=(rx,))
    rx.fill()
    assert rx.poll(select.POLLIN, QUIET) == 0


# === statistics =============================================================================


def test_rx_queue_full(veth: Veth, expect: KernelExpectations) -> None:
    """A 32-entry rx ring that is never read, 64 frames in the fill ring, 48 frames sent:
    the first 32 are delivered, the other 16 count as rx_ring_full (nothing else counted),
    and reading the ring then gives frames 0..31 intact."""
    rx = veth.xsk(veth.a, config=xdp.XskConfig(rx_size=32, tx_size=32))
    tx = veth.xsk(veth.b)
    obj = veth.program(socks=(rx,))
    assert rx.fill(64) == 64
    stats_v2(rx, expect)
    frames = veth.flow().frames(lengths(48, smallest=MIN_PKT, largest=512))
    rig.send_all(tx, frames)
    stats = stats_when(rx, lambda s: s.rx_ring_full == 16, "rx_ring_full == 16")
    assert (stats.rx_dropped, stats.rx_invalid_descs, stats.rx_fill_ring_empty_descs) == (
        0, 0, 0), stats
    assert rig.prog_counts(obj) == rig.ProgCounts(48, 48, 0, 0)
    assert_same(rig.receive_exactly(rx, 32), frames[:32])
    assert rx.statistics().rx_ring_full == 16


def test_fill_ring_empty(veth: Veth, expect: KernelExpectations) -> None:
    """No buffers in the fill ring: each of 16 frames is dropped and counted both as
    rx_fill_ring_empty_descs and rx_dropped; once the ring is filled, the next 4 frames
    arrive intact and the counters stay."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    stats_v2(rx, expect)
    frames = veth.flow().frames(lengths(20, smallest=MIN_PKT, largest=512))
    rig.send_all(tx, frames[:16])
    stats = stats_when(rx, lambda s: s.rx_fill_ring_empty_descs == 16,
                       "rx_fill_ring_empty_descs == 16")
    assert (stats.rx_dropped, stats.rx_ring_full) == (16, 0), stats
    rig.assert_nothing_received(rx)
    rx.fill()
    rig.send_all(tx, frames[16:])
    assert_same(rig.receive_exactly(rx, 4), frames[16:])
    after = rx.statistics()
    assert (after.rx_dropped, after.rx_fill_ring_empty_descs) == (16, 16), after


def test_rx_dropped(veth: Veth) -> None:
    """The selftests' STAT_RX_DROPPED: UMEM headroom leaving 448 bytes of each 4 KiB
    frame (the most a kernel with the skb_shared_info headroom check accepts: 4096 - 256
    - 320 - 128); of 32 frames alternating one that fits (64 or exactly 448 bytes) and
    one byte too many (449), the 16 that fit arrive intact after the headroom, the 16
    others count as rx_dropped."""
    headroom = 4096 - xdp.XDP_PACKET_HEADROOM - 320 - 128
    room = 4096 - xdp.XDP_PACKET_HEADROOM - headroom
    rx = veth.xsk(veth.a, umem_config=xdp.UmemConfig(
        frame_count=256, frame_size=4096, headroom=headroom, fill_size=128,
        completion_size=128))
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    rx.fill()
    flow = veth.flow()
    sizes = [(MIN_PKT if i % 4 == 0 else room) if i % 2 == 0 else room + 1 for i in range(32)]
    frames = [flow.frame(i, n) for i, n in enumerate(sizes)]
    rig.send_all(tx, frames)
    got = rig.receive_exactly(rx, 16)
    assert_same(got, frames[::2])
    assert {rig.data_offset(f.desc, 4096) for f in got} == {xdp.XDP_PACKET_HEADROOM + headroom}
    stats_when(rx, lambda s: s.rx_dropped == 16, "rx_dropped == 16")
    rig.assert_nothing_received(rx)
    assert rx.statistics().rx_dropped == 16


def test_tx_invalid_descs(veth: Veth, record_property: Callable[[str, object], None]
                          ) -> None:
    """32 tx descriptors alternating a valid 64-byte frame and one of 9001 bytes (longer
    than a UMEM frame): tx_invalid_descs == 16, the 16 valid ones arrive intact, and the
    completion ring gives back exactly the valid ones or exactly all 32 (kernels differ:
    see record_invalid_completion)."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    rx.fill()
    flow = veth.flow()
    addrs = tx.umem.alloc_frames(32)
    descs, valid, sent = [], [], []
    for i, addr in enumerate(addrs):
        if i % 2:
            descs.append(xdp.Desc(addr, INVALID_LEN))
            continue
        frame = flow.frame(i, MIN_PKT)
        tx.umem.write(addr, frame)
        descs.append(xdp.Desc(addr, len(frame)))
        valid.append(addr)
        sent.append(frame)
    assert tx.transmit_descs(descs) == 32
    completed = rig.settled_completions(tx, 16)  # kicks until the ring is consumed
    assert_same(rig.receive_exactly(rx, 16), sent)
    record_invalid_completion(record_property, completed, valid, [d.addr for d in descs])
    assert tx.statistics().tx_invalid_descs == 16


@pytest.mark.parametrize("frame_size", [4096, 2048])
def test_invalid_descs_aligned(veth: Veth, frame_size: int,
                               record_property: Callable[[str, object], None]) -> None:
    """The selftests' ALIGNED_INV_DESC: descriptors at the UMEM's edges and across frame
    boundaries. Valid: frame starts, one ending exactly at the UMEM's end, one crossing
    a 2 KiB boundary inside a 4 KiB frame. Invalid: starting before the UMEM (wrapping),
    longer than a frame, starting at / running past the UMEM's end, crossing a frame
    boundary (and the 2 KiB crossing with 2 KiB frames). Exactly the valid ones arrive
    intact in order; tx_invalid_descs counts the others; the completions are exactly
    the valid descriptors, or exactly all (record_invalid_completion)."""
    cfg = xdp.UmemConfig(frame_count=16, frame_size=frame_size, fill_size=16,
                         completion_size=16)
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b, umem_config=cfg)
    veth.program(socks=(rx,))
    rx.fill()
    size, umem = frame_size, cfg.size
    plan = [  # (address, length, valid)
        (0, MIN_PKT, True),
        (size, MIN_PKT, True),
        (2**64 - 2, MIN_PKT, False),  # straddles the UMEM's start
        (3 * size, INVALID_LEN, False),  # longer than a frame
        (umem - MIN_PKT, MIN_PKT, True),  # up to the UMEM's end
        (umem, MIN_PKT, False),  # after the end
        (umem - MIN_PKT // 2, MIN_PKT, False),  # straddles the end
        (4 * size + size - MIN_PKT // 2, MIN_PKT, False),  # crosses a frame boundary
        (5 * size + 2048 - MIN_PKT // 2, MIN_PKT, size == 4096),  # crosses 2 KiB
        (6 * size, MIN_PKT, True),
    ]
    flow = veth.flow()
    descs, sent, valid = [], [], []
    for i, (addr, length, ok) in enumerate(plan):
        descs.append(xdp.Desc(addr, length))
        if ok:
            frame = flow.frame(i, length)
            tx.umem.write(addr, frame)
            sent.append(frame)
            valid.append(addr)
    assert tx.transmit_descs(descs) == len(descs)
    completed = rig.settled_completions(tx, len(valid))  # kicks until consumed
    assert_same(rig.receive_exactly(rx, len(sent)), sent)
    record_invalid_completion(record_property, completed, valid, [d.addr for d in descs])
    assert tx.statistics().tx_invalid_descs == len(plan) - len(valid)
    assert rx.statistics().rx_invalid_descs == 0


def test_umem_headroom(veth: Veth) -> None:
    """A UMEM with 128 bytes of headroom: every frame lands XDP_PACKET_HEADROOM + 128
    into its buffer, intact."""
    rx = veth.xsk(veth.a, umem_config=xdp.UmemConfig(
        frame_count=256, frame_size=4096, headroom=128, fill_size=128, completion_size=128))
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(32, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    got = rig.receive_exactly(rx, 32)
    assert_same(got, frames)
    assert {rig.data_offset(f.desc, 4096) for f in got} == {xdp.XDP_PACKET_HEADROOM + 128}


def test_bidirectional(veth: Veth) -> None:
    """An XSK with rx and tx rings on each end (own UMEMs, own programs): 64 frames a <- b,
    then 64 frames a -> b through the same sockets, all intact in order."""
    end_a = veth.xsk(veth.a)
    end_b = veth.xsk(veth.b)
    veth.program(socks=(end_a,))
    veth.program(on=veth.b, socks=(end_b,))
    for end in (end_a, end_b):
        end.fill(64)
    there = veth.flow().frames(lengths(64, smallest=MIN_PKT))
    rig.send_all(end_b, there)
    assert_same(rig.receive_exactly(end_a, 64), there)
    back = veth.flow(reverse=True).frames(lengths(64, smallest=MIN_PKT), first=100)
    rig.send_all(end_a, back)
    assert_same(rig.receive_exactly(end_b, 64), back)


# === programs ================================================================================


def _capture(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, ETH_P_ALL))
    sock.settimeout(QUIET)
    return sock


def _captured(sock: socket.socket, count: int, port: int = PORT) -> list[bytes]:
    """`count` incoming test-port frames from an AF_PACKET socket (deadline TIMEOUT)."""
    out: list[bytes] = []

    def more() -> bool:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            return len(out) >= count
        if addr[2] != 4 and len(data) >= 38 and struct.unpack_from("!H", data, 36)[0] == port:
            out.append(data)
        return len(out) >= count

    wait_until(more, timeout=TIMEOUT, what=f"{count} frames on the capture")
    return out


def test_xdp_prog_cleanup(veth: Veth) -> None:
    """The selftests' XDP_PROG_CLEANUP, taken to the end: two sockets sharing a UMEM on
    one queue; frames go to the one in the XSKMAP, then to the other after the entry is
    replaced; after the link is closed the device reports no XDP program and the frames
    reach the stack (an AF_PACKET capture) instead of any socket; after everything is
    closed, the program, its maps and the link are gone from the kernel."""
    with ExitStack() as stack:
        umem = stack.enter_context(xdp.Umem(rig.SMALL_UMEM))
        first = rig.open_xsk(stack, veth.a, umem=umem)
        second = rig.open_xsk(stack, veth.a, umem=umem)
        tx = veth.xsk(veth.b)
        obj = rig.load_program(stack, "xsk_redirect", port=PORT)
        link = stack.enter_context(xdp.attach_xdp(obj.program("xsk_redirect"), veth.a,
                                                  veth.mode))
        ids = (obj.program("xsk_redirect").id, link.info().id,
               {obj.map(m).id for m in ("xsks", "cfg", "seen", "verdicts")})
        expected_mode = "skb" if veth.mode == xdp.XdpMode.SKB else "drv"
        assert device.xdp_state(veth.a) == device.XdpState(expected_mode, ids[0])
        first.fill(64)
        flow = veth.flow()
        xdp.register_xsk(obj.map("xsks"), 0, first)
        frames = flow.frames(lengths(8, smallest=MIN_PKT))
        rig.send_all(tx, frames)
        assert_same(rig.receive_exactly(first, 8), frames)
        xdp.register_xsk(obj.map("xsks"), 0, second)
        frames = flow.frames(lengths(8, smallest=MIN_PKT), first=8)
        rig.send_all(tx, frames)
        assert_same(rig.receive_exactly(second, 8), frames)
        rig.assert_nothing_received(first, wait=0)
        link.close()
        assert device.xdp_state(veth.a) == device.XdpState("none", 0)
        with _capture(veth.pair.a.name) as cap:
            frames = flow.frames(lengths(8, smallest=MIN_PKT), first=16)
            rig.send_all(tx, frames)
            assert _captured(cap, 8) == frames
        for sock in (first, second):
            rig.assert_nothing_received(sock, wait=0)
    prog_id, link_id, map_ids = ids
    wait_until(lambda: prog_id not in lb.prog_ids() and link_id not in lb.link_ids()
               and not map_ids & set(lb.map_ids()), timeout=TIMEOUT,
               what=f"prog {prog_id}, link {link_id}, maps {sorted(map_ids)} to be freed")


def test_xdp_drop_half(veth: Veth) -> None:
    """xsk_drop_every_other returns XDP_DROP for every second test frame: of 32 sent,
    exactly frames 0, 2, ..., 30 arrive intact; the program says 16 redirects and 16
    drops; the socket counts no drop (XDP dropped them before it)."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    obj = veth.program(prog="xsk_drop_every_other", socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(32, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    assert_same(rig.receive_exactly(rx, 16), frames[::2])
    assert rig.prog_counts(obj) == rig.ProgCounts(32, 16, 0, 16)
    rig.assert_nothing_received(rx)
    zero_stats(rx)


def test_xdp_rx_metadata(veth: Veth) -> None:
    """The selftests' XDP_METADATA_COPY: the program puts 8 bytes of metadata in front of
    each frame (bpf_xdp_adjust_meta) holding its number; copy mode copies them into the
    UMEM right before the data: frame k carries k, and the data is intact."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    obj = veth.program("xsk_cases", "xsk_meta", socks=(rx,))
    rx.fill()
    frames = veth.flow().frames(lengths(32, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    got = rx.wait_receive(32, timeout=TIMEOUT, refill=False)
    assert_same(got, frames)
    meta = [struct.unpack("=Q", rx.umem.read(f.desc.addr - 8, 8))[0] for f in got]
    assert meta == list(range(32))
    assert obj.map("meta_failed").lookup_int(0) == 0


# === shared UMEM ==============================================================================


def test_shared_umem_one_queue(veth: Veth) -> None:
    """The selftests' XDP_SHARED_UMEM: two sockets on queue 0 of a sharing one UMEM (and
    its fill/completion rings); the program sends test port P to XSKMAP key 0 and P + 1
    to key 1: of 32 frames alternating the two ports each socket gets its 16, intact in
    order."""
    with ExitStack() as stack:
        umem = stack.enter_context(xdp.Umem(rig.SMALL_UMEM))
        zero = rig.open_xsk(stack, veth.a, umem=umem)
        one = rig.open_xsk(stack, veth.a, umem=umem)
        assert one.fill_ring is zero.fill_ring
        tx = veth.xsk(veth.b)
        obj = veth.program("xsk_cases", "xsk_by_port", socks=(zero, one), ports=2)
        zero.fill()
        flow = veth.flow()
        frames = [flow.frame(i, n, dport=PORT + i % 2)
                  for i, n in enumerate(lengths(32, smallest=MIN_PKT))]
        rig.send_all(tx, frames)
        assert_same(rig.receive_exactly(zero, 16), frames[::2])
        assert_same(rig.receive_exactly(one, 16), frames[1::2])
        assert rig.prog_counts(obj) == rig.ProgCounts(32, 32, 0, 0)


def test_shared_umem_two_devices(veth: Veth, expect: KernelExpectations) -> None:
    """One UMEM for the sockets of both ends (XDP_SHARED_UMEM across devices, with fill
    and completion rings per socket, 5.10): frames sent from b's socket out of the shared
    UMEM arrive in a's socket, intact, in buffers of the same UMEM."""
    with ExitStack() as stack:
        umem = stack.enter_context(xdp.Umem(rig.SMALL_UMEM))
        rx = rig.open_xsk(stack, veth.a, umem=umem)
        try:
            tx = rig.open_xsk(stack, veth.b, umem=umem)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            expect.refused("af_xdp_shared_umem_multi", f"second socket on another device "
                           f"sharing the UMEM: {exc}")
        assert tx.fill_ring is not rx.fill_ring
        veth.program(socks=(rx,))
        rx.fill(64)
        frames = veth.flow().frames(lengths(32, smallest=MIN_PKT))
        rig.send_all(tx, frames)
        got = rig.receive_exactly(rx, 32)
        assert_same(got, frames)
        assert all(f.desc.addr < umem.config.size for f in got)


# === busy polling ==============================================================================


def test_busy_poll(veth: Veth, expect: KernelExpectations) -> None:
    """SO_PREFER_BUSY_POLL, SO_BUSY_POLL (20 us) and SO_BUSY_POLL_BUDGET (64) on the
    receiving socket, as xskxceiver's busy-poll runs set them: the first two read back
    (the budget cannot be read), and 64
    frames are received driving the socket only by recvmsg (which busy-polls the NAPI
    of the queue where the kernel has one), intact."""
    rx = veth.xsk(veth.a)
    tx = veth.xsk(veth.b)
    veth.program(socks=(rx,))
    wanted = {SO_PREFER_BUSY_POLL: 1, SO_BUSY_POLL: 20, SO_BUSY_POLL_BUDGET: 64}
    for opt, value in wanted.items():
        try:
            rx.socket.setsockopt(socket.SOL_SOCKET, opt, value)
        except OSError as exc:
            expect.refused("af_xdp_busy_poll", f"setsockopt(SOL_SOCKET, {opt}, {value}) on "
                           f"an XSK: {lb.errno_name(exc.errno or 0)}")
    readable = (SO_PREFER_BUSY_POLL, SO_BUSY_POLL)  # the budget has no getsockopt
    assert {opt: rx.socket.getsockopt(socket.SOL_SOCKET, opt) for opt in readable} == {
        opt: wanted[opt] for opt in readable}
    rx.fill()
    frames = veth.flow().frames(lengths(64, smallest=MIN_PKT))
    rig.send_all(tx, frames)
    got: list[xdp.RxFrame] = []

    def busy_receive() -> bool:
        wakeup_rx(rx.socket)  # recvmsg: sk_busy_loop when busy polling is on
        got.extend(rx.receive(64))
        return len(got) >= len(frames)

    wait_until(busy_receive, timeout=TIMEOUT, interval=0.001, what="64 frames busy-polled")
    assert_same(got, frames)


# === multi-buffer (6.6) =========================================================================


JUMBO_MTU = 9000
RX_ROOM = 4096 - xdp.XDP_PACKET_HEADROOM


def test_multi_buffer(veth: Veth, expect: KernelExpectations) -> None:
    """XDP_USE_SG on both sockets, MTU 9000 and a frags-aware program (xdp.frags):
    frames of up to 9014 bytes leave b split over 4 KiB tx descriptors and arrive at a
    as ceil(len / 3840) descriptors, every one but the last of a packet with
    XDP_PKT_CONTD; reassembled they are the sent frames byte for byte."""
    for end in (veth.a, veth.b):
        device.set_mtu(end, JUMBO_MTU)
    sg = xdp.XskConfig(rx_size=128, tx_size=128, bind_flags=xdp.XDP_USE_SG)
    try:
        rx = veth.xsk(veth.a, config=sg)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        expect.refused("af_xdp_multibuf", f"bind with XDP_USE_SG: {exc}")
    tx = veth.xsk(veth.b, config=sg)
    obj = veth.program("xsk_cases", "xsk_frags", socks=(rx,))
    rx.fill()
    sizes = [JUMBO_MTU + 14, 5000, RX_ROOM + 1, RX_ROOM, MIN_PKT, 2 * RX_ROOM + 7]
    frames = veth.flow().frames(sizes)
    rig.send_all(tx, frames)
    want_descs = sum(-(-n // RX_ROOM) for n in sizes)
    got = rig.receive_exactly(rx, want_descs)
    assert xdp.join_packets(got) == frames
    cont = [bool(f.desc.options & xdp.XDP_PKT_CONTD) for f in got]
    expected_cont = [i < -(-n // RX_ROOM) - 1 for n in sizes for i in range(-(-n // RX_ROOM))]
    assert cont == expected_cont
    assert rig.prog_counts(obj) == rig.ProgCounts(len(sizes), len(sizes), 0, 0)


# === tx metadata (6.8) ==========================================================================


class TxMetadata(ctypes.Structure):
    """The request half of struct xsk_tx_metadata (flags, csum_start, csum_offset)."""

    _fields_ = [("flags", ctypes.c_uint64), ("csum_start", ctypes.c_uint16),
                ("csum_offset", ctypes.c_uint16)]


def test_tx_metadata_checksum(veth: Veth, expect: KernelExpectations) -> None:
    """A UMEM with tx_metadata_len 24 and XDP_UMEM_TX_SW_CSUM: frames sent with the
    XDP_TX_METADATA option and an XDP_TXMD_FLAGS_CHECKSUM request (csum_start/offset of
    UDP, the field holding the pseudo-header sum) arrive with the full UDP checksum
    filled in, equal byte for byte to the frame built with the right checksum; the same
    frame sent without the option arrives untouched."""
    flags = xdp.UmemFlag.TX_SW_CSUM | xdp.UmemFlag.TX_METADATA_LEN
    cfg = xdp.UmemConfig(frame_count=64, frame_size=4096, fill_size=32, completion_size=32,
                         flags=flags, tx_metadata_len=TX_META_LEN)
    stack = veth.stack
    try:
        umem = stack.enter_context(xdp.Umem(cfg))
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        try:  # 6.8 .. 6.10 without the XDP_UMEM_TX_METADATA_LEN fix: the length alone
            cfg = xdp.UmemConfig(frame_count=64, frame_size=4096, fill_size=32,
                                 completion_size=32, flags=xdp.UmemFlag.TX_SW_CSUM,
                                 tx_metadata_len=TX_META_LEN)
            umem = stack.enter_context(xdp.Umem(cfg))
        except OSError as exc2:
            if exc2.errno != errno.EINVAL:
                raise
            expect.refused("af_xdp_tx_metadata", f"XDP_UMEM_REG with tx_metadata_len and "
                           f"XDP_UMEM_TX_SW_CSUM: {exc}; without TX_METADATA_LEN: {exc2}")
    tx = rig.open_xsk(stack, veth.b, umem=umem)
    rx = veth.xsk(veth.a)
    veth.program(socks=(rx,))
    rx.fill()
    flow = veth.flow()
    sizes = lengths(16, smallest=MIN_PKT)
    partial = [flow.frame(i, n, csum=Csum.PARTIAL) for i, n in enumerate(sizes)]
    full = [flow.frame(i, n, csum=Csum.FULL) for i, n in enumerate(sizes)]
    assert all(udp4_checksum_ok(f) for f in full)
    addrs = umem.alloc_frames(len(partial) + 1)
    descs = []
    for addr, frame in zip(addrs, partial, strict=False):
        meta = TxMetadata(XDP_TXMD_FLAGS_CHECKSUM, 14 + 20, 6)
        umem.write(addr, bytes(meta).ljust(TX_META_LEN, b"\0"))
        umem.write(addr + TX_META_LEN, frame)
        descs.append(xdp.Desc(addr + TX_META_LEN, len(frame), XDP_TX_METADATA))
    untouched = addrs[-1]
    umem.write(untouched + TX_META_LEN, partial[0])
    descs.append(xdp.Desc(untouched + TX_META_LEN, len(partial[0])))
    assert tx.transmit_descs(descs) == len(descs)
    done = tx.wait_complete(len(descs), timeout=TIMEOUT, recycle=False)
    assert sorted(done) == sorted(d.addr for d in descs)
    got = rig.receive_exactly(rx, len(descs))
    assert_same(got, [*full, partial[0]])
    assert [frame_number(f.data) for f in got] == [*range(len(sizes)), 0]
    assert tx.statistics().tx_invalid_descs == 0
