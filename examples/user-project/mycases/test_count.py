"""A case of the project: its own BPF object, fixture and helper, kmatrix's library."""

from __future__ import annotations

import socket

import pytest
from helpers.traffic import send_udp

from harness.guest import bpf as lb


@pytest.mark.requires("tcx")
def test_counts_udp_at_tcx_ingress(udp_port: int) -> None:
    """Three datagrams to a port on lo pass tcx ingress: the program counts exactly 3."""
    lo = socket.if_nametoindex("lo")
    with lb.BpfObject(lb.object_path("count_udp")) as obj:
        obj.map("cfg").update(0, udp_port)
        with obj.program("count_udp").attach_tcx(lo):
            send_udp(udp_port, 3)
        assert obj.map("seen").lookup_int(0) == 3


def test_sees_the_projects_helpers() -> None:
    """The project's own modules import in the guest, from the project's folder."""
    import helpers

    assert helpers.__file__ is not None and "user-project" in helpers.__file__
