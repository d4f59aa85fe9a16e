"""One virtme-ng VM running the guest agent: boot, run cases, detect death, always reap.

Lifetime is a context manager. QEMU's serial console (kernel log) and the guest's stderr go
to the run's console log, which is kept whatever happens; the control channel is a
virtio-serial port wired to a unix socket we listen on before QEMU starts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ... import kernel_log
from ...acquire.kernel import Kernel
from ...bpf.compile import OBJECTS_ENV
from ...command import format_argv, which
from ...errors import BootError, VMLostError
from ...guest import preload
from ...paths import PROJECT_ROOT, cache_root
from ...progress import report_stage
from ...protocol import BOOT_ENV, PORT_NAME, SHELL_PORT_NAME, Message, encode
from ..session import AgentSession, BootInfo, boot_info
from . import guestfs, leash, rootdisk, snapshot, wrapper
from .accel import Accel
from .boot_clock import BootClock
from .bytecode import precompile

log = logging.getLogger("kmatrix.vm")

#: the kernel log level on the console: 5 shows WARN (4) and everything worse
CONSOLE_LOGLEVEL = 5
#: seconds a graceful shutdown may take (the agent exits, the guest powers off under TCG)
SHUTDOWN_WAIT = 20.0
#: seconds the leash gets to kill vng, virtme-run and QEMU after SIGTERM
LEASH_WAIT = 8.0


def nic_args(kind: str) -> tuple[str, ...]:
    """vng arguments for the NICs of a VM whose cases ask for them (`kind`: "loop", two
    virtio-net devices joined by a QEMU hub). The devices offer VIRTIO_F_ACCESS_PLATFORM
    (iommu_platform): virtio_net then maps its buffers through the DMA API, which its
    AF_XDP zero-copy mode needs (without it a zero-copy bind is refused, EINVAL), as a
    real NIC's driver would; QEMU offers the feature on modern-only devices."""
    return ("--network", kind,
            "--qemu-opts=-global", "--qemu-opts=virtio-net-pci.disable-legacy=on",
            "--qemu-opts=-global", "--qemu-opts=virtio-net-pci.iommu_platform=on")


@dataclass(frozen=True)
class VMOptions:
    cpus: int = 2
    memory: str = "2G"
    #: QEMU -cpu MODEL[,features] (None: virtme-ng's: host under KVM, max under TCG)
    cpu_model: str | None = None
    #: seconds a boot may go without progress (console output, agent progress messages);
    #: a boot may take 3x this in all (TCG boots to a ready agent take 60-70 s here)
    boot_timeout: float = 300.0
    #: host watchdog margin on top of a case's own timeout before the guest counts as hung
    watchdog_grace: float = 60.0
    #: extra vng arguments (e.g. ["--network", "loop"]) for suites that need NICs
    extra_vng_args: tuple[str, ...] = ()
    #: a word in the names of this run's temporary folders (tests find their VMs by it)
    tag: str = "run"
    #: read the checkout, the Python environment and the BPF objects through a caching
    #: 9p mount (guestfs); False: virtme-ng's uncached root only (for comparisons)
    cached_fs: bool = True
    #: a shell port whose host end QEMU listens on at this path (kmatrix shell,
    #: --keep-failed; `kmatrix attach PATH`)
    shell_socket: Path | None = None
    #: the project whose cases run (pytest's rootdir: the guest works from there, with it
    #: on PYTHONPATH, so node ids, conftests and helpers are the project's); None: kmatrix's
    rootdir: Path | None = None
    #: its case folders (compiled on the host before the boot, like kmatrix's)
    case_dirs: tuple[Path, ...] = ()
    #: boot from a root image and keep a snapshot of the ready guest: the next boot of the
    #: same VM (a restart, the next run) restores it instead (harness.targets.qemu.snapshot).
    #: "on" (--snapshot: a kernel that cannot is an error), "off" (--no-snapshot: the 9p
    #: root), "auto": where the kernel can boot from the image (rootdisk.unfit) and the
    #: image can be made, else the 9p root, saying why
    snapshot: str = "auto"


