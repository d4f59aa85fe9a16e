"""The sockmap iterator (iter/sockmap, v5.10) over sockets of several network namespaces,
and where the verifier lets bpf_sock_destroy be called outside iter/tcp and iter/udp.

A sockmap or sockhash holds sockets, not namespaces: sockets of three namespaces put in one
map are all visited by one iter/sockmap iterator (bpf/sock_iter.bpf.c dump_sockmap prints
key, family, protocol, port, cookie and the socket's namespace), unlike the per-namespace
socket iterators. Modelled on tools/testing/selftests/bpf/prog_tests/sockmap_basic.c
(test_sockmap_iter) and bpf_iter.c.

bpf_sock_destroy is registered for every BPF_TRACE_ITER program, but only iter/tcp and
iter/udp hand it a socket they locked and marked trusted; whether the verifier accepts the
call from iter/sockmap and iter/unix is recorded per kernel (`observed`), with its message
when it refuses. The program is only loaded, never run: an accepted one would destroy a
socket the iterator did not lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from harness.guest import bpf as lb
from harness.guest.fixtures import KernelExpectations
from harness.guest.net.allns import SockmapRecord, parse_records
from harness.guest.net.netns import run_in_netns
from harness.guest.net.sockets import cookie, tcp_connection

MAP_TYPES = {"sockmap": lb.MapType.SOCKMAP, "sockhash": lb.MapType.SOCKHASH}
TIMEOUT = 10.0
Record = Callable[[str, object], None]



@contextlib.contextmanager
def sockmap_iterator(smap: lb.Map, expect: KernelExpectations) -> Iterator[lb.Link]:
    """dump_sockmap attached to `smap` (bpf_iter_link_info.map.map_fd); a refusal is one
    of bpf_iter_sockmap."""
    with lb.BpfObject(lb.object_path("sock_iter"), autoload=["dump_sockmap"]) as obj:
        try:
            link = obj.program("dump_sockmap").attach_iter(struct.pack("I", smap.fd))
        except OSError as exc:
            expect.refused("bpf_iter_sockmap", f"iter/sockmap on a {smap.name}: {exc}")
        with link:
            yield link


@pytest.mark.parametrize("map_name", [pytest.param(m, marks=pytest.mark.requires(m))
                                      for m in MAP_TYPES])
def test_sockets_of_several_namespaces(map_name: str, netns_factory: Callable[[], str],
                                       expect: KernelExpectations) -> None:
    """TCP sockets (a listener and both ends of a connection) of the case's namespace and of
    two named ones, all in one map: one iter/sockmap iterator visits every key exactly
    once, with the socket's cookie, port, family, protocol and own namespace."""
    with contextlib.ExitStack() as stack:
        spaces: list[tuple[int, list[socket.socket]]] = []
        for name in (None, netns_factory(), netns_factory()):
            with run_in_netns(name):
                spaces.append((os.stat("/proc/thread-self/ns/net").st_ino,
                               list(tcp_connection(stack, timeout=TIMEOUT))))
        smap = stack.enter_context(lb.create_map(MAP_TYPES[map_name], 4, 8, 16,
                                                 name=f"kmx_{map_name}"))
        want: dict[int, SockmapRecord] = {}
        for ino, socks in spaces:
            for sock in socks:
                key = len(want)
                smap.update(key, sock.fileno())
                want[key] = SockmapRecord(key, socket.AF_INET, socket.IPPROTO_TCP,
                                          sock.getsockname()[1], cookie(sock), ino)
        link = stack.enter_context(sockmap_iterator(smap, expect))
        records = [r for r in parse_records(link.read_iter()) if isinstance(r, SockmapRecord)]
    keys = [r.key for r in records]
    assert sorted(keys) == sorted(want), f"keys visited {keys}, want each of {sorted(want)}"
    assert {r.key: r for r in records} == want
    assert len({ino for ino, _ in spaces}) == 3


def verifier_reason(message: str) -> str:
    """The verifier's verdict in a failed load's log: the line before its 'processed N
    insns' summary (or the last line)."""
    lines = [line.strip() for line in message.replace(" | ", "\n").splitlines()
             if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("processed ") and i:
            return lines[i - 1]
    return lines[-1] if lines else message


@pytest.mark.requires("bpf_sock_destroy")
@pytest.mark.parametrize(("prog", "target"), [
    pytest.param("sockmap_destroy", "iter/sockmap", marks=pytest.mark.requires("sockmap"),
                 id="sockmap"),
    pytest.param("unix_destroy", "iter/unix", marks=pytest.mark.requires("bpf_iter_unix"),
                 id="unix")])
def test_sock_destroy_verdict(prog: str, target: str, record_property: Record) -> None:
    """Loading a program that calls bpf_sock_destroy from `target`: the verifier either
    accepts it (it then attaches) or refuses it with a message of its own; which one, and
    the message, is recorded for this kernel. The program never runs."""
    try:
        obj = lb.BpfObject(lb.object_path("sock_destroy"), autoload=[prog])
    except OSError as exc:
        reason = verifier_reason(str(exc))
        record_property("observed", f"bpf_sock_destroy in {target}: refused by the "
                                    f"verifier: {reason}")
        assert "-- END PROG LOAD LOG --" in str(exc) or "processed " in str(exc), (
            f"{prog} failed before the verifier ran: {exc}")
        return
    with obj:
        if target == "iter/sockmap":
            smap = lb.create_map(lb.MapType.SOCKMAP, 4, 8, 1, name="kmx_destroy")
            with smap, obj.program(prog).attach_iter(struct.pack("I", smap.fd)):
                pass
        else:
            with obj.program(prog).attach_iter():
                pass
    record_property("observed", f"bpf_sock_destroy in {target}: accepted by the verifier "
                                "(attached, not run)")
