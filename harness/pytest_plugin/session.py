"""Per-run state of the host session, kept in `config.stash` (no module globals)."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..acquire.kernel import Kernel
from ..acquire.spec import resolve_all
from ..errors import ExitCode, InfraError, KmatrixError
from ..guest.case_process import PROFILE_ENV
from ..matrix.features import expectations, load_features, read_config
from ..matrix.kernels import overrides
from ..paths import PROJECT_ROOT
from ..protocol import Expectation
from ..results.model import CaseResult, RunResults, Status
from ..results.writers import write_all
from ..targets.qemu.vm import VMOptions
from ..targets.ssh.options import DEFAULT_CACHE, SshOptions
from .pool import VMPool

log = logging.getLogger("kmatrix.session")

_RESULTS_ENV = "KMATRIX_RESULTS_DIR"


@dataclass
class SessionState:
    kernels: list[Kernel]
    case_dirs: list[Path]
    case_timeout: float
    results_dir: Path
    pool: VMPool
    results: RunResults = field(default_factory=RunResults)
    started: float = 0.0
    #: kernel label -> feature -> what that kernel should support (images/features.toml)
    expect: dict[str, dict[str, Expectation]] = field(default_factory=dict)
    #: --rerun-failed: attempts on a fresh boot for a case that failed
    rerun_failed: int = 0
    #: --keep-failed: the VMs kept for the user (pool.keep records), at most one
    kept: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: pytest.Config) -> SessionState:
        specs: list[str] = config.getoption("kernel") or []
        try:
            kernels = resolve_all(specs)
        except InfraError as exc:  # a kernel that could not be fetched or built
            pytest.exit(f"kmatrix: {exc.describe()}", returncode=int(ExitCode.INFRA_ERROR))
        except KmatrixError as exc:  # a bad spec, a missing tool, a broken fragment
            raise pytest.UsageError(f"kmatrix: {exc.describe()}") from exc
        dirs = case_dirs(config)
        results_dir = cls._results_dir(config)
        ssh = ssh_options(config, dirs)
        if config.getoption("target"):  # SSH targets: one more column each, after kernels
            from ..targets.ssh.facts import resolve_targets  # paramiko: only when asked

            try:
                kernels += resolve_targets(config.getoption("target"), ssh,
                                           {k.label for k in kernels}, results_dir)
            except InfraError as exc:  # unreachable: like a kernel that cannot be fetched
                pytest.exit(f"kmatrix: {exc.describe()}",
                            returncode=int(ExitCode.INFRA_ERROR))
            except KmatrixError as exc:  # a host key, a credential, a bad URL or Python
                raise pytest.UsageError(f"kmatrix: {exc.describe()}") from exc
        workerinput = getattr(config, "workerinput", {})
        worker = workerinput.get("workerid", "main")
        cpus = config.getoption("vm_cpus") or auto_vm_cpus(
            int(workerinput.get("workercount", 1)), len(os.sched_getaffinity(0)))
        options = VMOptions(cpus=cpus,
                            memory=config.getoption("vm_memory"),
                            cpu_model=config.getoption("vm_cpu_model"),
                            boot_timeout=config.getoption("boot_timeout"),
                            watchdog_grace=config.getoption("watchdog_grace"),
                            tag=results_dir.name,
                            # the guest works from the project whose cases run (a
                            # contributor's own, or kmatrix's)
                            rootdir=config.rootpath,
                            case_dirs=tuple(d.resolve() for d in dirs),
                            snapshot=str(config.getoption("snapshot")))
        try:
            expect = kernel_expectations(kernels, Path(config.getoption("matrix_file")))
        except KmatrixError as exc:  # a broken feature table or matrix file
            raise pytest.UsageError(f"kmatrix: {exc.describe()}") from exc
        pool = VMPool(kernels, config.getoption("accel"), options, results_dir, worker,
                      expect={label: {f: e.as_dict() for f, e in table.items()}
                              for label, table in expect.items()},
                      objects=objects_option(config),
                      guest_env=guest_env(config), ssh=ssh,
                      keep_failed=bool(config.getoption("keep_failed")),
                      project_bpf=project_bpf(config.rootpath))
        state = cls(kernels, [d.resolve() for d in dirs], config.getoption("case_timeout"),
                    results_dir, pool)
        state.expect = expect
        state.rerun_failed = max(0, int(config.getoption("rerun_failed")))
        for k in kernels:
            info = state.results.kernel(k.label)
            info.expect = {f: e.as_dict() for f, e in expect[k.label].items()}
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
            path = config.rootpath / "results" / stamp  # the project's (kmatrix's own, or yours)
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
            info.probes.update(rec["probes"])
        for line in rec.get("probe_dmesg", []):
            if line not in info.probe_dmesg:
                info.probe_dmesg.append(line)
        if rec.get("crosscheck"):
            info.crosscheck = dict(rec["crosscheck"])
        if rec.get("boot_id"):
            info.boots[rec["boot_id"]] = float(rec.get("boot_s", 0.0))

    def record(self, case: CaseResult) -> None:
        self.results.add(case)

    def write_reports(self) -> dict[str, Path]:
        return write_all(self.results, self.results_dir)

    def infra_failures(self) -> dict[str, str]:
        """Kernels that could not be booted: label -> why (exit status 6)."""
        return {label: info.boot_error for label, info in self.results.kernels.items()
                if info.boot_error}

    def all_skipped(self) -> dict[str, int]:
        """Kernels on which every recorded case skipped: label -> how many cases."""
        out: dict[str, int] = {}
        for label in self.results.kernels:
            statuses = [c.status for c in self.results.cases if c.kernel == label]
            if statuses and all(s is Status.SKIP for s in statuses):
                out[label] = len(statuses)
        return out


def guest_env(config: pytest.Config) -> dict[str, str]:
    """The guest's extra environment: --guest-env NAME=VALUE, --guest-profile."""
    out: dict[str, str] = {}
    for item in config.getoption("guest_env") or []:
        name, sep, value = str(item).partition("=")
        if not sep or not name:
            raise pytest.UsageError(f"kmatrix: --guest-env {item!r}: give NAME=VALUE")
        out[name] = value
    if config.getoption("guest_profile"):
        out[PROFILE_ENV] = "1"
    return out


