"""netkit in single-device mode and RX queue leasing (7.1), with netdevsim as the lender.

After the upstream series "netkit: Support for io_uring zero-copy and AF_XDP" (7.1:
netkit single device mode, rtnl_link_ops->alloc and ndo_queue_create, the netkit notifier
for unregistering lenders, xsk support; NETDEV_CMD_QUEUE_CREATE and the lease in
queue-get) and its selftests (queue leasing tests with netkit), written anew here.

Single device (IFLA_NETKIT_PAIRING single): no peer, its carrier follows its own state;
what belongs to a peer is refused at creation (peer info, peer policy, peer scrub, and
any default policy but pass: EOPNOTSUPP), so is changing the policy later; no native XDP
program; zero-copy AF_XDP needs a leased queue.

Leasing: NETDEV_CMD_QUEUE_CREATE on a netkit (single, or the peer of a pair) names a
lender's RX queue; the netkit gains an RX queue (id 1) and NETDEV_CMD_QUEUE_GET of the
lender's queue shows the lease (the physical side reports it; queue-get wants the device
up, ENOENT otherwise). Refused, each with its errno: a virtual lender or the netkit
itself (EINVAL), a queue already leased or bound by AF_XDP (EBUSY), a second lender for
one netkit (EOPNOTSUPP), the primary of a pair (EOPNOTSUPP). Deleting the lender deletes the netkit;
deleting the netkit returns the queue. AF_XDP zero-copy on a netkit pair is refused, and
on a leased queue of a lender without zero-copy (netdevsim) the kernel refuses it too;
a lender with zero-copy (a real NIC) is not available in a VM: that case skips naming it.

The lender is a netdevsim device (CONFIG_NETDEVSIM, /sys/bus/netdevsim) made in the
case's namespace and deleted with it; kernels without netdevsim skip the leasing cases
(probe queue_lease: the expectation's CONFIG_NETDEVSIM says why).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from harness.guest import bpf as lb
from harness.guest import xdp
from harness.guest.net import genl
from harness.guest.net import netkit as nk
from harness.guest.net.links import delete_link, oper_state
from harness.guest.net.netkit import NetkitPairing, NetkitPolicy, NetkitScrub
from harness.guest.net.veth import create_veth_pair
from harness.guest.wait import unique_name, wait_until
from harness.guest.xdp import device, rig
from harness.guest.xdp.lease import bring_up, create_netkit, lender_view, netkit_device
from harness.guest.xdp.netdevsim import Netdevsim

pytestmark = pytest.mark.requires("netkit")

RX = genl.NETDEV_QUEUE_TYPE_RX


def _exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=ifname))


def _refused_errno(fn: Callable[[], object]) -> int:
    """The errno of a request the kernel must refuse."""
    try:
        made = fn()
    except (NetlinkError, OSError) as exc:
        code = exc.code if isinstance(exc, NetlinkError) else exc.errno
        assert code, exc
        return int(code)
    close = getattr(made, "close", None)
    if callable(close):
        close()
    raise AssertionError(f"the kernel accepted it: {made!r}")


def _zero_copy_bind(ifindex: int, queue: int) -> int:
    """The errno of a refused XDP_ZEROCOPY bind to `queue` of `ifindex`."""
    with xdp.Umem(rig.SMALL_UMEM) as umem:
        return _refused_errno(lambda: xdp.XskSocket(umem, ifindex, queue, xdp.XskConfig(
            rx_size=64, tx_size=64, bind_flags=xdp.XDP_ZEROCOPY, busy_timeout=0)))


# === single device ==============================================================================


@pytest.mark.requires("netkit_single")
def test_single_device() -> None:
    """A single netkit: IFLA_NETKIT_PAIRING reported single, no peer (IFLA_LINK 0), no
    other netkit made; up, it has carrier on its own (operstate UP) and its default
    policy is pass; deleting it leaves nothing."""
    name = unique_name("kls")
    with netkit_device(name) as dev:
        assert dev.pairing is NetkitPairing.SINGLE and dev.link == 0, dev
        assert dev.policy is NetkitPolicy.PASS
        assert [d.ifname for d in nk.dump()] == [name]
        device.set_link(dev.index, state="up")
        wait_until(lambda: oper_state(name) == "UP", timeout=10, what=f"{name} UP")
    assert nk.dump() == []


@pytest.mark.requires("netkit_single")
@pytest.mark.parametrize(("peer", "attrs"), [
    pytest.param("kxpeer0", {}, id="peer-info"),
    pytest.param(None, {"netkit_peer_policy": int(NetkitPolicy.DROP)}, id="peer-policy"),
    pytest.param(None, {"netkit_peer_scrub": int(NetkitScrub.NONE)}, id="peer-scrub"),
    pytest.param(None, {"netkit_policy": int(NetkitPolicy.DROP)}, id="policy-drop"),
])
def test_single_refuses_peer_settings(peer: str | None, attrs: dict[str, int]) -> None:
    """A single device has no peer and only the pass policy: creating one with peer info,
    a peer policy, a peer scrub setting or a drop policy is refused with EOPNOTSUPP, and
    no device is left (neither the single one nor a peer)."""
    name = unique_name("klr")
    code = _refused_errno(lambda: create_netkit(name, peer=peer, attrs=attrs))
    assert code == errno.EOPNOTSUPP, errno.errorcode.get(code, code)
    assert not _exists(name) and nk.dump() == []


@pytest.mark.requires("netkit_single")
def test_single_refuses_policy_change() -> None:
    """Changing a single device's policy afterwards is refused (EOPNOTSUPP), and the
    device keeps the pass policy."""
    name = unique_name("klp")
    with netkit_device(name):
        code = _refused_errno(lambda: nk.set_policy(name, policy=NetkitPolicy.DROP))
        assert code == errno.EOPNOTSUPP, errno.errorcode.get(code, code)
        assert nk.info(name).policy is NetkitPolicy.PASS


@pytest.mark.requires("netkit_single")
def test_native_xdp_on_netkit_refused(record_property: Callable[[str, object], None]) -> None:
    """No native XDP program on netkit: a BPF_XDP link in DRV mode on a single device is
    refused and nothing is attached. netkit's ndo_bpf (7.1) answers XDP_SETUP_PROG with
    EPERM in every posted revision of the series, a netkit without ndo_bpf EOPNOTSUPP;
    the case accepts exactly these two and records which."""
    name = unique_name("klx")
    with netkit_device(name) as dev, lb.BpfObject(lb.object_path("xsk_redirect")) as obj:
        code = _refused_errno(lambda: xdp.attach_xdp(obj.program("xsk_redirect"), dev.index,
                                                     xdp.XdpMode.DRV).close())
        assert code in (errno.EOPNOTSUPP, errno.EPERM), errno.errorcode.get(code, code)
        record_property("observed", f"native XDP on single netkit: {errno.errorcode[code]}")
        assert device.xdp_state(dev.index) == device.XdpState("none", 0)


def test_af_xdp_zero_copy_on_pair_refused() -> None:
    """AF_XDP zero-copy on a netkit pair is refused (EOPNOTSUPP: a pair has no queue
    backed by a NIC), on the peer as on the primary."""
    names = (unique_name("klpa"), unique_name("klpb"))
    nk.create_pair(*names, mode=nk.NetkitMode.L2)
    try:
        for name in names:
            code = _zero_copy_bind(nk.info(name).index, 0)
            assert code == errno.EOPNOTSUPP, (name, errno.errorcode.get(code, code))
    finally:
        nk.delete(names[0])


@pytest.mark.requires("netkit_single")
def test_af_xdp_zero_copy_unleased_queue_refused() -> None:
    """A single device's own queue 0 is not backed by a NIC: zero-copy AF_XDP there is
    refused with EOPNOTSUPP."""
    with netkit_device(unique_name("klu")) as dev:
        code = _zero_copy_bind(dev.index, 0)
        assert code == errno.EOPNOTSUPP, errno.errorcode.get(code, code)


# === leasing =======================================================================


@pytest.fixture
def lender() -> Iterator[Netdevsim]:
    """A netdevsim device with two ports of two queues each in the case's namespace."""
    with Netdevsim(ports=2, queues=2) as nsim:
        yield nsim


