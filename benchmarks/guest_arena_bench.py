"""Guest node of benchmarks/arena_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

from harness.guest.bench import read_request, report
from harness.guest.bench.arena import DEFAULT_READS, DEFAULT_REPEAT, DEFAULT_ROUNDS, run

MARKER = "ARENA_BENCH_JSON "


def test_arena_bench() -> None:
    req = read_request("arena-bench")
    result = run(int(req.get("repeat", DEFAULT_REPEAT)), int(req.get("reads", DEFAULT_READS)),
                 int(req.get("rounds", DEFAULT_ROUNDS)))
    report(MARKER, result)
