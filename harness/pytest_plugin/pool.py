"""The VMs of one pytest process: at most one per kernel, booted lazily. A kernel that is
an SSH target (--target; harness.targets.ssh) gets an `SshTarget` instead: connected, not
booted, and never restarted once lost."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..acquire.kernel import Kernel
from ..bpf.compile import OBJECTS_ENV, object_set
from ..errors import BootError
from ..protocol import BOOT_ENV
from ..targets.base import Target
from ..targets.qemu import accel as accel_mod
from ..targets.qemu.vm import GuestVM, VMOptions, nic_args
from ..targets.ssh.options import SshOptions
from ..targets.ssh.spec import TargetKernel


class VMPool:
    """At most one running VM per kernel in this process; boots lazily, reboots after a loss,
    and remembers a kernel that cannot boot so its remaining cases fail fast."""

    def __init__(self, kernels: list[Kernel], accel_request: str, options: VMOptions,
                 results_dir: Path, worker: str,
                 expect: dict[str, dict[str, dict[str, Any]]] | None = None,
                 objects: Path | None = None,
                 guest_env: dict[str, str] | None = None,
                 ssh: SshOptions | None = None, keep_failed: bool = False,
                 project_bpf: Path | None = None) -> None:
        self.kernels = {k.label: k for k in kernels}
        #: --keep-failed: every VM gets a shell port; the first failed case's VM is kept
        self.keep_failed = keep_failed
        #: a project's own bpf/ folder, compiled beside kmatrix's
        self.project_bpf = project_bpf
        #: label -> the folder of its VM's shell socket (removed when the VM is closed)
        self._shell_dirs: dict[str, Path] = {}
        #: how SSH targets (kernels that are TargetKernel) are reached and set up
        self.ssh = ssh or SshOptions()
        self.accel_request = accel_request
        self.options = options
        self.results_dir = results_dir
        self.worker = worker
        self._vms: dict[str, Target] = {}
        self._accels: dict[str, accel_mod.Accel] = {}
        self._boot_errors: dict[str, BootError] = {}
        self._boots: dict[str, int] = {}
        #: label -> guest node ids this process will run on that kernel
        self.nodeids: dict[str, list[str]] = {}
        #: (label, guest node id) -> the host item's node id
        self.host_nodeids: dict[tuple[str, str], str] = {}
        #: label -> the NICs its VM needs (vng --network KIND: "loop" = two virtio-net
        #: devices joined by a QEMU hub), when one of its cases asks with @pytest.mark.nics
        self.nics: dict[str, str] = {}
        #: the BPF objects of this checkout, compiled on the host (set at the first boot)
        self._objects: Path | None = objects
        #: extra environment of every agent of this process
        self.guest_env = dict(guest_env or {})
        #: label -> its last VM once closed (its final probe table goes to the report)
        self._final: dict[str, Target] = {}
        #: label -> feature -> expectation fields, sent to that kernel's agent
        self.expect = expect or {}
        #: label -> probe results of its earlier boots (a reboot after a crash reuses them)
        self.known_probes: dict[str, dict[str, dict[str, Any]]] = {}

    def console_log(self, label: str) -> Path:
        suffix = f"-{self.worker}" if self.worker != "main" else ""
        return self.results_dir / f"console-{label}{suffix}.log"

    def get(self, label: str) -> Target:
        vm = self._vms.get(label)
        if vm is not None and vm.alive:
            return vm
        if vm is not None:
            self._keep_probes(label, vm)
            vm.close(graceful=False)
            del self._vms[label]
            self._note_lost(label, vm)
        if label in self._boot_errors:
            err = self._boot_errors[label]
            first = str(err).splitlines()[0]
            if isinstance(self.kernels[label], TargetKernel):
                raise BootError(f"{first} (not retried: kmatrix cannot restart an SSH "
                                "target; the first case it failed shows what was seen)")
            raise BootError(f"{first} (not retried: this kernel already failed to boot; "
                            "the first case of this kernel shows the console)")
        kernel = self.kernels[label]
        if self._objects is None:
            self._objects = object_set(extra=[self.project_bpf] if self.project_bpf else [])
        if isinstance(kernel, TargetKernel):  # a machine over SSH: connected, not booted
            return self._start(label, self._ssh_target(kernel))
        if label not in self._accels:
            self._accels[label] = accel_mod.choose(self.accel_request, kernel.image)
        options = self.options
        if label in self.nics:
            options = dataclasses.replace(options, extra_vng_args=(
                *options.extra_vng_args, *nic_args(self.nics[label])))
        if self.keep_failed:  # a shell port, in case this VM is kept for the user
            folder = Path(tempfile.mkdtemp(prefix="kmatrix-keep-"))
            self._shell_dirs[label] = folder
            options = dataclasses.replace(options, shell_socket=folder / "shell.sock")
        vm = GuestVM(kernel, self._accels[label], self.console_log(label),
                     self.nodeids.get(label, []), options,
                     guest_env={OBJECTS_ENV: str(self._objects), **self.guest_env,
                                # which boot of this kernel in this process (1, 2...)
                                BOOT_ENV: str(self._boots.get(label, 0) + 1)},
                     expect=self.expect.get(label, {}),
                     known_probes=self.known_probes.get(label, {}))
        vm.hold_on_failure = self.keep_failed
        return self._start(label, vm)

    def keep(self, label: str, nodeid: str) -> dict[str, Any]:
        """--keep-failed: `label`'s VM stops running cases and serves a shell with the failed
        case `nodeid` held; it outlives this process (until its shell exits). What to tell
        the user: {"label", "nodeid", "socket", "pid"}."""
        vm = self._vms.pop(label)
        assert isinstance(vm, GuestVM) and vm.options.shell_socket is not None
        vm.open_shell(keep=nodeid, banner=f"kmatrix run --keep-failed: {nodeid} failed here")
        self._keep_probes(label, vm)
        pid = vm.release()
        self._shell_dirs.pop(label, None)  # the kept VM's now
        return {"label": label, "nodeid": nodeid, "socket": str(vm.options.shell_socket),
                "pid": pid}

    def _start(self, label: str, vm: Target) -> Target:
        """Start `vm` for `label`; a BootError is remembered (the kernel's other cases
        fail fast with it)."""
        try:
            vm.start()
        except BootError as exc:
            vm.close(graceful=False)
            self._boot_errors[label] = exc
            raise
        except BaseException:
            vm.close(graceful=False)
            raise
        self._boots[label] = self._boots.get(label, 0) + 1
        self._vms[label] = vm
        return vm

    def _ssh_target(self, kernel: TargetKernel) -> Target:
        from ..targets.ssh.target import SshTarget  # paramiko: only when a target is used

        label = kernel.label
        return SshTarget(kernel, self.console_log(label), self.nodeids.get(label, []),
                         self.ssh, guest_env={**self.guest_env,
                                              BOOT_ENV: str(self._boots.get(label, 0) + 1)},
                         expect=self.expect.get(label, {}),
                         known_probes=self.known_probes.get(label, {}),
                         objects=self._objects)

    def restartable(self, label: str) -> bool:
        """Whether `label` can be given a fresh VM (not a kernel that failed to boot, not an
        SSH target that was lost)."""
        vm = self._vms.get(label)
        return label not in self._boot_errors and not getattr(vm, "lost", None)

    def _note_lost(self, label: str, vm: Target) -> None:
        """An SSH target that stopped answering cannot be restarted: remember it like a
        kernel that cannot boot, so its remaining cases error at once (one line each)."""
        lost = getattr(vm, "lost", None)  # SshTarget.lost: why (GuestVMs are rebooted)
        if lost and label not in self._boot_errors:
            self._boot_errors[label] = BootError(f"{label}: the target was lost: {lost}")

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
        if isinstance(kernel, TargetKernel):  # a machine: its own CPUs, no accelerator
            rec.update(vcpus=kernel.cpus, memory=kernel.memory, accel="ssh",
                       accel_reason=kernel.origin)
        if label in self._boot_errors:
            rec["boot_error"] = self._boot_errors[label].describe()
        vm = self._vms.get(label) or self._final.get(label)
        if vm is not None and vm.info is not None:
            rec.update(boot_id=f"{self.worker}-{self._boots[label]}", boot_s=vm.info.boot_s,
                       release=vm.info.release, probes=vm.info.probes,
                       probe_dmesg=vm.info.probe_dmesg, crosscheck=vm.info.crosscheck)
        return rec

    def close(self, label: str, *, graceful: bool = True) -> dict[str, list[str]]:
        """Stop `label`'s VM; the late kernel messages its agent sent at shutdown (guest
        node id -> lines)."""
        vm = self._vms.pop(label, None)
        if vm is None:
            return {}
        vm.close(graceful=graceful)
        folder = self._shell_dirs.pop(label, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        self._keep_probes(label, vm)
        self._note_lost(label, vm)
        return vm.take_late()

    def _keep_probes(self, label: str, vm: Target) -> None:
        if vm.info is not None:
            self.known_probes.setdefault(label, {}).update(vm.info.probes)
            self._final[label] = vm

    def close_all(self, *, graceful: bool = True) -> None:
        """Stop every VM of this process; `graceful=False` (an interrupt) kills at once."""
        for label in list(self._vms):
            self.close(label, graceful=graceful)

    @property
    def boot_failures(self) -> dict[str, BootError]:
        """Kernels that could not be booted (label -> the error)."""
        return dict(self._boot_errors)
