"""Choose the accelerator: KVM only where it really boots a kernel, TCG otherwise.

"/dev/kvm exists" is not "KVM works": under some paravirtual hypervisors KVM_CREATE_VM
succeeds and the guest then dies in the kernel's decompressor ("KVM internal error").
So we try: boot the kernel under KVM with an early serial console and wait for the
"Linux version" banner. The verdict is cached per host kernel and QEMU version.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...command import format_argv, run, which
from ...paths import cache_root

log = logging.getLogger("kmatrix.accel")

PROBE_TIMEOUT = 30.0
_BANNER = b"Linux version"
_KVM_DEATH = ("KVM internal error", "failed to initialize kvm", "Could not access KVM")


@dataclass(frozen=True)
class Accel:
    #: "kvm" or "tcg"
    name: str
    #: why this one: the probe's evidence, for the report
    reason: str

    @property
    def vng_args(self) -> list[str]:
        return [] if self.name == "kvm" else ["--disable-kvm"]


def _qemu_version(qemu: str) -> str:
    return run([qemu, "--version"]).stdout.splitlines()[0]


def probe_kvm(image: Path, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Boot `image` under KVM until its banner appears; (works, evidence)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm missing or not accessible"
    qemu = which("qemu-system-x86_64")
    with tempfile.TemporaryDirectory(prefix="kmatrix-kvm-") as tmp:
        serial = Path(tmp) / "serial.log"
        argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-display", "none",
                "-monitor", "none", "-no-reboot", "-kernel", str(image),
                "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1",
                "-serial", f"file:{serial}"]
        log.debug("kvm probe: %s", format_argv(argv))
        errlog = Path(tmp) / "stderr.log"
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if serial.exists() and _BANNER in serial.read_bytes():
                    return True, "KVM booted the kernel to its banner"
                stderr = errlog.read_text(errors="replace")
                for death in _KVM_DEATH:
                    if death in stderr:
                        return False, f"KVM cannot boot a kernel here: {death}"
                if proc.poll() is not None:
                    return False, f"QEMU/KVM exited ({proc.returncode}): {stderr.strip()[-200:]}"
                time.sleep(0.2)
            return False, f"no kernel banner under KVM within {timeout:.0f}s"
        finally:
            proc.kill()
            proc.wait()


def choose(requested: str, image: Path) -> Accel:
    """requested: 'auto', 'kvm' or 'tcg'."""
    if requested == "tcg":
        return Accel("tcg", "requested (--accel tcg)")
    if requested == "kvm":
        return Accel("kvm", "requested (--accel kvm)")
    qemu = which("qemu-system-x86_64")
    key = f"{os.uname().release}|{_qemu_version(qemu)}"
    cache = cache_root() / "accel.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        works, evidence = probe_kvm(image)
        known[key] = {"kvm": works, "evidence": evidence}
        tmp = cache.with_name(f".accel.{os.getpid()}.json")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(cache)
    entry = known[key]
    if entry["kvm"]:
        return Accel("kvm", entry["evidence"])
    return Accel("tcg", f"KVM not usable: {entry['evidence']}")
