"""Guest node of benchmarks/sockmap_bench.py: not a test case (it lives outside cases/ and
asserts nothing about the kernel); the host command runs it inside each booted kernel and
reads the JSON line it prints."""

from __future__ import annotations

import json

from harness.bench_sockmap import PATHS, SIZES, run
from harness.bpfobj import cache_root

REQUEST = "sockmap-bench/request.json"
MARKER = "SOCKMAP_BENCH_JSON "


def test_sockmap_bench() -> None:
    path = cache_root() / REQUEST
    req = json.loads(path.read_text()) if path.is_file() else {}
    result = run(tuple(req.get("sizes", SIZES)), float(req.get("duration", 1.0)),
                 tuple(req.get("paths", PATHS)))
    print(MARKER + json.dumps(result))