def case_dirs(config: pytest.Config) -> list[Path]:
    """The folders whose tests run in the guest: ini `kmatrix_case_dirs`; else, in a run
    given test paths, the folders of those paths (a project's own cases: `pytest --kernel
    debian:6.12 mycases/`); else the rootdir's cases/."""
    ini = [Path(p) for p in config.getini("kmatrix_case_dirs")]
    if ini:
        return ini
    if config.args_source == pytest.Config.ArgsSource.ARGS and config.args:
        out = []
        for arg in config.args:
            path = (config.invocation_params.dir / arg.split("::", 1)[0]).resolve()
            out.append(path if path.is_dir() else path.parent)
        return list(dict.fromkeys(out))
    return [config.rootpath / "cases"]


def project_bpf(rootdir: Path) -> Path | None:
    """A project's own bpf/ folder (compiled beside kmatrix's), if it is not kmatrix's."""
    folder = rootdir / "bpf"
    if folder.is_dir() and folder.resolve() != (PROJECT_ROOT / "bpf").resolve():
        return folder
    return None


def ssh_options(config: pytest.Config, case_dirs: list[Path]) -> SshOptions:
    """How --target machines are reached and set up (with the VMs' timeouts)."""
    ssh_config = config.getoption("ssh_config")
    return SshOptions(ssh_config=Path(ssh_config) if ssh_config else None,
                      accept_host_keys=frozenset(config.getoption("accept_host_key") or ()),
                      python=config.getoption("target_python"),
                      cache_dir=config.getoption("target_cache") or DEFAULT_CACHE,
                      boot_timeout=config.getoption("boot_timeout"),
                      watchdog_grace=config.getoption("watchdog_grace"),
                      case_dirs=tuple(d.resolve() for d in case_dirs))


def objects_option(config: pytest.Config) -> Path | None:
    """--bpf-objects DIR, checked: a folder the guest can read."""
    value = config.getoption("bpf_objects")
    if value is None:
        return None
    path = Path(value).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"kmatrix: --bpf-objects {value}: not a folder")
    return path


def kernel_expectations(kernels: list[Kernel], matrix_file: Path
                        ) -> dict[str, dict[str, Expectation]]:
    """Each kernel's expectations: the feature table applied to its version and config,
    with the matrix file's overrides for its spec."""
    features = load_features()
    over = overrides(matrix_file) if matrix_file.is_file() else {}
    return {k.label: expectations(features, k.series, read_config(k.config),
                                  over.get(k.spec)) for k in kernels}


#: vCPUs per guest when the host has cores to spare
MAX_AUTO_VM_CPUS = 2


def auto_vm_cpus(parallel_vms: int, host_cpus: int) -> int:
    """vCPUs per guest so that the VMs running side by side do not outnumber the host's
    cores. Measured here (2 cores, TCG): two guests with 2 vCPUs each took 380 s to boot,
    with 1 vCPU each 60 s; guest spinlocks spin while their holder's vCPU is descheduled."""
    return max(1, min(MAX_AUTO_VM_CPUS, host_cpus // max(1, parallel_vms)))


state_key = pytest.StashKey[SessionState]()
