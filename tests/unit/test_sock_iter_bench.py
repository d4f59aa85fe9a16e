"""Pure logic of the socket iterator benchmark: the median walk, the price of a namespace, and
the host driver's ratios, table and SVG (no kernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.sock_iter_bench import print_table, ratios, write_svg
from harness.guest.bench.sock_iter import per_namespace_overhead, summarize


def test_summarize_takes_the_median_walk() -> None:
    s = summarize([(0.03, 0.1, 100), (0.01, 0.3, 100), (0.02, 0.2, 100)], 10000, 1)
    assert s["read_s"] == 0.02 and s["parse_s"] == 0.2
    assert s["read_ns_per_socket"] == pytest.approx(2000.0)
    assert s["read_us_per_namespace"] == pytest.approx(20000.0)
    assert s["walks"] == 3 and s["all_read_s"] == [0.03, 0.01, 0.02]


def test_price_of_a_namespace() -> None:
    one = {"read_s": 0.02, "read_ns_per_socket": 2000.0, "sockets": 10000}
    many = {"read_s": 0.52, "sockets": 10000, "namespaces": 100}
    # 0.52 s - 10000 sockets at 2 us = 0.5 s over 100 namespaces: 5 ms each
    assert per_namespace_overhead(one, many) == pytest.approx(5000.0)
    assert per_namespace_overhead({"read_ns_per_socket": None}, many) is None


def _result(kernel: str, one_s: float, many_s: float) -> dict[str, Any]:
    point = {"one_ns": {"read_s": one_s, "parse_s": 0.1, "read_ns_per_socket": one_s * 1e5,
                        "sockets": 10000, "namespaces": 1},
             "many_ns": {"read_s": many_s, "parse_s": 0.1, "read_ns_per_socket": many_s * 1e5,
                         "sockets": 10000, "namespaces": 100},
             "us_per_namespace": 1.0}
    return {"kernel": kernel, "request": {"sockets": 10000, "namespaces": 100, "per_ns": 100},
            "points": {"tcp": point, "udp": {"one_ns": {"error": "OSError: x"},
                                             "many_ns": {}}}}


def test_ratios_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = [_result("debian-6.12", 0.02, 0.4)]
    assert ratios(results[0]) == {"tcp": pytest.approx(20.0), "udp": None}
    print_table(results)
    out = capsys.readouterr().out
    assert "debian-6.12  tcp" in out and "20.00" in out and "OSError: x" in out
    write_svg(results, tmp_path / "b.svg")
    assert (tmp_path / "b.svg").read_text().startswith("<svg")
