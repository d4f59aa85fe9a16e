"""`kmatrix bench`: what a boot and a case cost, against a plain `vng --exec true`.

Figures, measured in one run on one kernel (host wall-clock seconds unless said):
- plain boot: `vng -r IMAGE --exec true`, start to exit, median of --plain-runs (the
  floor any vng runner pays): the reference every ratio is taken against;
- boot to first case verdict: VM start to the first (no-op) case's verdict on the host,
  broken down into host prepare (the host's work before QEMU's spawn: bytecode, the root
  image, the snapshot), host start (spawn to the kernel's banner), kernel to init,
  init to exec (virtme-ng's init, to our shell line) and exec to agent (our mounts, the
  interpreter's start, the agent module's imports: guest clock), agent imports (its own,
  before hello), session start (its pytest session: config, plugins, conftests),
  collection, first case; a restored guest: host prepare, restore, attach (of which the
  checkout's mount and the agent's imports); a snapshotted guest, the image check (the
  wait for the walk of the host's content that confirms the images it was started on:
  rootdisk.Candidate). A first boot is measured as a new run's: the images this process
  confirmed are forgotten; the restart is the same run's next VM;
- restart after a crash: a case panics the guest; from that verdict to the next case's
  verdict on a fresh VM of the same kernel (the probes it already answered are reused);
- per-case overhead: mean host-side time of a no-op guest case (fork into a fresh network
  namespace, pytest's runtest protocol, the isolation check after it), with the agent's
  own split, and what the stack's evidence (counters, drop reasons) adds to it (the same
  case without it, interleaved; goal < 20 ms);
- the ratios the goals are stated in: boot to first verdict / plain boot (goal <= 1.5),
  restart / plain boot (same goal), per-case overhead in ms (goal <= 50).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from ..acquire.kernel import Kernel
from ..acquire.spec import resolve
from ..bpf.compile import OBJECTS_ENV, object_set
from ..command import run, which
from ..errors import CommandError, VMLostError
from ..paths import PROJECT_ROOT
from ..targets.qemu import rootdisk
from ..targets.qemu.accel import Accel, choose
from ..targets.qemu.vm import GuestVM, VMOptions, cpu_model_opts

NOOP_CASE = "tests/vm/cases/test_guest_basics.py::test_noop"


def plain_vng_boot(image: Path, accel_args: list[str], cpu_model: str | None = None) -> float:
    import os

    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    t0 = time.monotonic()
    # without udev in the guest, virtme-ng runs the command on the console and cannot read
    # its exit status back (vng exits 255); the boot itself is what is timed here
    model = [f"--qemu-opts={opt}" for opt in cpu_model_opts(cpu_model)]
    proc = run([which("vng"), *accel_args, *model, "-r", str(image), "--exec", "true"],
               env=env, timeout=600, check=False)
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
    bench.add_argument("--plain-runs", type=int, default=2,
                       help="plain vng boots measured for the reference (median)")
    bench.add_argument("--uncached-fs", action="store_true",
                       help="the guest reads everything over virtme-ng's uncached 9p root "
                            "(no cached mount: harness.targets.qemu.guestfs), to compare")
    bench.add_argument("--snapshot", action="store_const", const="on", default="auto",
                       help="boot from a root image and restore a saved ready guest (a "
                            "first boot saves it): the boot and the restart are restores "
                            "(default: where the kernel can, as `kmatrix run`)")
    bench.add_argument("--no-snapshot", action="store_const", const="off", dest="snapshot",
                       help="boot on virtme-ng's 9p root, as `kmatrix run --no-snapshot`")
    bench.add_argument("--vm-cpu-model", metavar="MODEL",
                       help="QEMU CPU model of the guest and of the plain boot (default: "
                            "virtme-ng's, max under TCG)")
    bench.set_defaults(handler=lambda args, rest: run_boot_bench(
        args.kernel or "debian:6.12", cases=args.cases, accel=args.accel, json_out=args.json,
        boot_timeout=args.boot_timeout, plain_runs=args.plain_runs,
        cached_fs=not args.uncached_fs,
        snapshot="off" if args.uncached_fs else args.snapshot, cpu_model=args.vm_cpu_model))


PANIC_CASE = "tests/vm/cases/test_guest_basics.py::test_panic"


def _boot_to_verdict(kernel: Kernel, acc: Accel, console_log: Path, options: VMOptions,
                     objects: Path, known: dict[str, dict[str, Any]] | None = None
                     ) -> tuple[GuestVM, float, dict[str, Any]]:
    """Boot, run the no-op case once: (the VM, seconds to the verdict, the verdict). The
    VM's marks get "start": when the host began (its own work before QEMU's spawn). A
    boot without `known` probes starts as a new run's, a restart as a run's next VM."""
    vm = GuestVM(kernel, acc, console_log, [NOOP_CASE, PANIC_CASE], options,
                 guest_env={OBJECTS_ENV: str(objects)}, known_probes=known)
    if known is None:  # as a new run: not knowing the root image this process confirmed
        rootdisk.forget()
    t0 = time.monotonic()
    try:
        vm.start()
        vm.marks["start"] = t0
        first = vm.run_case(NOOP_CASE, 300)
    except BaseException:
        vm.close(graceful=False)
        raise
    return vm, time.monotonic() - t0, first


def breakdown(vm: GuestVM, to_verdict: float, first: dict[str, Any]) -> dict[str, float]:
    """Where the seconds to the first verdict went."""
    assert vm.info is not None
    g, m = vm.info.guest, vm.marks
    banner = m.get("banner", m["spawn"]) - m["spawn"]
    init_at, agent_at = g.get("init_at", -1.0), g.get("agent_at", -1.0)
    exec_at = g.get("exec_at", -1.0)
    nan = float("nan")
    # the host's work before QEMU's spawn: bytecode compiled, the root image (the last
    # run's, its content walked meanwhile: image_check_s), the snapshot found
    prepare = m["spawn"] - m.get("start", m["spawn"])
    # cases are collected per module, when the first of the module is asked for
    collect = float(first.get("timing", {}).get("collect_s", 0.0))
    image_wait = m.get("image_wait", 0.0)
    mount = g.get("mount_s", -1.0)
    out = {"host_prepare_s": prepare,
           "host_start_s": banner,
           "kernel_to_init_s": init_at if init_at >= 0 else nan,
           # virtme-ng's init, to the moment it runs our shell line
           "init_to_exec_s": exec_at - init_at if init_at >= 0 and exec_at >= 0 else nan,
           # our mounts, the interpreter's start, the agent module's imports (pytest's)
           "exec_to_agent_s": agent_at - exec_at if exec_at >= 0 else nan,
           "init_to_agent_s": agent_at - init_at if init_at >= 0 else nan,
           # a restored guest's attach: the checkout mounted, then the agent imported
           "mount_s": mount if mount >= 0 else nan,
           "agent_imports_s": g.get("import_s", 0.0) - max(mount, 0.0),
           "hello_s": m["hello"] - m["spawn"],
           # the wait, after the hello, for the walk that confirms the root image the VM
           # was started on (it runs from the spawn on; a snapshotted VM's first boot of a
           # run)
           "image_check_s": image_wait,
           # from the agent's hello to its pytest session ready (config, plugins, conftests)
           "session_start_s": g.get("collect_s", nan) - image_wait,
           "collection_s": collect,
           "first_case_s": to_verdict - prepare - vm.info.boot_s - collect,
           "probes_before_first_case_s": g.get("probe_s", 0.0)}
    if vm.restored:  # no kernel boot: the guest's own figures are those of the saved boot
        for k in ("host_start_s", "kernel_to_init_s", "init_to_exec_s", "exec_to_agent_s",
                  "init_to_agent_s"):
            out[k] = nan
        attach = m.get("attach", m["hello"])
        out["restore_s"] = attach - m["spawn"]
        # the checkout mounted, the agent's imports (import_s, measured in the guest)
        out["attach_s"] = m["hello"] - attach
    out["boot_to_first_verdict_s"] = to_verdict
    return out


#: the parts of a no-op case's time, in order, as `case_split_text` prints them
CASE_SPLIT = (("before", "before_s"), ("fork", "process_fork_s"),
              ("netns", "process_netns_s"), ("pytest", "process_protocol_s"),
              ("verdict", "process_verdict_s"), ("handoff", "process_handoff_s"),
              ("exit", "process_exit_s"), ("isolation", "isolation_s"),
              ("evidence after", "evidence_after_s"), ("channel+host", "channel_s"))


def case_split_text(split: dict[str, float]) -> str:
    """`split: before 3 ms, fork 20 ms, ...` in the order a case goes through them."""
    return "split: " + ", ".join(f"{name} {split.get(key, float('nan')) * 1000:.0f} ms"
                                 for name, key in CASE_SPLIT)


def run_boot_bench(spec: str, cases: int = 10, accel: str = "auto",
                   json_out: str | None = None, boot_timeout: float = 900.0,
                   plain_runs: int = 2, cached_fs: bool = True, snapshot: str = "auto",
                   cpu_model: str | None = None) -> int:
    kernel = resolve(spec)
    acc = choose(accel, kernel.image)
    print(f"kernel {kernel.label} ({kernel.origin}), accelerator {acc.name}: {acc.reason}")
    plains = [plain_vng_boot(kernel.image, acc.vng_args, cpu_model)
              for _ in range(max(1, plain_runs))]
    plain = statistics.median(plains)
    print(f"plain `vng --exec true` boot: {plain:.1f}s (median of "
          f"{', '.join(f'{p:.1f}' for p in plains)})")
    console_log = PROJECT_ROOT / "results" / f"bench-console-{kernel.label}.log"
    print(f"console log: {console_log}")
    objects = object_set()
    options = VMOptions(boot_timeout=boot_timeout, tag="bench", cached_fs=cached_fs,
                        snapshot=snapshot, cpu_model=cpu_model)
    vm, to_verdict, first = _boot_to_verdict(kernel, acc, console_log, options, objects)
    cold: dict[str, float] = {}
    if vm.snapshotted and not vm.restored:  # that boot saved the snapshot: time a restore
        cold = {"snapshot_cold_boot_s": to_verdict,
                "snapshot_save_s": vm.marks.get("saved", -1.0) - vm.marks.get("saving", 0.0)}
        print(f"first boot (saves the snapshot): {to_verdict:.1f}s to the first verdict, "
              f"of which the save {cold['snapshot_save_s']:.1f}s")
        vm.close(graceful=False)
        vm, to_verdict, first = _boot_to_verdict(kernel, acc, console_log, options, objects)
    if vm.snapshotted and not vm.restored:
        print("the snapshot did not restore: see the console log", file=sys.stderr)
        vm.close(graceful=False)
        return 1
    parts = breakdown(vm, to_verdict, first)
    per_case: list[float] = []
    bare: list[float] = []
    agent_split: list[dict[str, float]] = []
    try:
        # interleaved, so both see the same machine: with the stack's evidence (counters,
        # drop reasons: every case gets them) and without
        for _ in range(cases):
            for with_evidence, into in ((True, per_case), (False, bare)):
                t1 = time.monotonic()
                res = vm.run_case(NOOP_CASE, 300, evidence=with_evidence)
                into.append(time.monotonic() - t1)
                if with_evidence:
                    agent_split.append({**res.get("timing", {}),
                                        "minflt": float(res.get("minflt", 0)),
                                        **{f"process_{k}_s": v
                                           for k, v in res.get("phases", {}).items()},
                                        "host_s": into[-1]})
                if not any(r["outcome"] == "passed" for r in res.get("reports", [])):
                    print(f"no-op case did not pass: {res}", file=sys.stderr)
                    return 1
        # a crash: the guest panics under a case; the next verdict needs a new VM
        known = dict(vm.info.probes) if vm.info else {}
        t_crash = time.monotonic()
        try:
            vm.run_case(PANIC_CASE, 120)
        except VMLostError:
            pass
        lost_s = time.monotonic() - t_crash
    finally:
        vm.close(graceful=False)
    # from the crash's verdict (the VM is gone) to the next case's verdict on a new VM
    vm2, restart, _ = _boot_to_verdict(kernel, acc, console_log, options, objects, known)
    vm2.close(graceful=False)
    mean = statistics.mean(per_case)
    split = {k: statistics.mean(d.get(k, 0.0) for d in agent_split)
             for k in dict.fromkeys(k for d in agent_split for k in d)}
    # what the agent did not see: the request's and the verdict's way between the host's
    # pytest and the agent (channel, JSON, the host's bookkeeping)
    split["channel_s"] = split["host_s"] - sum(split.get(k, 0.0) for k in
                                               ("before_s", "case_s", "after_s"))
    assert vm.info is not None
    figures: dict[str, Any] = {
        "kernel": kernel.label, "release": vm.info.release, "accel": acc.name,
        "vcpus": options.cpus, "cpu_model": cpu_model or "virtme-ng's",
        "cached_fs": cached_fs, "snapshot": vm.snapshotted, **cold,
        "restart_restored": vm2.restored, "plain_vng_boot_s": plain,
        "plain_vng_boots_s": plains,
        **parts,
        "boot_to_first_case_ratio": to_verdict / plain,
        "crash_detected_s": lost_s, "restart_to_first_verdict_s": restart,
        "restart_ratio": restart / plain,
        "per_case_mean_s": mean, "per_case_stdev_s": statistics.pstdev(per_case),
        "per_case_n": cases, "per_case_agent_split_s": split,
        "per_case_ratio": mean / plain,
        "per_case_without_evidence_s": statistics.mean(bare),
        "evidence_cost_s": mean - statistics.mean(bare),
    }
    print(f"boot to first case verdict: {to_verdict:.1f}s = "
          f"{figures['boot_to_first_case_ratio']:.2f} x plain boot (goal <= 1.5)")
    booted = (("restore_s", "attach_s", "mount_s", "agent_imports_s") if vm.restored else
              ("host_start_s", "kernel_to_init_s", "init_to_exec_s", "exec_to_agent_s",
               "agent_imports_s"))
    keys = ("host_prepare_s", *booted, "image_check_s", "session_start_s", "collection_s",
            "first_case_s")
    for key in keys:
        print(f"  {key.removesuffix('_s').replace('_', ' '):<24} {parts[key]:6.1f}s")
    print(f"restart after a crash:      {restart:.1f}s = {figures['restart_ratio']:.2f} x "
          f"plain boot (crash seen after {lost_s:.1f}s"
          f"{'; restored from the snapshot' if vm2.restored else ''})")
    print(f"per-case overhead (no-op):  {mean * 1000:.0f} ms +- "
          f"{figures['per_case_stdev_s'] * 1000:.0f} over {cases} (goal <= 50 ms); agent: "
          f"case process {split['case_s'] * 1000:.0f} ms ("
          f"{split['minflt']:.0f} page faults), checks after "
          f"it {split['after_s'] * 1000:.0f} ms")
    print("  " + case_split_text(split))
    print(f"  CPU: the case process {split.get('case_cpu_s', 0.0) * 1000:.0f} ms, the agent "
          f"{split.get('agent_cpu_s', 0.0) * 1000:.0f} ms (the evidence process not counted)")
    print(f"  of which the stack's evidence: {figures['evidence_cost_s'] * 1000:.0f} ms "
          f"(without: {figures['per_case_without_evidence_s'] * 1000:.0f} ms; goal < 20 ms)")
    if json_out:
        Path(json_out).write_text(json.dumps(figures, indent=1))
    return 0
