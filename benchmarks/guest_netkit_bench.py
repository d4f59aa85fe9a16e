"""Guest node of benchmarks/netkit_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

from harness.guest.bench import read_request, report
from harness.guest.bench.netkit import PATHS, RR_SIZE, run

MARKER = "NETKIT_BENCH_JSON "


def test_netkit_bench() -> None:
    req = read_request("netkit-bench")
    result = run(float(req.get("duration", 1.0)), tuple(req.get("paths", PATHS)),
                 int(req.get("rr_size", RR_SIZE)), int(req.get("rounds", 3)))
    report(MARKER, result)
