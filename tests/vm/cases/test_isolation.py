"""Guest cases for tests/vm/test_truth.py: each case starts in a fresh network namespace,
and what one leaves behind fails it and is gone before the next one runs."""

from __future__ import annotations

import os
import socket
import subprocess

from harness.guest import bpf as lb
from harness.guest.net.netns import INIT_NETNS, run_in_netns

LEAKED_LINK = "kmxleak0"
LEAKED_PIN = "/sys/fs/bpf/kmx_leaked_map"


def test_starts_in_a_fresh_netns() -> None:
    assert os.stat("/proc/self/ns/net").st_ino != os.stat(INIT_NETNS).st_ino
    assert [name for _, name in socket.if_nameindex()] == ["lo"]


def test_leaks_a_link() -> None:
    """Adds a device to the guest's root namespace and never deletes it."""
    with run_in_netns(INIT_NETNS):
        subprocess.run(["ip", "link", "add", LEAKED_LINK, "type", "dummy"], check=True,
                       capture_output=True)
    assert os.path.exists(f"/sys/class/net/{LEAKED_LINK}")


def test_leaked_link_is_gone() -> None:
    assert not os.path.exists(f"/sys/class/net/{LEAKED_LINK}")


def test_leaks_a_pin() -> None:
    """Pins a map on the guest's bpffs and leaves it there."""
    with lb.create_map(lb.MapType.ARRAY, 4, 8, 1, name="kmx_leaky") as m:
        lb.obj_pin(m.fd, LEAKED_PIN)
    assert os.path.exists(LEAKED_PIN)


def test_leaked_pin_is_gone() -> None:
    assert not os.path.exists(LEAKED_PIN)
