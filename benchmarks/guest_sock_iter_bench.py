"""Guest node of benchmarks/sock_iter_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

from harness.guest.bench import read_request, report
from harness.guest.bench.sock_iter import KINDS, run

MARKER = "SOCK_ITER_BENCH_JSON "


def test_sock_iter_bench() -> None:
    req = read_request("sock-iter-bench")
    result = run(int(req.get("sockets", 10000)), int(req.get("namespaces", 100)),
                 int(req.get("per_ns", 100)), int(req.get("rounds", 5)),
                 tuple(req.get("kinds", KINDS)))
    report(MARKER, result)