lease_marks = pytest.mark.requires("netkit_single", "queue_lease")


@lease_marks
def test_lease_queue(lender: Netdevsim) -> None:
    """A single netkit leases RX queue 0 of a netdevsim port: queue-create answers queue
    id 1 (the netkit's own queue is 0). With both up, queue-get of the port's RX queue 0
    reports the lease (the netkit's ifindex, its RX queue 1); the netkit's queue 1 exists
    and carries no lease of its own (the kernel reports the physical side), the netkit
    has no third queue (EINVAL), the port's unleased queue 1 reports none. Deleting the
    netkit returns the queue: the port's queue 0 shows no lease, and another netkit can
    lease it again."""
    port = lender.ports[0]
    with netkit_device(unique_name("kla")) as dev:
        qid = genl.queue_create(dev.index, port.ifindex, 0)
        assert qid == 1
        bring_up(port.ifindex, dev.index)
        lease = lender_view(port.ifindex, 0)
        assert lease is not None, genl.queue_get(port.ifindex, 0)
        assert (lease.ifindex, lease.queue_id, lease.queue_type) == (dev.index, qid, RX), lease
        own = genl.queue_get(dev.index, qid)
        assert (own.ifindex, own.queue_id, own.queue_type, own.lease) == (
            dev.index, qid, RX, None), own
        with pytest.raises(genl.GenlError) as exc:
            genl.queue_get(dev.index, 2)
        assert exc.value.errno == errno.EINVAL, exc.value
        assert lender_view(port.ifindex, 1) is None
    assert lender_view(port.ifindex, 0) is None
    with netkit_device(unique_name("klb")) as again:
        assert genl.queue_create(again.index, port.ifindex, 0) == 1


