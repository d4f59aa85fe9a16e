"""Pure logic of the netkit benchmark's guest side: path order per round, median round."""

from harness.guest.bench.netkit import median_round, rotated


def test_rotated_order_per_round() -> None:
    paths = ["host", "netkit-l3", "netkit-l2", "veth"]
    assert [rotated(paths, r)[0] for r in range(5)] == [
        "host", "netkit-l3", "netkit-l2", "veth", "host"]
    assert rotated([], 3) == []


def _round(bps: float, median_us: float) -> dict[str, object]:
    return {"stream": {"bps": bps}, "rr": {"median_us": median_us}}


def test_median_round_picks_measured_rounds() -> None:
    rounds = [_round(40e6, 2100.0), _round(70e6, 1000.0), _round(65e6, 1200.0)]
    folded = median_round(rounds)
    assert folded["stream"] == {"bps": 65e6} and folded["rr"] == {"median_us": 1200.0}
    assert folded["rounds"] == rounds


def test_median_round_skips_failed_rounds_and_reports_total_failure() -> None:
    assert median_round([{"error": "x"}, _round(1.0, 2.0)])["stream"] == {"bps": 1.0}
    assert median_round([{"error": "TimeoutError: y"}])["error"] == "TimeoutError: y"
