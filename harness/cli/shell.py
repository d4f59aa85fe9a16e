"""`kmatrix shell --kernel SPEC`: an interactive shell in a kernel booted the way the suite
boots it; `kmatrix attach SOCKET`: a terminal on a kept VM's shell.

The shell's VM is the suite's: the same image, vCPUs and memory, cached mounts, compiled
BPF objects, expectations (the agent knows them), NICs with --nics. The agent is ready to
run cases; it then serves the shell instead (harness/guest/shell.py): `kmatrix-case
NODEID` runs one as the agent would. Exiting the shell powers the VM off; Ctrl-] detaches
(the VM stays up: `kmatrix attach` prints how to come back).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

from ..acquire.kernel import Kernel
from ..acquire.spec import resolve
from ..bpf.compile import OBJECTS_ENV, object_set
from ..errors import ExitCode, UserError
from ..matrix.features import expectations, load_features, read_config
from ..paths import PROJECT_ROOT
from ..targets.qemu.accel import Accel, choose
from ..targets.qemu.attach import attach
from ..targets.qemu.vm import GuestVM, VMOptions, nic_args


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shell = sub.add_parser("shell", help="an interactive shell in a booted kernel, with the "
                           "case environment ready")
    shell.add_argument("--kernel", required=True, metavar="SPEC",
                       help="debian:X.Y, debian-source:X.Y, PATH (as for kmatrix run)")
    shell.add_argument("--nics", choices=("loop",), default=None,
                       help="give the VM NICs as cases marked nics('loop') get them")
    shell.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    shell.add_argument("--vm-cpus", type=int, default=2)
    shell.add_argument("--vm-memory", default="2G")
    shell.add_argument("--vm-cpu-model", metavar="MODEL",
                       help="QEMU CPU model (default: virtme-ng's, max under TCG)")
    shell.add_argument("--boot-timeout", type=float, default=300.0)
    shell.set_defaults(handler=lambda args, rest: run_shell(args))
    att = sub.add_parser("attach", help="this terminal on the shell of a VM kept by "
                         "`kmatrix run --keep-failed` (or detached from `kmatrix shell`)")
    att.add_argument("socket", type=Path, help="the shell socket kmatrix printed")
    att.set_defaults(handler=lambda args, rest: run_attach(args.socket))


def run_attach(sock: Path) -> int:
    if not sock.exists():
        raise UserError(f"no shell socket {sock}",
                        hint="the VM is gone (its shell exited) or the path is mistyped")
    how = attach(sock)
    print(f"\r\nkmatrix: {how}" + (f"; attach again: kmatrix attach {sock}"
                                    if how == "detached" else ""), file=sys.stderr)
    return int(ExitCode.OK)


def suite_vm(kernel: Kernel, acc: Accel, options: VMOptions, console: Path) -> GuestVM:
    """A VM of `kernel` as the suite boots it (the compiled BPF objects, the kernel's
    expectations), running no case: for a shell (options.shell_socket)."""
    expect = expectations(load_features(), kernel.series, read_config(kernel.config), None)
    return GuestVM(kernel, acc, console, [], options,
                   guest_env={OBJECTS_ENV: str(object_set())},
                   expect={f: e.as_dict() for f, e in expect.items()})


def run_shell(args: argparse.Namespace) -> int:
    kernel = resolve(args.kernel)
    acc = choose(args.accel, kernel.image)
    folder = Path(tempfile.mkdtemp(prefix="kmatrix-shell-"))
    sock = folder / "shell.sock"
    options = VMOptions(cpus=args.vm_cpus, memory=args.vm_memory, cpu_model=args.vm_cpu_model,
                        boot_timeout=args.boot_timeout, tag="shell", shell_socket=sock)
    if args.nics:
        options = dataclasses.replace(options, extra_vng_args=nic_args(args.nics))
    console = PROJECT_ROOT / "results" / f"shell-console-{kernel.label}.log"
    print(f"kmatrix: booting {kernel.label} ({acc.name}); console log {console}",
          file=sys.stderr)
    vm = suite_vm(kernel, acc, options, console)
    size = shutil.get_terminal_size((120, 40))
    detached = False
    try:
        with vm:
            vm.open_shell(rows=size.lines, cols=size.columns)
            if attach(sock) == "detached":
                pid = vm.release()
                detached = True
                print(f"\r\nkmatrix: detached; the VM runs on (leash pid {pid}): "
                      f"kmatrix attach {sock}", file=sys.stderr)
                return int(ExitCode.OK)
    finally:
        if not detached:
            shutil.rmtree(folder, ignore_errors=True)
    print("\r\nkmatrix: shell exited; the VM is down", file=sys.stderr)
    return int(ExitCode.OK)