@lease_marks
def test_lease_refusals(lender: Netdevsim, record_property: Callable[[str, object], None]
                        ) -> None:
    """What queue-create refuses, each with its errno: a virtual lender (a veth) and the
    netkit itself EINVAL; a queue already leased to another netkit EBUSY; a queue an
    AF_XDP socket is bound to EBUSY; a second lender for a netkit already leasing from
    one EOPNOTSUPP. The kernel's messages are recorded."""
    port0, port1 = lender.ports
    said: list[str] = []
    with ExitStack() as stack:
        first = stack.enter_context(netkit_device(unique_name("klf"), rx_queues=3))
        second = stack.enter_context(netkit_device(unique_name("klg"), rx_queues=3))
        pair = create_veth_pair(prefix="klv", addresses=False)
        stack.callback(delete_link, pair.a.name)

        def refused(what: str, want: int, ifindex: int, lender_index: int, queue: int) -> None:
            with pytest.raises(genl.GenlError) as exc:
                genl.queue_create(ifindex, lender_index, queue)
            assert exc.value.errno == want, (what, exc.value)
            said.append(f"{what}: {errno.errorcode[want]} {exc.value.extack!r}")

        refused("virtual lender", errno.EINVAL, first.index, pair.a.ifindex, 0)
        refused("the netkit itself", errno.EINVAL, first.index, first.index, 0)
        assert genl.queue_create(first.index, port0.ifindex, 0) == 1
        refused("queue already leased", errno.EBUSY, second.index, port0.ifindex, 0)
        with xdp.Umem(rig.SMALL_UMEM) as umem, xdp.XskSocket(umem, port1.ifindex, 1,
                                                             xdp.XskConfig(
                                                                 bind_flags=xdp.XDP_COPY)):
            refused("queue bound by AF_XDP", errno.EBUSY, second.index, port1.ifindex, 1)
        refused("second lender", errno.EOPNOTSUPP, first.index, port1.ifindex, 0)
        assert genl.queue_create(first.index, port0.ifindex, 1) == 2  # same lender: fine
    record_property("observed", "; ".join(said))


@lease_marks
def test_lease_on_pair(lender: Netdevsim) -> None:
    """On a netkit pair only the peer (the side that goes into the container) leases:
    the primary is refused with EOPNOTSUPP, the peer gets queue 1."""
    names = (unique_name("klqa"), unique_name("klqb"))
    create_netkit(names[0], single=False, peer=names[1], rx_queues=2)
    try:
        primary, peer = nk.info(names[0]), nk.info(names[1])
        with pytest.raises(genl.GenlError) as exc:
            genl.queue_create(primary.index, lender.ports[0].ifindex, 0)
        assert exc.value.errno == errno.EOPNOTSUPP, exc.value
        assert genl.queue_create(peer.index, lender.ports[0].ifindex, 0) == 1
    finally:
        nk.delete(names[0])


@lease_marks
def test_deleting_lender_deletes_netkit() -> None:
    """A netkit leasing a queue goes with its lender: deleting the netdevsim device
    unregisters the netkit too."""
    name = unique_name("kld")
    nsim = Netdevsim(ports=1, queues=2)
    try:
        dev = create_netkit(name)
        assert genl.queue_create(dev.index, nsim.ports[0].ifindex, 0) == 1
    finally:
        nsim.close()
    try:
        wait_until(lambda: not _exists(name), timeout=30,
                   what=f"{name} to go with its lender")
    finally:
        nk.delete(name)


@lease_marks
def test_af_xdp_zero_copy_on_leased_queue_without_zc(
        lender: Netdevsim, record_property: Callable[[str, object], None]) -> None:
    """Zero-copy AF_XDP on a single netkit's leased queue is handed to the lender; a
    lender without AF_XDP zero-copy (netdevsim: no ndo_xsk_wakeup, no
    NETDEV_XDP_ACT_XSK_ZEROCOPY) makes the kernel refuse the bind; the errno is recorded."""
    with netkit_device(unique_name("klz")) as dev:
        port = lender.ports[0]
        qid = genl.queue_create(dev.index, port.ifindex, 0)
        code = _zero_copy_bind(dev.index, qid)
        record_property("observed", "zero-copy bind on a queue leased from netdevsim: "
                        f"{errno.errorcode.get(code, code)}")
        bring_up(port.ifindex, dev.index)
        assert not genl.queue_get(dev.index, qid).xsk
        assert not genl.queue_get(port.ifindex, 0).xsk


@lease_marks
def test_af_xdp_zero_copy_through_lease() -> None:
    """Zero-copy AF_XDP through a leased queue needs a lender with AF_XDP zero-copy and
    queue management ops: a physical NIC (mlx5, ice, ...), which a kmatrix VM does not
    have (netdevsim has no zero-copy, virtio-net no queue management ops)."""
    pytest.skip("needs a physical NIC with AF_XDP zero-copy and queue management ops to "
                "lease from (mlx5, ice, ...): netdevsim has no zero-copy, virtio-net no "
                "queue management ops")
