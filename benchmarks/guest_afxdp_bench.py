"""Guest node of benchmarks/afxdp_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

from harness.guest.bench import read_request, report
from harness.guest.bench.afxdp import PATHS, SIZE, run

MARKER = "AFXDP_BENCH_JSON "


def test_afxdp_bench() -> None:
    req = read_request("afxdp-bench")
    result = run(float(req.get("duration", 1.0)), tuple(req.get("paths", PATHS)),
                 int(req.get("size", SIZE)), int(req.get("rounds", 3)),
                 str(req.get("mode", "skb")))
    report(MARKER, result)
