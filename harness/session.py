"""Per-run state of the host session, kept in `config.stash` (no module globals)."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import accel as accel_mod
from .errors import BootError, KmatrixError
from .kernel import Kernel
from .kernels import resolve_all
from .paths import PROJECT_ROOT
from .report import write_all
from .results import CaseResult, RunResults
from .vm import GuestVM, VMOptions

log = logging.getLogger("kmatrix.session")

_RESULTS_ENV = "KMATRIX_RESULTS_DIR"


class VMPool:
    """At most one running VM per kernel in this process; boots lazily, reboots after a loss,
    and remembers a kernel that cannot boot so its remaining cases fail fast."""

    def __init__(self, kernels: list[Kernel], accel_request: str, options: VMOptions,
                 results_dir: Path, worker: str) -> None:
        self.kernels = {k.label: k for k in kernels}
        self.accel_request = accel_request
        self.options = options
        self.results_dir = results_dir
        self.worker = worker
        self._vms: dict[str, GuestVM] = {}
        self._accels: dict[str, accel_mod.Accel] = {}
        self._boot_errors: dict[str, BootError] = {}
        self._boots: dict[str, int] = {}
        #: label -> guest node ids this process will run on that kernel
        self.nodeids: dict[str, list[str]] = {}
        self._objects_built = False

    def console_log(self, label: str) -> Path:
        suffix = f"-{self.worker}" if self.worker != "main" else ""
        return self.results_dir / f"console-{label}{suffix}.log"

    def get(self, label: str) -> GuestVM:
        vm = self._vms.get(label)
        if vm is not None and vm.alive:
            return vm
        if vm is not None:
            vm.close()
            del self._vms[label]
        if label in self._boot_errors:
            err = self._boot_errors[label]
            first = str(err).splitlines()[0]
            raise BootError(f"{first} (not retried: this kernel already failed to boot; "
                            "the first case of this kernel shows the console)")
        kernel = self.kernels[label]
        if not self._objects_built:
            build_bpf_objects()
            self._objects_built = True
        if label not in self._accels:
            self._accels[label] = accel_mod.choose(self.accel_request, kernel.image)
        vm = GuestVM(kernel, self._accels[label], self.console_log(label),
                     self.nodeids.get(label, []), self.options)
        try:
            vm.start()
        except BootError as exc:
            vm.close()
            self._boot_errors[label] = exc
            raise
        except BaseException:
            vm.close()
            raise
        self._boots[label] = self._boots.get(label, 0) + 1
        self._vms[label] = vm
        return vm

    def boot_record(self, label: str) -> dict[str, Any]:
        """What the controller needs to know of the VM serving `label` right now."""
        kernel = self.kernels[label]
        rec: dict[str, Any] = {
            "spec": kernel.spec, "origin": kernel.origin,
            "vcpus": self.options.cpus, "memory": self.options.memory,
            "package_version": kernel.properties.get("package_version", kernel.version or ""),
        }
        acc = self._accels.get(label)
        if acc is not None:
            rec.update(accel=acc.name, accel_reason=acc.reason)
        if label in self._boot_errors:
            rec["boot_error"] = self._boot_errors[label].describe()
        vm = self._vms.get(label)
        if vm is not None and vm.info is not None:
            rec.update(boot_id=f"{self.worker}-{self._boots[label]}", boot_s=vm.info.boot_s,
                       release=vm.info.release, probes=vm.info.probes)
        return rec

    def close(self, label: str) -> None:
        vm = self._vms.pop(label, None)
        if vm is not None:
            vm.close()

    def close_all(self) -> None:
        for label in list(self._vms):
            self.close(label)


@dataclass
class SessionState:
    kernels: list[Kernel]
    case_dirs: list[Path]
    case_timeout: float
    results_dir: Path
    pool: VMPool
    results: RunResults = field(default_factory=RunResults)
    started: float = 0.0

    @classmethod
    def from_config(cls, config: pytest.Config) -> SessionState:
        specs: list[str] = config.getoption("kernel") or []
        try:
            kernels = resolve_all(specs)
        except KmatrixError as exc:
            raise pytest.UsageError(f"kmatrix: {exc.describe()}") from exc
        dirs = [Path(p) for p in config.getini("kmatrix_case_dirs")] or [PROJECT_ROOT / "cases"]
        results_dir = cls._results_dir(config)
        workerinput = getattr(config, "workerinput", {})
        worker = workerinput.get("workerid", "main")
        cpus = config.getoption("vm_cpus") or auto_vm_cpus(
            int(workerinput.get("workercount", 1)), len(os.sched_getaffinity(0)))
        options = VMOptions(cpus=cpus,
                            memory=config.getoption("vm_memory"),
                            boot_timeout=config.getoption("boot_timeout"),
                            watchdog_grace=config.getoption("watchdog_grace"))
        pool = VMPool(kernels, config.getoption("accel"), options, results_dir, worker)
        state = cls(kernels, [d.resolve() for d in dirs], config.getoption("case_timeout"),
                    results_dir, pool)
        for k in kernels:
            info = state.results.kernel(k.label)
            info.spec, info.origin = k.spec, k.origin
            info.package_version = k.properties.get("package_version", k.version or "")
            info.release = k.release or ""
        return state

    @staticmethod
    def _results_dir(config: pytest.Config) -> Path:
        opt = config.getoption("results_dir")
        if opt:
            path = Path(opt)
        elif os.environ.get(_RESULTS_ENV):
            path = Path(os.environ[_RESULTS_ENV])
        else:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = PROJECT_ROOT / "results" / stamp
        path = path.resolve()
        os.environ[_RESULTS_ENV] = str(path)  # xdist workers inherit it
        return path

    def is_case_path(self, path: Path) -> bool:
        path = path.resolve()
        return any(path.is_relative_to(d) for d in self.case_dirs)

    def console_log(self, label: str) -> Path:
        return self.pool.console_log(label)

    def note_boot(self, label: str, rec: dict[str, Any]) -> None:
        info = self.results.kernel(label)
        for key in ("spec", "origin", "package_version", "accel", "accel_reason", "release",
                    "boot_error", "vcpus", "memory"):
            if rec.get(key):
                setattr(info, key, rec[key])
        if rec.get("probes"):
            info.probes = rec["probes"]
        if rec.get("boot_id"):
            info.boots[rec["boot_id"]] = float(rec.get("boot_s", 0.0))

    def record(self, case: CaseResult) -> None:
        self.results.add(case)

    def write_reports(self) -> dict[str, Path]:
        return write_all(self.results, self.results_dir)


#: vCPUs per guest when the host has cores to spare
MAX_AUTO_VM_CPUS = 2


def auto_vm_cpus(parallel_vms: int, host_cpus: int) -> int:
    """vCPUs per guest so that the VMs running side by side do not outnumber the host's
    cores. Measured here (2 cores, TCG): two guests with 2 vCPUs each took 380 s to boot,
    with 1 vCPU each 60 s; guest spinlocks spin while their holder's vCPU is descheduled."""
    return max(1, min(MAX_AUTO_VM_CPUS, host_cpus // max(1, parallel_vms)))


def build_bpf_objects() -> None:
    """Compile bpf/*.bpf.c on the host before a VM boots (cached; the guest only loads)."""
    from . import bpfobj

    bpfobj.build_all()


def kernel_label_of(nodeid: str, labels: list[str]) -> str | None:
    """The kernel label a host node id ends with (`...[x-debian-6.12]`), if any."""
    for label in labels:
        if nodeid.endswith((f"[{label}]", f"-{label}]")):
            return label
    return None


state_key = pytest.StashKey[SessionState]()
