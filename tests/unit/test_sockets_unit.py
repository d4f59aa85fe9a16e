"""Host-side unit tests of harness.guest.sockets (no BPF, no VM): payloads, pair
factories for the kinds the host can make, exact-bytes I/O and its deadlines."""

from __future__ import annotations

import socket

import pytest

from harness.guest.net.sockets import (
    KINDS,
    Kind,
    assert_nothing_arrives,
    first_difference,
    payload,
    recv_available,
    recv_exact,
    send_all,
    socket_pair,
    wait_eof,
)

HOST_KINDS = [k for k in KINDS if not k.is_vsock]


def test_payload_deterministic_and_seeded() -> None:
    assert payload(1000, 1) == payload(1000, 1)
    assert payload(1000, 1) != payload(1000, 2)
    assert len(payload(0)) == 0 and len(payload(33)) == 33
    assert payload(64, 3)[:32] == payload(32, 3)


def test_first_difference() -> None:
    assert "byte 2" in first_difference(b"abcd", b"abXd")
    assert "lengths differ" in first_difference(b"abc", b"ab")


def test_kind_properties() -> None:
    assert [k.value for k in KINDS] == ["tcp4", "tcp6", "udp4", "udp6", "unix_stream",
                                        "unix_dgram", "vsock_stream", "vsock_seqpacket"]
    assert Kind.TCP6.is_tcp and Kind.TCP6.family == socket.AF_INET6
    assert Kind.UDP4.max_message == 65507 and not Kind.UDP4.is_stream
    assert Kind.VSOCK_SEQPACKET.sotype == socket.SOCK_SEQPACKET


@pytest.mark.parametrize("kind", HOST_KINDS, ids=lambda k: k.value)
def test_pair_carries_exact_bytes_both_ways(kind: Kind) -> None:
    with socket_pair(kind) as pair:
        for src, dst in ((pair.a, pair.b), (pair.b, pair.a)):
            sizes = [1, 1500, min(60000, kind.max_message)]
            for seed, size in enumerate(sizes):
                data = payload(size, seed)
                send_all(src, data, timeout=5)
                assert recv_exact(dst, size, timeout=5) == data
            assert recv_available(dst) == b""


def test_recv_exact_times_out_and_never_over_reads() -> None:
    with socket_pair(Kind.UNIX_STREAM) as pair:
        send_all(pair.a, b"0123456789")
        assert recv_exact(pair.b, 4) == b"0123"
        with pytest.raises(TimeoutError, match="6 of 8"):
            recv_exact(pair.b, 8, timeout=0.2)


def test_eof_and_nothing_arrives() -> None:
    with socket_pair(Kind.TCP4) as pair:
        assert_nothing_arrives(pair.b, grace=0.05)
        send_all(pair.a, b"x")
        with pytest.raises(AssertionError, match="1 unexpected"):
            assert_nothing_arrives(pair.b, grace=1)
        assert recv_exact(pair.b, 1) == b"x"
        pair.a.shutdown(socket.SHUT_WR)
        with pytest.raises(AssertionError, match="EOF"):
            assert_nothing_arrives(pair.b, grace=1)
        wait_eof(pair.b, timeout=2)


def test_nothing_arrives_watches_several_over_one_window() -> None:
    """Several sockets share one window: a byte that arrives late on any of them (here
    half-way through, on the second) is caught and named."""
    import threading
    import time

    with socket_pair(Kind.UNIX_STREAM) as one, socket_pair(Kind.UDP4) as two:
        t0 = time.monotonic()
        assert_nothing_arrives({"one": one.b, "two": two.b}, grace=0.2, what="pair")
        assert time.monotonic() - t0 >= 0.2  # the whole window, once
        timer = threading.Timer(0.1, lambda: send_all(two.a, b"late"))
        timer.start()
        try:
            with pytest.raises(AssertionError, match=r"^pair: two: 4 unexpected"):
                assert_nothing_arrives({"one": one.b, "two": two.b}, grace=2, what="pair")
        finally:
            timer.join()
