"""The nested-QEMU code path of the bypass cases (harness/guest/xdp/qemu.py) without
running QEMU: reading `-netdev help` and `--version`, deciding whether map-path exists,
building the af-xdp netdev argument."""

from __future__ import annotations

import pytest

from harness.guest.xdp import qemu

#: Debian's QEMU 10.0.2 (the one on the CI hosts), verbatim
HELP_10_0 = """Available netdev backend types:
socket
stream
dgram
hubport
tap
user
l2tpv3
vde
bridge
vhost-user
vhost-vdpa
"""


def test_netdev_help_lists_backends() -> None:
    backends = qemu.parse_netdev_help(HELP_10_0)
    assert backends[:3] == ("socket", "stream", "dgram") and "af-xdp" not in backends
    assert qemu.parse_netdev_help("nothing here") == ()
    assert "af-xdp" in qemu.parse_netdev_help(HELP_10_0 + "af-xdp\n")


def test_version() -> None:
    text = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"
    assert qemu.parse_version(text) == (10, 0, 2)
    assert qemu.parse_version("QEMU emulator version 10.1") == (10, 1, 0)
    with pytest.raises(ValueError):
        qemu.parse_version("qemu")


def _found(version: tuple[int, int, int], af_xdp: bool) -> qemu.QemuNetdevs:
    backends = ("socket", "stream", *(("af-xdp",) if af_xdp else ()))
    return qemu.QemuNetdevs("/usr/bin/qemu-system-x86_64", version, "QEMU x", backends)


def test_why_not() -> None:
    no = _found((10, 0, 2), False).why_not()
    assert no is not None and "no af-xdp" in no and "socket, stream" in no
    old = _found((9, 2, 0), True).why_not()
    assert old is not None and "not map-path" in old
    assert _found((10, 1, 0), True).why_not() is None
    assert _found((11, 0, 0), True).map_path


def test_af_xdp_netdev_argument() -> None:
    arg = qemu.af_xdp_netdev("n0", "eth1", "/sys/fs/bpf/xsks", start_queue=2)
    assert arg == ("af-xdp,id=n0,ifname=eth1,mode=skb,queues=1,start-queue=2,inhibit=on,"
                   "map-path=/sys/fs/bpf/xsks,map-start-index=2")
    with pytest.raises(ValueError):
        qemu.af_xdp_netdev("n0", "eth1", "/a,b")
    with pytest.raises(ValueError):
        qemu.af_xdp_netdev("n0", "eth1", "/x", mode="zc")
    argv = qemu.nested_argv("/q", arg)
    assert argv[0] == "/q" and argv[-2:] == ["-netdev", arg] and "-S" in argv