class GuestVM(AgentSession):
    """A booted kernel with the agent waiting for cases."""

    def __init__(self, kernel: Kernel, accel: Accel, console_log: Path, nodeids: list[str],
                 options: VMOptions | None = None,
                 guest_env: Mapping[str, str] | None = None,
                 expect: Mapping[str, dict[str, Any]] | None = None,
                 known_probes: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.kernel = kernel
        #: probe results of an earlier boot of this kernel (the agent need not redo them)
        self.known_probes = dict(known_probes or {})
        #: this kernel's expectations (feature -> Expectation fields), sent to the agent
        self.expect = dict(expect or {})
        super().__init__()
        #: host-clock moments of the boot: "spawn", "banner" (kernel's first line), "hello"
        self.marks: dict[str, float] = {}
        #: extra environment of the agent (e.g. KMATRIX_BPF_OBJECTS)
        self.guest_env = dict(guest_env or {})
        #: the guest node ids this VM may be asked to run: collected once at boot
        self.nodeids = nodeids
        self.accel = accel
        self.console_log = console_log
        self.options = options or VMOptions()
        self.info: BootInfo | None = None
        #: --keep-failed: the agent holds a failed case's process before its teardown
        self.hold_on_failure = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._console_start = 0
        self.collect_errors: list[str] = []
        self._copier: threading.Thread | None = None
        self.alive = False
        #: whether this VM boots from the root image and is snapshotted (options.snapshot,
        #: decided for this kernel when it starts)
        self.snapshotted = False
        #: --snapshot: the root image, the stored snapshot, whether this boot restores it
        #: the images it boots on ("root", "modules"), perhaps not yet confirmed
        self._images: dict[str, rootdisk.Candidate] = {}
        self._stored: snapshot.Stored | None = None
        self.restored = False

    # -- lifetime (entered as a context manager: AgentSession) ---------------------------
    @property
    def rootdir(self) -> Path:
        return self.options.rootdir or PROJECT_ROOT

    def argv(self, sock_path: str) -> list[str]:
        python = sys.executable
        extra_dirs: list[Path] = [self.rootdir]
        pythonpath = ":".join(dict.fromkeys((str(self.rootdir), str(PROJECT_ROOT))))
        env = {"KMATRIX_GUEST": "1", "KMATRIX_CACHE": str(cache_root()),
               "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1",
               # the guest's pytest loads kmatrix's guest plugin and the cases' conftests,
               # not the host's entry-point plugins (the host plugin boots VMs)
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        qemu_opts = ["-chardev", f"socket,id=kmxctl,path={sock_path}",
                     "-device", "virtio-serial-pci,id=kmxbus",
                     "-device", f"virtserialport,bus=kmxbus.0,chardev=kmxctl,name={PORT_NAME}"]
        if self.options.shell_socket is not None:
            qemu_opts += ["-chardev", f"socket,id=kmxsh,path={self.options.shell_socket},"
                                      "server=on,wait=off",
                          "-device", "virtserialport,bus=kmxbus.0,chardev=kmxsh,"
                                     f"name={SHELL_PORT_NAME}"]
        if OBJECTS_ENV in self.guest_env:
            extra_dirs.append(Path(self.guest_env[OBJECTS_ENV]))
        if self.snapshotted:
            # the first stage, from the root image; the checkout and the run's environment
            # come after the save ("attach"): the line is that of every boot
            guest_cmd = ["env", *(f"{k}={v}" for k, v in env.items()),
                         python, "-m", "harness.guest.preload"]
            qemu_opts += guestfs.qemu_opts()
            command = guestfs.bootstrap([], guest_cmd, cached=False)
        else:
            # the boot's number goes with "collect", as for a snapshotted guest
            env.update({k: v for k, v in self.guest_env.items() if k != BOOT_ENV})
            guest_cmd = ["env", *(f"{k}={v}" for k, v in env.items()),
                         python, "-m", "harness.guest.agent"]
            command = shlex.join(guest_cmd)
            if self.options.cached_fs:
                qemu_opts += guestfs.qemu_opts()
                command = guestfs.bootstrap(guestfs.cached_dirs(extra_dirs), guest_cmd)
        argv = [which("vng"), "-v", *self.accel.vng_args, "-r", str(self.kernel.image),
                "--cpus", str(self.options.cpus), "--memory", self.options.memory,
                "--cwd", str(self.rootdir), "--append", f"loglevel={CONSOLE_LOGLEVEL}",
                *self.options.extra_vng_args]
        qemu_opts += cpu_model_opts(self.options.cpu_model)
        argv += [f"--qemu-opts={opt}" for opt in qemu_opts]
        # the line in a script: on the kernel command line it could overflow its 2 KB
        script = guestfs.boot_script(command, cache_root())
        if self.snapshotted:
            image = self._root_image_for(script)
            argv += ["--root-disk", str(image), "--root-dev", "/dev/vda",
                     "--root-fstype", "ext4", "--qemu", str(_wrapper_script())]
        argv += ["--exec", f"sh {shlex.quote(str(script))}"]
        return leash.argv(argv)

    def _bound_dirs(self) -> list[Path]:
        """What a snapshotted guest binds from the host's cached export after the save: the
        project, kmatrix's checkout and kmatrix's cache (the BPF objects, the benchmarks'
        requests: what a guest on the 9p root reads of the host besides the checkout), the
        object set if it is elsewhere. Nothing else of the host is seen there."""
        dirs = [self.rootdir, PROJECT_ROOT, cache_root()]
        if OBJECTS_ENV in self.guest_env:
            dirs.append(Path(self.guest_env[OBJECTS_ENV]))
        return guestfs.outermost(dirs)

    def _disk(self, kind: str, srcs: Callable[[], list[rootdisk.Source]]) -> Path:
        """The image of `kind` this VM boots on: the last run's while its content `srcs()`
        is walked (confirmed before the guest is told to collect: _confirm_image), or the
        one made or found now."""
        if kind not in self._images:
            self._images[kind] = rootdisk.image_for(srcs(), cache_root() / "rootdisk", kind)
        return self._images[kind].image

    def _root_image_for(self, script: Path) -> Path:
        """The root image of a snapshotted VM (built when its content changed)."""

        def srcs() -> list[rootdisk.Source]:
            # the environment kmatrix runs in (a venv, a .tox one: hashed file by file) and
            # the interpreter's installation (hashed by its folders, as the system's)
            python = guestfs.outermost(guestfs.python_dirs())
            venv = Path(sys.prefix).resolve()
            ours = [d for d in python
                    if sys.prefix != sys.base_prefix and d.is_relative_to(venv)]
            return rootdisk.sources(
                _guest_tools(), python=ours,
                system_python=[d for d in python if d not in ours],
                files=[script, *(PROJECT_ROOT / f for f in preload.IMAGE_FILES)],
                folders=self._bound_dirs())

        return self._disk("root", srcs)

    def _confirm_image(self) -> None:
        """Wait for the images' walks (started before the spawn); raise _StaleImage when the
        host's content is no longer an image's."""
        waiting = [c for c in self._images.values() if not c.confirmed]
        if not waiting:
            return
        stale = [c.image.name for c in waiting if not c.confirm()]
        self.marks["image_wait"] = max(c.waited for c in waiting)
        if stale:
            raise _StaleImage(f"{' and '.join(stale)} no longer hold{'s' * (len(stale) == 1)}"
                              " what the host has (its system, Python environment or the "
                              "kernel's modules)")

    def _snapshot_env(self, argv: list[str], sock_path: str) -> dict[str, str]:
        """The wrapper's environment; whether a stored snapshot is restored (self.restored)."""
        assert self._tmp is not None and "root" in self._images
        modules = rootdisk.kernel_modules(self.kernel.image, self.kernel.release)
        disk = (self._disk("modules", lambda: rootdisk.module_sources(modules))
                if modules is not None else None)
        stable = [a.replace(sock_path, "CTL") for a in argv]
        if self.options.shell_socket is not None:
            stable = [a.replace(str(self.options.shell_socket), "SHELL") for a in stable]
        self._stored = snapshot.stored(cache_root(), snapshot.key(
            # the image files themselves (name, size, mtime): an image pruned and built
            # again with the same content is another ext4 layout, which a guest saved
            # with the old one must not see (its cached directory blocks fail checksums)
            [snapshot.kernel_identity(self._images["root"].image),
             snapshot.kernel_identity(disk) if disk else "",
             snapshot.kernel_identity(self.kernel.image), *stable]))
        env = {wrapper.QEMU_ENV: which("qemu-system-x86_64"),
               wrapper.QMP_ENV: os.path.join(self._tmp.name, "qmp.sock"),
               wrapper.TOOLS_ENV: "/" + rootdisk.GUEST_TOOLS,
               wrapper.MODULES_ENV: str(disk) if disk is not None else ""}
        self.restored = self._stored.exists()
        if self.restored:
            env[wrapper.INCOMING_ENV] = str(self._stored.state)
        return env

    def _save_snapshot(self, hello: Message) -> None:
        """Save the guest whose first stage just said it is ready (it waits for "attach"
        meanwhile)."""
        assert self._tmp is not None and self._stored is not None
        report_stage(self.kernel.label, "saving a snapshot of the ready guest")
        t = self.marks["saving"] = time.monotonic()
        try:
            info = snapshot.save(os.path.join(self._tmp.name, "qmp.sock"), self._stored.state)
        except (snapshot.QmpError, OSError) as exc:
            log.warning("%s: no snapshot saved (the run goes on): %s", self.kernel.label, exc)
            return
        self._stored.write_meta(dict(hello), {"seconds": time.monotonic() - t,
                                              "bytes": info.get("ram", {}).get(
                                                  "transferred", 0)})
        self.marks["saved"] = time.monotonic()
        log.info("%s: snapshot saved in %.1fs", self.kernel.label, time.monotonic() - t)

    def _snapshot_wanted(self) -> bool:
        """Whether this VM is snapshotted (options.snapshot; "auto": where it can be)."""
        if self.options.snapshot != "auto":
            return self.options.snapshot == "on"
        modules = rootdisk.kernel_modules(self.kernel.image, self.kernel.release)
        why = rootdisk.unfit(self.kernel.config, modules is not None)
        if why is not None:
            log.info("%s: booting on the 9p root, not from a snapshot: %s",
                     self.kernel.label, why)
        return why is None

    def start(self) -> None:
        self.snapshotted = self._snapshot_wanted()
        try:
            self._start()
        except rootdisk.ImageError as exc:
            self._boot_on_9p(exc)
        except (_StaleImage, BootError) as exc:
            if isinstance(exc, _StaleImage) or self._stale_image():
                # the guest ran on the last run's image: the host's content changed since
                log.info("%s: %s; booting from a new one", self.kernel.label,
                         exc if isinstance(exc, _StaleImage) else
                         "the boot failed on the last run's root image, which is stale")
                self._again()
                try:
                    for cand in self._images.values():
                        if not cand.confirmed:
                            cand.rebuild()
                except rootdisk.ImageError as image_exc:
                    self._boot_on_9p(image_exc)
                    return
                self._start()
                return
            if not self.restored or self._stored is None:
                raise
            # a snapshot that does not restore (QEMU's state format, a changed device):
            # forget it and boot afresh
            log.warning("%s: the snapshot did not restore (%s); booting afresh",
                        self.kernel.label, exc)
            self._stored.drop()
            self._again()
            self._start()

    def _again(self) -> None:
        """Before booting again: the failed VM ended, its marks forgotten."""
        self.close(graceful=False)
        self.marks.clear()

    def _boot_on_9p(self, exc: rootdisk.ImageError) -> None:
        """The root image could not be made: the 9p root (an error with --snapshot)."""
        if self.options.snapshot == "on":
            raise exc
        log.warning("%s: %s; booting on the 9p root (--no-snapshot: always)",
                    self.kernel.label, exc)
        self.snapshotted = False
        self._images.clear()  # none is booted on: no walk of theirs to wait for, or to fail
        self._again()
        self._start()

    def _stale_image(self) -> bool:
        """Whether a boot that failed ran on a root image that is not the host's content
        (a guest whose interpreter's files changed can fail in any way)."""
        try:
            self._confirm_image()
        except _StaleImage:
            return True
        return False

    def _start(self) -> None:
        # nothing the guest imports is compiled in the guest (TCG is slow)
        precompile()
        if self.rootdir != PROJECT_ROOT:
            precompile(self.rootdir, [str(d.relative_to(self.rootdir))
                                      for d in self.options.case_dirs
                                      if d.is_relative_to(self.rootdir)])
        self._tmp = tempfile.TemporaryDirectory(prefix=f"kmatrix-vm-{self.options.tag}-")
        sock_path = os.path.join(self._tmp.name, "ctl.sock")
        argv = self.argv(sock_path)  # first: the root image may not be made
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock_path)
        listener.listen(1)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        self.restored = False
        if self.snapshotted:
            env.update(self._snapshot_env(argv, sock_path))
        with open(self.console_log, "ab") as con:
            self._console_start = con.tell()
            what = (f"restore {self.kernel.label} from {self._stored.state}"
                    if self.restored and self._stored is not None else
                    f"boot {self.kernel.label}")
            con.write(f"\n=== kmatrix: {what} ({self.accel.name}): "
                      f"{format_argv(argv)}\n".encode())
        log.info("booting %s: %s", self.kernel.label, format_argv(argv))
        report_stage(self.kernel.label, "restoring the ready guest" if self.restored
                     else "booting: kernel")
        t0 = self.marks["spawn"] = time.monotonic()
        # QEMU opens its console as /proc/self/fd/2 with O_TRUNC: hand it a pipe and append
        # to the log ourselves, so restarts and earlier boots are never truncated away
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        self._copier = threading.Thread(target=_copy_stream,
                                        args=(self._proc.stdout, self.console_log,
                                              self.marks),
                                        name=f"console-{self.kernel.label}", daemon=True)
        self._copier.start()
        clock = BootClock(self.options.boot_timeout)
        try:
            listener.settimeout(1.0)
            while self._conn is None:
                self._check_boot(clock)
                try:
                    self._conn, _ = listener.accept()
                except TimeoutError:
                    continue
            if self.snapshotted:
                self._attach(clock)
            hello = self._recv_boot(clock)
            if hello.get("op") != "hello":
                raise BootError(f"{self.kernel.label}: unexpected first message {hello!r}")
            t_hello = self.marks["hello"] = time.monotonic()
            self._confirm_image()  # before anything the guest does counts
            # the host's clock and fresh randomness: a restored guest's are the saved one's
            self._conn.sendall(encode({"op": "collect", "nodeids": self.nodeids,
                                       "now": time.time(), "seed": os.urandom(32).hex(),
                                       "env": {k: v for k, v in self.guest_env.items()
                                               if k == BOOT_ENV},
                                       "expect": self.expect,
                                       "probes": self.known_probes}))
            collected = self._recv_boot(clock)
        finally:
            listener.close()
        if collected.get("op") != "collected":
            raise BootError(f"{self.kernel.label}: unexpected message {collected!r}")
        self.info = boot_info(hello, self.known_probes, t0, t_hello)
        self.collect_errors = [str(e) for e in collected.get("errors", [])]
        self.alive = True
        report_stage(self.kernel.label, "running")
        log.info("%s ready in %.1fs (%s)", self.kernel.label, self.info.boot_s,
                 self.info.release)

    def _attach(self, clock: BootClock) -> None:
        """A snapshotted guest: its first stage said "preloaded" (before the save, when
        restored), the guest is saved on a first boot, and it is told what to mount and
        how to run (harness.guest.preload)."""
        assert self._conn is not None
        if self.restored and self._stored is not None:
            ready = self._stored.hello()  # said before the save; the guest now waits
        else:
            ready = self._recv_boot(clock)
        if ready.get("op") != "preloaded":
            raise BootError(f"{self.kernel.label}: unexpected first message {ready!r}")
        if not self.restored:
            self._confirm_image()  # no snapshot of a stale image
            self._save_snapshot(ready)
        self.marks["attach"] = time.monotonic()
        bound = self._bound_dirs()
        self._conn.sendall(encode({
            "op": "attach", "mount": guestfs.mount_spec(bound, [
                # a venv or .tox in the checkout: the image holds it (the same files, by
                # its key), and ext4 reads faster than 9p (0.3 s of the session's start
                # and collection under TCG)
                d for d in guestfs.outermost(guestfs.python_dirs())
                if any(d != b and d.is_relative_to(b) for b in bound)]),
            "cwd": str(self.rootdir),
            "env": {k: v for k, v in self.guest_env.items() if k != BOOT_ENV}}))

    def _recv_boot(self, clock: BootClock) -> Message:
        """The next message of the boot handshake; the agent's progress messages and new
        console output keep the boot alive, silence beyond the stall window ends it."""
        while True:
            self._check_boot(clock)
            try:
                msg = self._recv(time.monotonic() + 1.0)
            except TimeoutError:
                clock.console(self.console_size())
                continue
            except EOFError:
                self._check_boot(clock, gone=True)
                raise
            if msg.get("op") == "progress":
                clock.progress(str(msg.get("stage", "")))
                report_stage(self.kernel.label, f"booting: {msg.get('stage', '')}")
                continue
            if msg.get("op") == "fatal":
                raise BootError(f"{self.kernel.label}: the guest agent failed before it was "
                                f"ready ({clock.where()}):\n{msg.get('error', '')}",
                                self.console_tail(),
                                hint="an import error, a broken probe module or a bad case "
                                     f"path; see the console log {self.console_log}")
            return msg

    def _check_boot(self, clock: BootClock, gone: bool = False) -> None:
        assert self._proc is not None
        if gone or self._proc.poll() is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if self._copier is not None:
                self._copier.join(timeout=5)
            root = kernel_log.root_mount_failure(self.console_since(self._console_start))
            if root:
                raise BootError(
                    f"{self.kernel.label}: the kernel could not mount the guest's root "
                    f"filesystem over 9p ({root})", self.console_tail(),
                    hint="the kernel needs CONFIG_9P_FS, CONFIG_NET_9P and "
                         "CONFIG_NET_9P_VIRTIO (Debian's cloud-amd64 flavour has none; use "
                         "the amd64 flavour or kconfigs/base.config)")
            raise BootError(
                f"{self.kernel.label}: the VM exited ({self._proc.returncode}) before the "
                f"guest agent was ready ({clock.where()})", self.console_tail(),
                hint=f"see the console log {self.console_log}")
        clock.console(self.console_size())
        why = clock.expired()
        if why:
            raise BootError(f"{self.kernel.label}: {why} ({clock.where()})",
                            self.console_tail(), hint=f"see the console log {self.console_log}"
                            " ; a slow host may need a larger --boot-timeout or fewer "
                            "parallel VMs (-n)")

    def open_shell(self, *, rows: int = 40, cols: int = 120, banner: str = "",
                   keep: str = "") -> None:
        """Have the agent serve an interactive shell on the shell port (instead of cases):
        `kmatrix attach` connects to `options.shell_socket`. `keep`: the node id of a
        failed case whose process and namespaces the agent keeps as they were."""
        if self._conn is None or self.options.shell_socket is None:
            raise VMLostError(f"{self.kernel.label}: no shell port on this VM")
        self._conn.sendall(encode({"op": "shell", "label": self.kernel.label, "rows": rows,
                                   "cols": cols, "banner": banner, "keep": keep}))
        deadline = time.monotonic() + 60
        while True:
            msg = self._recv(deadline)
            if msg.get("op") == "shell":
                return
            self._note(msg)

    def release(self) -> int:
        """Let the VM outlive this process (--keep-failed): the leash stops watching us;
        the VM ends when its shell does. The leash's pid."""
        proc, self._proc = self._proc, None
        if proc is None:
            raise VMLostError(f"{self.kernel.label}: VM is not running")
        proc.send_signal(leash.RELEASE_SIGNAL)
        self.alive = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._tmp = None  # its control socket folder is the released VM's now
        return proc.pid

    def close(self, *, graceful: bool = True) -> None:
        """Stop the VM; always reap and clean up. `graceful`: ask the agent to shut the
        guest down first (up to SHUTDOWN_WAIT seconds); otherwise (an interrupt, an error)
        end it at once: the leash kills vng, virtme-run and QEMU."""
        proc, self._proc = self._proc, None
        if graceful and self._conn is not None and self.alive and proc is not None:
            try:
                self._conn.sendall(encode({"op": "shutdown"}))
                self._drain_until_bye(time.monotonic() + SHUTDOWN_WAIT / 2)
                proc.wait(timeout=SHUTDOWN_WAIT)
            except (OSError, EOFError, subprocess.TimeoutExpired):
                pass
        self.alive = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is not None:
            stop_leashed(proc)
        if self._copier is not None:
            self._copier.join(timeout=10)
            self._copier = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- channel ---------------------------------------------------------------------------
    def _read(self, timeout: float) -> bytes | None:
        assert self._conn is not None
        self._conn.settimeout(timeout)
        try:
            return self._conn.recv(65536)
        except TimeoutError:  # QEMU gone: the channel has ended
            return b"" if self._proc is not None and self._proc.poll() is not None else None

    def run_case(self, nodeid: str, timeout: float, *, evidence: bool = True) -> Message:
        """Run one guest node id; the agent's verdict, or VMLostError with the evidence.
        `evidence` False: without the stack's counters and drops (kmatrix bench compares)."""
        if not self.alive or self._conn is None:
            raise VMLostError(f"{self.kernel.label}: VM is not running")
        self._next_id += 1
        req_id = self._next_id
        mark = self.console_size()
        self._nodeid_of[req_id] = nodeid
        try:
            self._conn.sendall(encode({"op": "run", "id": req_id, "nodeid": nodeid,
                                       "timeout": timeout, "evidence": evidence,
                                       "hold_on_failure": self.hold_on_failure}))
            return self._await_verdict(
                req_id, time.monotonic() + timeout + self.options.watchdog_grace)
        except TimeoutError as exc:  # before OSError: TimeoutError is an OSError
            self._lost(f"the guest stopped answering: no verdict for {nodeid} within "
                       f"{timeout + self.options.watchdog_grace:.0f}s (host watchdog)",
                       mark, exc)
        except (EOFError, OSError) as exc:
            self._lost(f"the guest died while running {nodeid}", mark, exc)
        raise AssertionError("unreachable")

    def _lost(self, what: str, mark: int, exc: BaseException) -> None:
        self.alive = False
        # give QEMU a moment to flush the console (panic text) before we look and kill
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._copier is not None and self._proc is not None and self._proc.poll() is not None:
            self._copier.join(timeout=5)  # QEMU is gone: the console is complete
        text = self.console_since(mark)
        panic = kernel_log.panic_report(text)
        tail = self.console_tail()
        self.close(graceful=False)
        raise VMLostError(f"{self.kernel.label}: {what}", tail, panic) from exc

    # -- console -------------------------------------------------------------------------
class _StaleImage(Exception):
    """The VM booted on a root image whose content is no longer the host's."""


def stop_leashed(proc: subprocess.Popen[bytes]) -> None:
    """End a process started on a leash: SIGTERM makes the leash kill vng, virtme-run and
    QEMU; if it does not exit in time, SIGKILL it and every descendant it left."""
    if proc.poll() is None:
        left = leash.descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=LEASH_WAIT)
        except subprocess.TimeoutExpired:
            for pid in [proc.pid, *left, *leash.descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    proc.wait()


#: the kernel's first console line starts with it
BANNER = b"Linux version"


def cpu_model_opts(model: str | None) -> list[str]:
    """QEMU's options for CPU `model` (none: virtme-ng's own -cpu stays); given to vng as
    --qemu-opts, they come after virtme-ng's -cpu, and QEMU takes the last one."""
    return ["-cpu", model] if model else []


def _guest_tools() -> Path:
    """virtme-ng's guest tools (its init), which a snapshotted VM's root image holds."""
    spec = importlib.util.find_spec("virtme")
    if spec is None or spec.origin is None:
        raise BootError("virtme-ng's guest tools were not found (is virtme-ng installed in "
                        "this environment?)")
    return Path(spec.origin).parent / "guest"


def _wrapper_script() -> Path:
    """An executable that runs harness.targets.qemu.wrapper with this Python (`vng --qemu`
    takes a path), named by its content."""
    text = (f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -S "
            f"{shlex.quote(wrapper.__file__)} \"$@\"\n")
    return guestfs.cached_script(text, cache_root(), prefix="qemu-", mode=0o755)


def _copy_stream(stream: IO[bytes] | None, path: Path, marks: dict[str, float]) -> None:
    """Append everything QEMU/vng print (kernel console, guest stderr) to the console log;
    note when the kernel's banner went by (marks["banner"], host clock)."""
    if stream is None:
        return
    with open(path, "ab", buffering=0) as out:
        tail = b""  # the banner may straddle two reads
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            if "banner" not in marks and BANNER in tail + chunk:
                marks["banner"] = time.monotonic()
            tail = chunk[-len(BANNER):]
            out.write(chunk)
