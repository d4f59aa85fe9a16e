"""bpf_sock_destroy (v6.5) from iter/tcp and iter/udp programs.

Modelled on tools/testing/selftests/bpf/prog_tests/sock_destroy.c: the kfunc aborts a socket
with ECONNABORTED (net/ipv4/tcp.c tcp_abort, net/ipv4/udp.c udp_abort):

- TCP: the destroyed socket's next operation fails ECONNABORTED, its peer gets a reset
  (ECONNRESET); a destroyed listener is closed (accept() answers EINVAL, new connections
  are refused);
- UDP: the destroyed socket's next receive fails ECONNABORTED and a connected one is
  disconnected (ENOTCONN, EDESTADDRREQ on send); a socket bound to an explicit port keeps
  it (only the error is reported), as every member of a reuseport group does.

bpf/sock_destroy.bpf.c destroys the full sockets that match a cookie set, a local or a
remote port, and logs every call (cookie -> return value, number of calls), so each case
checks that exactly the matching sockets were destroyed, each once, and that the others
still carry data. Calling the kfunc from anything but an iterator is refused by the
verifier ("calling kernel function bpf_sock_destroy is not allowed").
"""

from __future__ import annotations

import contextlib
import errno
import functools
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness.guest import bpf as lb
from harness.guest.net.sockets import cookie

pytestmark = pytest.mark.requires("bpf_sock_destroy")

FAMILIES = {"4": (socket.AF_INET, "127.0.0.1"), "6": (socket.AF_INET6, "::1")}
CFG_LPORT, CFG_RPORT = 0, 1
TIMEOUT = 10.0


@dataclass
class Destroyer:
    """bpf/sock_destroy.bpf.c's destroy_tcp and destroy_udp, loaded."""

    obj: lb.BpfObject

    def run(self, proto: str, *, cookies: tuple[int, ...] = (), lport: int = 0,
            rport: int = 0) -> dict[int, tuple[int, int]]:
        """Set the filters, run iter/`proto` once over the namespace, clear the filters;
        every call of the kfunc: cookie -> (return value, calls)."""
        cfg, targets = self.obj.map("cfg"), self.obj.map("targets")
        for c in cookies:
            targets.update(struct.pack("<Q", c), b"\x01")
        cfg.update(CFG_LPORT, lport)
        cfg.update(CFG_RPORT, rport)
        try:
            with self.obj.program(f"destroy_{proto}").attach_iter() as link:
                link.read_iter()
        finally:
            cfg.update(CFG_LPORT, 0)
            cfg.update(CFG_RPORT, 0)
            for c in cookies:
                targets.delete(struct.pack("<Q", c))
        log = self.obj.map("destroyed")
        out = {struct.unpack("<Q", k)[0]: struct.unpack("<iI", v) for k, v in log.items()}
        for key in list(log.keys()):
            log.delete(key)
        return out


@pytest.fixture
def destroyer() -> Iterator[Destroyer]:
    with lb.BpfObject(lb.object_path("sock_destroy"),
                      autoload=["destroy_tcp", "destroy_udp"]) as obj:
        yield Destroyer(obj)


def fails_with(err: int, op: Callable[[], object], what: str) -> None:
    with pytest.raises(OSError) as info:
        op()
    got = errno.errorcode.get(info.value.errno or 0, str(info.value.errno))
    assert info.value.errno == err, f"{what}: {got}, want {errno.errorcode[err]}"


def tcp_listener(family: int, host: str, stack: contextlib.ExitStack) -> socket.socket:
    sock = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
    sock.bind((host, 0))
    sock.listen(8)
    sock.settimeout(TIMEOUT)
    return sock


def tcp_connection(listener: socket.socket, stack: contextlib.ExitStack
                   ) -> tuple[socket.socket, socket.socket]:
    client = stack.enter_context(socket.socket(listener.family, socket.SOCK_STREAM))
    client.settimeout(TIMEOUT)
    client.connect(listener.getsockname())
    server = stack.enter_context(listener.accept()[0])
    server.settimeout(TIMEOUT)
    return client, server


