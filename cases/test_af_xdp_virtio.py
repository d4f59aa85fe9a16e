"""XDP and AF_XDP on the VM's own virtio-net NICs (drivers/net/virtio_net.c).

Every case is marked @pytest.mark.nics("loop"): kmatrix then boots the kernel's VM with
two virtio-net NICs joined by a QEMU hub, so a frame sent on one arrives on the other.
The `vm_nics` fixture lends them to the case's namespace (one combined channel each, so
every frame lands on rx queue 0); frames go from the second NIC to the first:

- native (driver-mode) XDP attaches, is reported in DRV mode, excludes generic XDP
  (EEXIST) and detaches without a trace;
- a native program redirects frames into an XSK bound in copy mode: every frame intact;
- zero-copy (6.13: virtio_net advertises NETDEV_XDP_ACT_XSK_ZEROCOPY): the bind is
  accepted and reported zero-copy, frames arrive intact, and frames sent from the
  zero-copy socket leave the NIC intact. A refusal where the kernel is expected to do it
  (features.toml virtio_net_xsk_zerocopy) fails; elsewhere it skips with the errno.

Outside a VM with NICs (scripts/host-pytest, or a VM without the marker's NICs) the cases
skip saying so.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from harness.guest import xdp
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.nics import Nic
from harness.guest.net.packets import ETH_P_ALL, PACKET_OUTGOING
from harness.guest.xdp import device, rig
from harness.guest.xdp.frames import Flow, lengths
from harness.guest.xdp.rig import QUIET, TIMEOUT

pytestmark = [pytest.mark.nics("loop"), pytest.mark.requires("af_xdp", "xdp_native_virtio"),
              pytest.mark.case_timeout(300)]

PORT = 4794
FRAMES = 32


@dataclass
class Loop:
    """The two NICs: `rx` (XDP, sockets) and `tx` (sends to it over the hub)."""

    rx: Nic
    tx: Nic
    stack: ExitStack

    def flow(self) -> Flow:
        return Flow(device.mac_of(self.tx.name), device.mac_of(self.rx.name),
                    "198.18.202.2", "198.18.202.1", dport=PORT)


def _single_channel(stack: ExitStack, nic: Nic) -> None:
    chans = device.channels(nic.name)
    if chans is not None and chans.combined > 1:
        device.set_combined_channels(nic.name, 1)
        stack.callback(device.set_combined_channels, nic.name, chans.combined)


@pytest.fixture
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    """The VM's two NICs on the hub (vm_nics), one channel each; or a skip saying why
    there are none this case may use."""
    free, why = device.free_nics()
    if len(free) < 2:
        pytest.skip(f"needs the VM's two virtio-net NICs (@pytest.mark.nics('loop')): "
                    f"{why or f'free: {free}'}")
    nics: list[Nic] = request.getfixturevalue("vm_nics")
    with ExitStack() as stack:
        for nic in nics[:2]:
            _single_channel(stack, nic)
        yield Loop(nics[0], nics[1], stack)


def test_native_xdp_attach(loop: Loop) -> None:
    """A BPF_XDP link in DRV mode on virtio-net: rtnetlink reports the program in DRV
    mode; a generic-mode attach next to it is refused (EEXIST: native and generic XDP
    cannot be active at once); closing the link leaves no program on the NIC."""
    obj = rig.load_program(loop.stack, "xsk_redirect", port=PORT)
    prog = obj.program("xsk_redirect")
    with xdp.attach_xdp(prog, loop.rx.ifindex, xdp.XdpMode.DRV):
        assert device.xdp_state(loop.rx.ifindex) == device.XdpState("drv", prog.id)
        with pytest.raises(OSError) as exc:
            xdp.attach_xdp(prog, loop.rx.ifindex, xdp.XdpMode.SKB).close()
        assert exc.value.errno == errno.EEXIST, exc.value
    assert device.xdp_state(loop.rx.ifindex) == device.XdpState("none", 0)


def test_redirect_to_xsk_copy(loop: Loop) -> None:
    """Native XDP on the first NIC redirects the test port's frames into an XSK bound in
    copy mode on its queue 0; 32 frames of 64..1514 bytes sent by an XSK on the second
    NIC arrive intact and in order, the program counting exactly 32 redirects."""
    rx = rig.open_xsk(loop.stack, loop.rx.ifindex, config=xdp.XskConfig(
        rx_size=128, tx_size=128, bind_flags=xdp.XDP_COPY))
    tx = rig.open_xsk(loop.stack, loop.tx.ifindex, config=xdp.XskConfig(
        rx_size=0, tx_size=128, bind_flags=xdp.XDP_COPY))
    obj = rig.load_program(loop.stack, "xsk_redirect", port=PORT)
    rig.redirect_to(loop.stack, obj, "xsk_redirect", loop.rx.ifindex, xdp.XdpMode.DRV, (rx,))
    rx.fill()
    frames = loop.flow().frames(lengths(FRAMES, smallest=64))
    rig.send_all(tx, frames)
    got = rig.receive_exactly(rx, FRAMES)
    assert [f.data for f in got] == frames
    assert rig.prog_counts(obj) == rig.ProgCounts(FRAMES, FRAMES, 0, 0)
    assert not rx.options().zerocopy


def test_zero_copy(loop: Loop, expect: KernelExpectations) -> None:
    """An XSK bound with XDP_ZEROCOPY on the first NIC's queue 0: XDP_OPTIONS reports
    zero-copy; 32 frames from the second NIC arrive intact through a native redirect;
    32 frames sent from the zero-copy socket leave the NIC intact (captured on the
    second NIC) and all complete. A refused bind is the kernel's answer: a failure where
    virtio-net zero-copy is expected (6.13+), a skip with the errno elsewhere."""
    umem = loop.stack.enter_context(xdp.Umem(rig.SMALL_UMEM))
    try:
        zc = loop.stack.enter_context(xdp.XskSocket(umem, loop.rx.ifindex, 0, xdp.XskConfig(
            rx_size=128, tx_size=128, bind_flags=xdp.XDP_ZEROCOPY)))
    except OSError as exc:
        expect.refused("virtio_net_xsk_zerocopy", f"bind(AF_XDP, {loop.rx.name} "
                       f"(virtio_net) queue 0, XDP_ZEROCOPY): {exc}")
    assert zc.options().zerocopy
    obj = rig.load_program(loop.stack, "xsk_redirect", port=PORT)
    rig.redirect_to(loop.stack, obj, "xsk_redirect", loop.rx.ifindex, xdp.XdpMode.DRV, (zc,))
    zc.fill(64)
    tx = rig.open_xsk(loop.stack, loop.tx.ifindex, config=xdp.XskConfig(
        rx_size=0, tx_size=128, bind_flags=xdp.XDP_COPY))
    flow = loop.flow()
    frames = flow.frames(lengths(FRAMES, smallest=64))
    rig.send_all(tx, frames)
    assert [f.data for f in rig.receive_exactly(zc, FRAMES)] == frames
    back = Flow(flow.dst_mac, flow.src_mac, flow.dst_ip, flow.src_ip, dport=PORT + 1)
    replies = back.frames(lengths(FRAMES, smallest=64), first=100)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as cap:
        cap.bind((loop.tx.name, ETH_P_ALL))
        rig.send_all(zc, replies)
        got = _captured(cap, len(replies), PORT + 1)
    assert got == replies


def _captured(sock: socket.socket, count: int, port: int) -> list[bytes]:
    """`count` incoming frames to UDP `port` (deadline TIMEOUT, then QUIET for more)."""
    out: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    extra_until = None
    while time.monotonic() < (extra_until or deadline):
        sock.settimeout(0.05)
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if addr[2] != PACKET_OUTGOING and len(data) >= 38 and data[36:38] == port.to_bytes(
                2, "big"):
            out.append(data)
            if len(out) == count and extra_until is None:
                extra_until = time.monotonic() + QUIET
    return out
