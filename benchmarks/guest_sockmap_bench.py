"""Guest node of benchmarks/sockmap_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

from harness.guest.bench import read_request, report
from harness.guest.bench.sockmap import PATHS, SIZES, run

MARKER = "SOCKMAP_BENCH_JSON "


def test_sockmap_bench() -> None:
    req = read_request("sockmap-bench")
    result = run(tuple(req.get("sizes", SIZES)), float(req.get("duration", 1.0)),
                 tuple(req.get("paths", PATHS)))
    report(MARKER, result)