def carries(a: socket.socket, b: socket.socket) -> None:
    """a -> b and b -> a still deliver a byte each."""
    for src, dst in ((a, b), (b, a)):
        src.sendall(b"k")
        assert dst.recv(1) == b"k", f"{dst} did not receive what {src} sent"


def reset_seen(sock: socket.socket) -> None:
    """The peer of a destroyed TCP socket reads ECONNRESET (a reset arrived)."""
    fails_with(errno.ECONNRESET, lambda: sock.recv(1), "peer of the destroyed socket")


@pytest.mark.parametrize("fam", FAMILIES)
def test_tcp_client(fam: str, destroyer: Destroyer) -> None:
    """Destroying a connected client by cookie: its next send fails ECONNABORTED, the server
    end reads a reset; another client of the same listener is untouched."""
    family, host = FAMILIES[fam]
    with contextlib.ExitStack() as stack:
        listener = tcp_listener(family, host, stack)
        client, server = tcp_connection(listener, stack)
        other = tcp_connection(listener, stack)
        client.sendall(b"t")
        log = destroyer.run("tcp", cookies=(cookie(client),))
        assert log == {cookie(client): (0, 1)}, f"destroy calls: {log}"
        fails_with(errno.ECONNABORTED, lambda: client.send(b"t"), "destroyed client")
        assert server.recv(1) == b"t", "the byte sent before the destroy was lost"
        reset_seen(server)
        carries(*other)


@pytest.mark.parametrize("fam", FAMILIES)
def test_tcp_server(fam: str, destroyer: Destroyer) -> None:
    """Destroying by local port kills the listener and the accepted socket (each once), not
    the client: the accepted socket's next read fails ECONNABORTED, the client's send
    ECONNRESET, accept() on the listener EINVAL and a new connect is refused; a listener on
    another port keeps working."""
    family, host = FAMILIES[fam]
    with contextlib.ExitStack() as stack:
        listener = tcp_listener(family, host, stack)
        client, server = tcp_connection(listener, stack)
        bystander = tcp_listener(family, host, stack)
        kept = tcp_connection(bystander, stack)
        port = listener.getsockname()[1]
        log = destroyer.run("tcp", lport=port)
        want = {cookie(listener): (0, 1), cookie(server): (0, 1)}
        assert log == want, f"destroy calls: {log}, want listener and accepted socket"
        fails_with(errno.ECONNABORTED, lambda: server.recv(1), "destroyed accepted socket")
        fails_with(errno.ECONNRESET, lambda: client.send(b"t"), "client of it")
        fails_with(errno.EINVAL, listener.accept, "accept() on the destroyed listener")
        probe = stack.enter_context(socket.socket(family, socket.SOCK_STREAM))
        probe.settimeout(TIMEOUT)
        fails_with(errno.ECONNREFUSED, lambda: probe.connect((host, port)),
                   "connect to the destroyed listener's port")
        carries(*kept)
        carries(*tcp_connection(bystander, stack))


@pytest.mark.parametrize("fam", FAMILIES)
def test_tcp_only_matching_remote_port(fam: str, destroyer: Destroyer) -> None:
    """A remote-port filter destroys exactly the clients of one listener (each once): they
    fail ECONNABORTED and their servers see resets, while that listener still accepts and
    the connections to another listener still carry data."""
    family, host = FAMILIES[fam]
    with contextlib.ExitStack() as stack:
        doomed, spared = tcp_listener(family, host, stack), tcp_listener(family, host, stack)
        victims = [tcp_connection(doomed, stack) for _ in range(3)]
        others = [tcp_connection(spared, stack) for _ in range(3)]
        log = destroyer.run("tcp", rport=doomed.getsockname()[1])
        assert log == {cookie(c): (0, 1) for c, _ in victims}, f"destroy calls: {log}"
        for client, server in victims:
            fails_with(errno.ECONNABORTED, functools.partial(client.recv, 1),
                       "destroyed client")
            reset_seen(server)
        for pair in others:
            carries(*pair)
        carries(*tcp_connection(doomed, stack))


