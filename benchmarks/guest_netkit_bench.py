"""Guest node of benchmarks/netkit_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

import json

from harness.bench_netkit import PATHS, RR_SIZE, run
from harness.bpfobj import cache_root

REQUEST = "netkit-bench/request.json"
MARKER = "NETKIT_BENCH_JSON "


def test_netkit_bench() -> None:
    path = cache_root() / REQUEST
    req = json.loads(path.read_text()) if path.is_file() else {}
    result = run(float(req.get("duration", 1.0)), tuple(req.get("paths", PATHS)),
                 int(req.get("rr_size", RR_SIZE)), int(req.get("rounds", 3)))
    print(MARKER + json.dumps(result))
