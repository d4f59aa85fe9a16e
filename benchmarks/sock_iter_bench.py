"""What iterating sockets costs, per kernel: one namespace with 10 000 sockets against 100
namespaces with 100 sockets each, for iter/tcp and iter/udp (the guest half is
harness/guest/bench/sock_iter.py, through harness/guest/net/allns.py).

    .venv/bin/python -m benchmarks.sock_iter_bench --kernel debian:6.12 [--kernel debian:7.3]

Boots each kernel itself (benchmarks.guest_driver) and runs
benchmarks/guest_sock_iter_bench.py::test_sock_iter_bench in it, one VM per kernel. Prints
per kernel and kind the median walk (creating and reading the iterators: kernel + BPF, then
parsing the records in Python), the cost per socket and the price of a namespace (what the
many-namespace walk costs beyond its sockets at the one-namespace rate), and writes
results/sock-iter-bench-TIMESTAMP/{sock_iter_bench.json, sock_iter_bench.svg} (bars per
kernel: the many-namespace walk over the one-namespace walk, same number of sockets).

Under TCG every absolute number is an emulated one: compare ratios, and kernels with each
other, not with bare metal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.guest_driver import bench_parser, drive, run_node
from benchmarks.svg_plot import ratio_bars
from harness.guest.bench.sock_iter import KINDS

NODE = "benchmarks/guest_sock_iter_bench.py::test_sock_iter_bench"
MARKER = "SOCK_ITER_BENCH_JSON "


def run_kernel(spec: str, out_dir: Path, sockets: int, rounds: int, accel: str,
               boot_timeout: float) -> dict[str, Any]:
    # making 10k sockets twice per kind and (rounds + 1) walks of each setup; TCG is slow
    budget = 300 + len(KINDS) * (sockets / 20 + 2 * (rounds + 1) * 30)
    return run_node(spec, NODE, MARKER, out_dir, budget, accel, boot_timeout)


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """{kind: many-namespace read time / one-namespace read time} (None if missing)."""
    out: dict[str, float | None] = {}
    for kind, point in result.get("points", {}).items():
        one, many = point.get("one_ns", {}), point.get("many_ns", {})
        out[kind] = (many["read_s"] / one["read_s"]
                     if "read_s" in one and "read_s" in many and one["read_s"] else None)
    return out


def _ms(x: float | None) -> str:
    return "       -" if x is None else f"{x * 1e3:8.2f}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def print_table(results: list[dict[str, Any]]) -> None:
    print("\nsocket iteration, median walk after a warm-up (read: create + read the "
          "iterators; parse: Python)")
    print("NOTE: under TCG (emulated CPU) absolute figures are inflated: compare ratios.")
    head = (f"{'kernel':12} {'kind':4} | {'1 ns: read ms':>13} {'ns/sock':>8} "
            f"{'parse ms':>8} | {'N ns: read ms':>13} {'ns/sock':>8} {'parse ms':>8} | "
            f"{'us/netns':>8} {'N/1':>6}")
    print(head)
    print("-" * len(head))
    for result in results:
        rat = ratios(result)
        for kind, point in result.get("points", {}).items():
            one, many = point.get("one_ns", {}), point.get("many_ns", {})
            if "error" in one or "error" in many:
                print(f"{result['kernel']:12} {kind:4} | "
                      f"{one.get('error') or many.get('error')}")
                continue
            print(f"{result['kernel']:12} {kind:4} | {_ms(one['read_s']):>13} "
                  f"{_num(one['read_ns_per_socket'], '8.0f'):>8} {_ms(one['parse_s'])} | "
                  f"{_ms(many['read_s']):>13} {_num(many['read_ns_per_socket'], '8.0f'):>8} "
                  f"{_ms(many['parse_s'])} | "
                  f"{_num(point.get('us_per_namespace'), '8.1f'):>8} "
                  f"{_num(rat.get(kind), '6.2f'):>6}")
    req = results[0].get("request", {}) if results else {}
    print(f"\n1 ns: {req.get('sockets')} sockets in one namespace; N ns: "
          f"{req.get('namespaces')} namespaces x {req.get('per_ns')} sockets; us/netns: "
          "what a namespace adds beyond its sockets")


def write_svg(results: list[dict[str, Any]], path: Path) -> None:
    """One panel: per kernel, a bar per kind: the many-namespace walk over the
    one-namespace walk (same number of sockets); dashed line at 1."""
    panel = {result["kernel"]: dict(ratios(result)) for result in results}
    ratio_bars(path, {"read time, 100 namespaces x 100 / 1 namespace x 10000": panel},
               KINDS)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--sockets", type=int, default=10000,
                    help="sockets in the one-namespace setup")
    ap.add_argument("--namespaces", type=int, default=100,
                    help="namespaces in the many-namespace setup")
    ap.add_argument("--per-ns", type=int, default=100, help="sockets per namespace there")
    ap.add_argument("--rounds", type=int, default=5, help="timed walks after a warm-up")
    args = ap.parse_args(argv)
    request = {"sockets": args.sockets, "namespaces": args.namespaces, "per_ns": args.per_ns,
               "rounds": args.rounds, "kinds": list(KINDS)}
    return drive("sock-iter-bench", args, request,
                 lambda spec, out_dir: run_kernel(spec, out_dir, args.sockets, args.rounds,
                                                 args.accel, args.boot_timeout),
                 ratios, write_svg, print_table)


if __name__ == "__main__":
    sys.exit(main())
