"""`kmatrix bench`: what a boot and a case cost, against a plain `vng --exec true`.

Figures, all host wall-clock seconds, measured in one run on one kernel:
- plain boot: `vng -r IMAGE --exec true`, start to exit (the floor any vng runner pays);
- boot-to-first-case: VM start to the first (no-op) case's verdict on the host, which
  includes the agent's imports and the feature probes;
- per-case overhead: mean host-side time of a no-op guest case (fork + pytest in-process);
- both as ratios to the plain boot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from ..acquire.spec import resolve
from ..bpf.compile import OBJECTS_ENV, object_set
from ..command import run, which
from ..errors import CommandError
from ..paths import PROJECT_ROOT
from ..targets.qemu.accel import choose
from ..targets.qemu.vm import GuestVM, VMOptions

NOOP_CASE = "tests/vm/cases/test_guest_basics.py::test_noop"


def plain_vng_boot(image: Path, accel_args: list[str]) -> float:
    import os

    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    t0 = time.monotonic()
    # without udev in the guest, virtme-ng runs the command on the console and cannot read
    # its exit status back (vng exits 255); the boot itself is what is timed here
    proc = run([which("vng"), *accel_args, "-r", str(image), "--exec", "true"], env=env,
               timeout=600, check=False)
    if proc.returncode not in (0, 255):
        raise CommandError(["vng", "-r", str(image), "--exec", "true"], proc.returncode,
                           proc.stdout or "")
    return time.monotonic() - t0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="boot benchmark: boot-to-first-case, per-case "
                           "overhead, both against a plain `vng --exec true`")
    bench.add_argument("--kernel", metavar="SPEC", help="kernel (default debian:6.12)")
    bench.add_argument("--cases", type=int, default=10, help="no-op cases to time")
    bench.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    bench.add_argument("--boot-timeout", type=float, default=900.0,
                       help="seconds to a ready guest (default 900: loaded hosts are slow)")
    bench.set_defaults(handler=lambda args, rest: run_boot_bench(
        args.kernel or "debian:6.12", cases=args.cases, accel=args.accel, json_out=args.json,
        boot_timeout=args.boot_timeout))


def run_boot_bench(spec: str, cases: int = 10, accel: str = "auto",
                   json_out: str | None = None, boot_timeout: float = 900.0) -> int:
    kernel = resolve(spec)
    acc = choose(accel, kernel.image)
    print(f"kernel {kernel.label} ({kernel.origin}), accelerator {acc.name}: {acc.reason}")
    plain = plain_vng_boot(kernel.image, acc.vng_args)
    print(f"plain `vng --exec true` boot: {plain:.1f}s")
    console_log = PROJECT_ROOT / "results" / f"bench-console-{kernel.label}.log"
    print(f"console log: {console_log}")
    t0 = time.monotonic()
    with GuestVM(kernel, acc, console_log, [NOOP_CASE], VMOptions(boot_timeout=boot_timeout),
                 guest_env={OBJECTS_ENV: str(object_set())}) as vm:
        first = vm.run_case(NOOP_CASE, 300)
        boot_to_first = time.monotonic() - t0
        assert vm.info is not None
        per_case: list[float] = []
        for _ in range(cases):
            t1 = time.monotonic()
            res = vm.run_case(NOOP_CASE, 300)
            per_case.append(time.monotonic() - t1)
            if not any(r["outcome"] == "passed" for r in res.get("reports", [])):
                print(f"no-op case did not pass: {res}", file=sys.stderr)
                return 1
        info = vm.info
    mean = statistics.mean(per_case)
    figures = {
        "kernel": kernel.label, "release": info.release, "accel": acc.name,
        "plain_vng_boot_s": plain, "boot_to_ready_s": info.boot_s,
        "boot_to_first_case_s": boot_to_first,
        "guest_uptime_at_ready_s": info.guest.get("uptime"),
        "agent_import_s": info.guest.get("import_s"), "probes_s": info.guest.get("probe_s"),
        "first_case_s": float(first.get("duration", 0)),
        "per_case_mean_s": mean, "per_case_stdev_s": statistics.pstdev(per_case),
        "per_case_n": cases,
        "boot_to_first_case_ratio": boot_to_first / plain,
        "per_case_ratio": mean / plain,
    }
    g = info.guest
    print(f"boot to ready:              {info.boot_s:.1f}s (guest uptime {g.get('uptime', 0):.1f}s,"
          f" agent imports {g.get('import_s', 0):.1f}s, probes {g.get('probe_s', 0):.1f}s,"
          f" collection {g.get('collect_s', 0):.1f}s)")
    print(f"boot to first case verdict: {boot_to_first:.1f}s"
          f" = {figures['boot_to_first_case_ratio']:.2f} x plain boot")
    print(f"per-case overhead (no-op):  {mean:.2f}s +- {figures['per_case_stdev_s']:.2f}"
          f" over {cases} = {figures['per_case_ratio']:.3f} x plain boot")
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=1))
    return 0
