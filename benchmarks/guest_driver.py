"""What the benchmark drivers share: boot a kernel, run one guest benchmark node in it, and
pull the JSON line it printed out of the verdict; then the same over several kernels."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.acquire.spec import resolve
from harness.bpf.compile import OBJECTS_ENV, object_set
from harness.paths import cache_root
from harness.targets.qemu.accel import choose
from harness.targets.qemu.vm import GuestVM, VMOptions


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every driver takes (--kernel, --accel, --boot-timeout, --out); the
    driver adds its own. The description is the first paragraph of `doc`."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--kernel", action="append", required=True,
                    help="kernel spec (debian:6.12, an image path, ...); repeat for more")
    ap.add_argument("--accel", default="auto")
    ap.add_argument("--boot-timeout", type=float, default=900.0,
                    help="seconds to wait for the guest agent (a loaded host boots slowly)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: results/NAME-DATE-TIME)")
    return ap


def out_folder(out: Path | None, name: str) -> Path:
    """--out, or results/NAME-DATE-TIME; made."""
    folder = out or Path("results") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def extract(verdict: dict[str, Any], marker: str) -> dict[str, Any]:
    """The JSON object the guest node printed after `marker` (in its captured output)."""
    for report in verdict.get("reports", []):
        for _name, text in report.get("sections", []):
            for line in str(text).splitlines():
                if line.startswith(marker):
                    return dict(json.loads(line[len(marker):]))
    detail = [r.get("longrepr", "") for r in verdict.get("reports", [])]
    raise RuntimeError(f"no benchmark result from the guest: {verdict.get('collect_errors')} "
                       f"{detail} {str(verdict.get('output', ''))[-2000:]}")


def run_node(spec: str, node: str, marker: str, out_dir: Path, budget: float, accel: str,
             boot_timeout: float) -> dict[str, Any]:
    """Boot `spec`, run guest node `node` with a `budget` seconds timeout, return its result
    with the kernel label, accelerator and wall time added."""
    kernel = resolve(spec)
    acc = choose(accel, kernel.image)
    print(f"== {kernel.label}: accelerator {acc.name} ({acc.reason})", flush=True)
    t0 = time.monotonic()
    with GuestVM(kernel, acc, out_dir / f"console-{kernel.label}.log", [node],
                 VMOptions(boot_timeout=boot_timeout),
                 guest_env={OBJECTS_ENV: str(object_set())}) as vm:
        verdict = vm.run_case(node, budget)
    result = extract(verdict, marker)
    result.update(kernel=kernel.label, accel=acc.name, wall_s=time.monotonic() - t0)
    return result


def run_kernels(specs: list[str],
                run_one: Callable[[str], dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """run_one(spec) for each kernel; (results, number of kernels that failed)."""
    results: list[dict[str, Any]] = []
    failed = 0
    for spec in specs:
        try:
            results.append(run_one(spec))
        except Exception as exc:  # one kernel's failure must not lose the others
            failed += 1
            print(f"{spec}: benchmark failed: {exc}", file=sys.stderr)
    return results, failed


def write_request(name: str, request: dict[str, Any]) -> None:
    """What the guest node of benchmark `name` should measure: a JSON file in the host's
    cache, which the guest reads with harness.guest.bench.read_request(name)."""
    path = cache_root() / name / "request.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(request))


def publish(name: str, results: list[dict[str, Any]], failed: int, out_dir: Path,
            ratios: Callable[[dict[str, Any]], Any],
            write_svg: Callable[[list[dict[str, Any]], Path], None],
            print_table: Callable[[list[dict[str, Any]]], None]) -> int:
    """Add each kernel's ratios, write NAME.json and NAME.svg, print the table; the exit
    code (1 when a kernel failed or none ran)."""
    if not results:
        return 1
    for result in results:
        result["ratios"] = ratios(result)
    stem = name.replace("-", "_")
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1))
    write_svg(results, out_dir / f"{stem}.svg")
    print_table(results)
    print(f"\nwrote {out_dir / f'{stem}.json'} and {out_dir / f'{stem}.svg'}")
    return 1 if failed else 0


def drive(name: str, args: argparse.Namespace, request: dict[str, Any],
          run_one: Callable[[str, Path], dict[str, Any]],
          ratios: Callable[[dict[str, Any]], Any],
          write_svg: Callable[[list[dict[str, Any]], Path], None],
          print_table: Callable[[list[dict[str, Any]]], None]) -> int:
    """A driver's main after its options: the output folder, the guest's request,
    run_one(spec, out_dir) on each --kernel, then `publish`. A kernel whose result carries
    failed self-checks ("checks") counts as failed."""
    out_dir = out_folder(args.out, name)
    write_request(name, request)
    results, failed = run_kernels(args.kernel, lambda spec: run_one(spec, out_dir))
    failed += sum(1 for result in results if result.get("checks"))
    return publish(name, results, failed, out_dir, ratios, write_svg, print_table)
