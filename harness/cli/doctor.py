"""`kmatrix doctor`: what is missing on this host, and the exact command that fixes it."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BOOTSTRAP = "scripts/bootstrap"


@dataclass(frozen=True)
class Check:
    name: str
    #: what it is needed for
    why: str
    #: returns (ok, what was found)
    test: Callable[[], tuple[bool, str]]
    #: the command that fixes it
    fix: str


def _tool(name: str) -> Callable[[], tuple[bool, str]]:
    def test() -> tuple[bool, str]:
        venv_bin = str(Path(sys.executable).parent)
        path = shutil.which(name, path=f"{venv_bin}:/usr/local/bin:/usr/bin:/usr/sbin:/sbin:/bin")
        return (path is not None, path or "not found")
    return test


def _ip_netkit() -> tuple[bool, str]:
    ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ip is None:
        return False, "ip not found"
    out = subprocess.run([ip, "link", "help"], capture_output=True, text=True, check=False)
    version = subprocess.run([ip, "-V"], capture_output=True, text=True, check=False).stdout
    ok = "netkit" in (out.stdout + out.stderr)
    return ok, version.strip() + ("" if ok else " (no 'netkit' link type)")


def _libbpf() -> tuple[bool, str]:
    name = ctypes.util.find_library("bpf")
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError:
        return False, f"libbpf.so.1 not loadable ({name})"
    try:
        major, minor = lib.libbpf_major_version(), lib.libbpf_minor_version()
    except AttributeError:
        return False, "libbpf older than 0.6 (no libbpf_major_version)"
    return (major, minor) >= (1, 4), f"libbpf {major}.{minor}"


def _apt_suites() -> tuple[bool, str]:
    out = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True, check=False)
    need = ["bookworm-backports", "trixie-backports"]
    missing = [s for s in need if f"n={s}" not in out.stdout and f"a={s}" not in out.stdout]
    return not missing, "missing " + ", ".join(missing) if missing else "all configured"


CHECKS: tuple[Check, ...] = (
    Check("vng", "boots kernels (virtme-ng)", _tool("vng"), f"{BOOTSTRAP}  # pip: virtme-ng"),
    Check("qemu-system-x86_64", "the VM", _tool("qemu-system-x86_64"),
          "apt-get install -t bookworm-backports qemu-system-x86"),
    Check("busybox", "virtme-ng's initramfs", _tool("busybox"),
          "apt-get install busybox-static"),
    Check("clang-19", "compiles bpf/*.bpf.c (arena needs LLVM 19)", _tool("clang-19"),
          "apt-get install clang-19 llvm-19"),
    Check("bpftool", "cross-checks in cases", _tool("bpftool"),
          "apt-get install -t bookworm-backports bpftool"),
    Check("libbpf >= 1.4", "loads BPF objects (tcx/netkit/arena need 1.4)", _libbpf,
          "apt-get install -t bookworm-backports libbpf1 libbpf-dev"),
    Check("iproute2 with netkit", "netkit cases cross-check", _ip_netkit,
          "apt-get install -t bookworm-backports iproute2"),
    Check("apt suites", "debian:X.Y kernels and newer tools", _apt_suites, BOOTSTRAP),
    Check("apt-get", "fetches kernel packages", _tool("apt-get"), "(Debian host required)"),
    Check("dpkg-deb", "extracts kernel packages", _tool("dpkg-deb"), "(Debian host required)"),
    Check("depmod", "module index of extracted kernels", _tool("depmod"),
          "apt-get install kmod"),
    Check("gcc/make/flex/bison/bc", "building kernels from source",
          lambda: (all(shutil.which(t) for t in ("gcc", "make", "flex", "bison", "bc")),
                   "found" if all(shutil.which(t) for t in ("gcc", "make", "flex", "bison",
                                                            "bc")) else "some missing"),
          "apt-get install gcc make flex bison bc libelf-dev libssl-dev"),
    Check("pahole", "CONFIG_DEBUG_INFO_BTF kernel builds", _tool("pahole"),
          "apt-get install dwarves"),
    Check("/dev/kvm", "fast VMs (TCG is used where KVM cannot boot a kernel)",
          lambda: (Path("/dev/kvm").exists(), "present (usability is probed per run)"
                   if Path("/dev/kvm").exists() else "absent: TCG only"),
          "(optional) enable virtualisation for this machine"),
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="list what is missing and how to fix it")
    doctor.set_defaults(handler=lambda args, rest: run_doctor())


def run_doctor() -> int:
    failed = 0
    width = max(len(c.name) for c in CHECKS)
    for check in CHECKS:
        ok, found = check.test()
        optional = check.name == "/dev/kvm"
        mark = "ok " if ok else ("-- " if optional else "MISSING")
        print(f"{mark:8} {check.name:<{width}}  {found}")
        if not ok:
            print(f"{'':8} {'':<{width}}  needed for: {check.why}")
            print(f"{'':8} {'':<{width}}  fix: {check.fix}")
            if not optional:
                failed += 1
    if failed:
        print(f"\n{failed} missing; `{BOOTSTRAP}` installs all of them.")
    return 1 if failed else 0
