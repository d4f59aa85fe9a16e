"""Guest halves of the datapath benchmarks (benchmarks/*_bench.py drive them from the host):
the host writes what to measure into its cache, the guest node reads it and prints one JSON
line after a marker, which the host extracts from the verdict."""

from __future__ import annotations

import json
from typing import Any

from ..environment import host_cache


def read_request(name: str) -> dict[str, Any]:
    """The request benchmarks.guest_driver.write_request(name, ...) left ({} if none)."""
    path = host_cache() / name / "request.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def report(marker: str, result: dict[str, Any]) -> None:
    """Print the result line the host looks for."""
    print(marker + json.dumps(result))
