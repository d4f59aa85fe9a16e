"""Pure logic of the AF_XDP benchmark's guest side: folding rounds, bypass/stack ratios."""

from __future__ import annotations

from typing import Any

from harness.guest.bench.afxdp import fold, ratios


def _round(fps: float, median_us: float) -> dict[str, Any]:
    return {"blast": {"fps": fps}, "rr": {"median_us": median_us}}


def test_fold_keeps_measured_median_rounds() -> None:
    rounds = [_round(100.0, 30.0), _round(300.0, 10.0), _round(200.0, 20.0)]
    folded = fold(rounds)
    assert folded["blast"] == {"fps": 200.0} and folded["rr"] == {"median_us": 20.0}
    assert folded["rounds"] == rounds


def test_fold_skips_failures_and_reports_total_failure() -> None:
    assert fold([{"error": "x"}, _round(1.0, 2.0)])["blast"] == {"fps": 1.0}
    assert fold([{"error": "TimeoutError: y"}])["error"] == "TimeoutError: y"
    assert fold([])["error"] == "no rounds"


def test_ratios_bypass_over_stack() -> None:
    paths = {"stack": _round(100.0, 50.0), "bypass": _round(25.0, 150.0)}
    assert ratios(paths) == {"fps": 0.25, "latency": 3.0}
    assert ratios({"stack": _round(100.0, 50.0), "bypass": {"error": "e"}}) == {
        "fps": None, "latency": None}
    assert ratios({"stack": _round(0.0, 0.0), "bypass": _round(1.0, 1.0)}) == {
        "fps": None, "latency": None}