def udp_socket(family: int, host: str, stack: contextlib.ExitStack, *, port: int = 0,
               reuseport: bool = False) -> socket.socket:
    sock = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.settimeout(TIMEOUT)
    return sock


@pytest.mark.parametrize("fam", FAMILIES)
def test_udp_client(fam: str, destroyer: Destroyer) -> None:
    """Destroying a connected UDP client by cookie: its next receive fails ECONNABORTED,
    then it is disconnected (getpeername ENOTCONN, send EDESTADDRREQ); the server socket
    and another connected client are untouched."""
    family, host = FAMILIES[fam]
    with contextlib.ExitStack() as stack:
        server = udp_socket(family, host, stack)
        client, other = udp_socket(family, host, stack), udp_socket(family, host, stack)
        for sock in (client, other):
            sock.connect(server.getsockname())
        client.send(b"u")
        assert server.recv(1) == b"u"
        log = destroyer.run("udp", cookies=(cookie(client),))
        assert log == {cookie(client): (0, 1)}, f"destroy calls: {log}"
        fails_with(errno.ECONNABORTED, lambda: client.recv(1), "destroyed client")
        fails_with(errno.ENOTCONN, client.getpeername, "getpeername() after the destroy")
        fails_with(errno.EDESTADDRREQ, lambda: client.send(b"u"), "send() after it")
        other.send(b"o")
        assert server.recvfrom(1) == (b"o", other.getsockname())


def test_udp_reuseport_server_group(destroyer: Destroyer) -> None:
    """Destroying by local port hits all five members of a reuseport group on [::1]:P once
    each: every member's next read fails ECONNABORTED. A socket on another port is not
    touched and still receives."""
    family, host = FAMILIES["6"]
    with contextlib.ExitStack() as stack:
        group = [udp_socket(family, host, stack, reuseport=True)]
        port = group[0].getsockname()[1]
        group += [udp_socket(family, host, stack, port=port, reuseport=True)
                  for _ in range(4)]
        bystander = udp_socket(family, host, stack)
        log = destroyer.run("udp", lport=port)
        assert log == {cookie(s): (0, 1) for s in group}, f"destroy calls: {log}"
        for i, sock in enumerate(group):
            fails_with(errno.ECONNABORTED, functools.partial(sock.recv, 1),
                       f"group member {i}")
        sender = udp_socket(family, host, stack)
        sender.sendto(b"b", bystander.getsockname())
        assert bystander.recv(1) == b"b"


@pytest.mark.parametrize("prog", ["refused_tp_btf", "refused_tc"])
def test_refused_outside_iterators(prog: str) -> None:
    """A tp_btf (tracing, not an iterator) and a tc program calling bpf_sock_destroy are
    refused at load: EACCES with the verifier's 'calling kernel function bpf_sock_destroy
    is not allowed'."""
    with pytest.raises(OSError) as info:
        lb.BpfObject(lb.object_path("sock_destroy"), autoload=[prog]).close()
    assert info.value.errno == errno.EACCES, f"{prog}: {info.value}"
    assert "calling kernel function bpf_sock_destroy is not allowed" in str(info.value), \
        f"{prog}: the verifier said {info.value}"


def test_destroy_is_synchronous(destroyer: Destroyer) -> None:
    """When the read of the destroy iterator returns, the socket is already aborted: its
    error (SO_ERROR) is ECONNABORTED and its state CLOSE, with no waiting."""
    with contextlib.ExitStack() as stack:
        listener = tcp_listener(socket.AF_INET, "127.0.0.1", stack)
        client, _server = tcp_connection(listener, stack)
        destroyer.run("tcp", cookies=(cookie(client),))
        state = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        err = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        assert (err, state) == (errno.ECONNABORTED, 7), (
            f"right after the destroy: SO_ERROR {err}, tcpi_state {state}; want "
            "ECONNABORTED and CLOSE (7)")
