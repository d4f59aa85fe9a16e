"""Building blocks the AF_XDP cases share: sockets with their UMEM in one call, the XDP
programs of bpf/xsk_redirect.bpf.c and bpf/xsk_cases.bpf.c with their test port set,
exact sends and receives with deadlines, and the programs' counters.

Everything is entered into an ExitStack the caller owns (the `resources` fixture), so a
case's sockets, UMEMs, links and objects go away with it, sockets first.

Deadlines are the selftests' (xskxceiver: 3 s per thread, 1 s per poll) scaled for TCG:
`TIMEOUT` and `POLL_TIMEOUT`. A wait for something that must *not* happen uses `QUIET`.
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from .. import bpf as lb
from .attach import XdpMode, attach_xdp, register_xsk
from .ring import Desc
from .uapi import XdpAction
from .umem import Umem, UmemConfig
from .xsk import RxFrame, XskConfig, XskSocket

#: a receive or transmit loop: xskxceiver's THREAD_TMOUT (3 s) x 10 for TCG
TIMEOUT = 30.0
#: a poll(2) that must report readiness: xskxceiver's POLL_TMOUT (1 s) x 10
POLL_TIMEOUT = 10.0
#: how long something that must not happen is given to happen (local: microseconds)
QUIET = 1.0
#: how often a quiet window looks at a ring it has nothing to poll(2) for
QUIET_SLICE = 0.02
#: a small UMEM: 256 frames of 4 KiB, rings of 128
SMALL_UMEM = UmemConfig(frame_count=256, frame_size=4096, fill_size=128, completion_size=128)


def open_xsk(stack: ExitStack, ifindex: int, queue: int = 0, *,
             umem: Umem | None = None, umem_config: UmemConfig | None = None,
             config: XskConfig | None = None) -> XskSocket:
    """An XSK on queue `queue` of `ifindex` (calling thread's namespace) over `umem`, or
    over a new UMEM of `umem_config` (default SMALL_UMEM); both closed with `stack`."""
    if umem is None:
        umem = stack.enter_context(Umem(umem_config or SMALL_UMEM))
    return stack.enter_context(XskSocket(umem, ifindex, queue, config or XskConfig(
        rx_size=128, tx_size=128)))


def load_program(stack: ExitStack, name: str, *, port: int = 0, ports: int = 1,
                 autoload: Sequence[str] | None = None) -> lb.BpfObject:
    """bpf/NAME's object, loaded, with its test port(s) set in `cfg`."""
    obj = stack.enter_context(lb.BpfObject(lb.object_path(name), autoload=autoload))
    obj.map("cfg").update(0, port)
    if obj.map("cfg").max_entries > 1:
        obj.map("cfg").update(1, ports)
    return obj


def attach(stack: ExitStack, obj: lb.BpfObject, prog: str, ifindex: int,
           mode: XdpMode) -> lb.Link:
    """Program `prog` of `obj` on `ifindex` in `mode` (a link closed with `stack`)."""
    return stack.enter_context(attach_xdp(obj.program(prog), ifindex, mode))


def redirect_to(stack: ExitStack, obj: lb.BpfObject, prog: str, ifindex: int,
                mode: XdpMode, socks: Sequence[XskSocket]) -> lb.Link:
    """Attach `prog` and register `socks` in its XSKMAP at keys 0, 1, ..."""
    link = attach(stack, obj, prog, ifindex, mode)
    for key, sock in enumerate(socks):
        register_xsk(obj.map("xsks"), key, sock)
    return link


@dataclass(frozen=True)
class ProgCounts:
    """The counters of bpf/xsk_redirect.bpf.c and bpf/xsk_cases.bpf.c."""

    seen: int
    redirect: int
    passed: int
    dropped: int


def prog_counts(obj: lb.BpfObject, queue: int = 0) -> ProgCounts:
    verdicts = obj.map("verdicts")
    return ProgCounts(obj.map("seen").lookup_int(queue),
                      verdicts.lookup_int(int(XdpAction.REDIRECT)),
                      verdicts.lookup_int(int(XdpAction.PASS)),
                      verdicts.lookup_int(int(XdpAction.DROP)))


def receive_exactly(xsk: XskSocket, count: int, *, timeout: float = TIMEOUT,
                    refill: bool = True) -> list[RxFrame]:
    """Exactly `count` frames from the rx ring (AssertionError if more were there)."""
    frames = xsk.wait_receive(count, timeout=timeout, refill=refill)
    assert len(frames) == count, (
        f"{len(frames)} frames arrived, {count} were sent to this socket")
    return frames


def send_all(xsk: XskSocket, frames: Sequence[bytes], *,
             timeout: float = TIMEOUT) -> list[Desc]:
    """Transmit `frames` and wait until every one came back on the completion ring."""
    descs = xsk.transmit(list(frames), timeout=timeout)
    xsk.wait_complete(len(descs), timeout=timeout)
    return descs


def assert_nothing_received(xsk: XskSocket, wait: float = QUIET) -> None:
    """No frame arrives on the rx ring within `wait` seconds."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        got = xsk.receive(64)
        assert not got, f"{len(got)} unexpected frames, first {got[0].data[:64].hex()}"
        xsk.poll(select.POLLIN, min(left, 0.05))
    got = xsk.receive(64)
    assert not got, f"{len(got)} unexpected frames, first {got[0].data[:64].hex()}"


def settled_completions(xsk: XskSocket, at_least: int, *, timeout: float = TIMEOUT,
                        quiet: float = QUIET) -> list[int]:
    """Every completion of what was posted: at least `at_least` addresses within
    `timeout`, after the kernel consumed the whole tx ring, then whatever else comes
    within `quiet` seconds (not recycled into the pool)."""
    tx = xsk.tx
    assert tx is not None
    done = xsk.wait_complete(at_least, timeout=timeout, recycle=False)
    deadline = time.monotonic() + timeout
    while tx.consumer != tx.producer:
        assert time.monotonic() < deadline, f"the kernel left the {tx.name} unconsumed: {tx}"
        xsk.kick()
        done += xsk.complete(recycle=False)
        xsk.poll(select.POLLOUT, 0.01)
    # the kernel has taken the whole tx ring, so nothing needs driving: look every
    # QUIET_SLICE (a poll(POLLOUT) would return at once, the tx ring having room, and
    # spin the vCPU for the whole window)
    end = time.monotonic() + quiet
    while (left := end - time.monotonic()) > 0:
        done += xsk.complete(recycle=False)
        time.sleep(min(left, QUIET_SLICE))
    return done + xsk.complete(recycle=False)


def data_offset(desc: Desc, frame_size: int) -> int:
    """Where in its frame a received descriptor's data starts."""
    return desc.addr % frame_size
