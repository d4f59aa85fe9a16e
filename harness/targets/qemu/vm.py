"""One virtme-ng VM running the guest agent: boot, run cases, detect death, always reap.

Lifetime is a context manager. QEMU's serial console (kernel log) and the guest's stderr go
to the run's console log, which is kept whatever happens; the control channel is a
virtio-serial port wired to a unix socket we listen on before QEMU starts.
"""

from __future__ import annotations

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ... import kernel_log
from ...acquire.kernel import Kernel
from ...command import format_argv, which
from ...errors import BootError, VMLostError
from ...paths import PROJECT_ROOT, cache_root
from ...protocol import PORT_NAME, LineBuffer, Message, encode
from .accel import Accel
from .boot_clock import BootClock

log = logging.getLogger("kmatrix.vm")

#: the kernel log level on the console: 5 shows WARN (4) and everything worse
CONSOLE_LOGLEVEL = 5
_CONSOLE_TAIL_LINES = 60


@dataclass(frozen=True)
class VMOptions:
    cpus: int = 2
    memory: str = "2G"
    #: seconds a boot may go without progress (console output, agent progress messages);
    #: a boot may take 3x this in all (TCG boots to a ready agent take 60-70 s here)
    boot_timeout: float = 300.0
    #: host watchdog margin on top of a case's own timeout before the guest counts as hung
    watchdog_grace: float = 60.0
    #: extra vng arguments (e.g. ["--network", "loop"]) for suites that need NICs
    extra_vng_args: tuple[str, ...] = ()


@dataclass
class BootInfo:
    release: str
    probes: dict[str, dict[str, Any]]
    #: seconds from starting vng to the agent's ready message (host clock)
    boot_s: float
    #: guest uptime at ready, import and probe times (guest clock)
    guest: dict[str, float] = field(default_factory=dict)


class GuestVM:
    """A booted kernel with the agent waiting for cases."""

    def __init__(self, kernel: Kernel, accel: Accel, console_log: Path, nodeids: list[str],
                 options: VMOptions | None = None,
                 guest_env: Mapping[str, str] | None = None) -> None:
        self.kernel = kernel
        #: extra environment of the agent (e.g. KMATRIX_BPF_OBJECTS)
        self.guest_env = dict(guest_env or {})
        #: the guest node ids this VM may be asked to run: collected once at boot
        self.nodeids = nodeids
        self.accel = accel
        self.console_log = console_log
        self.options = options or VMOptions()
        self.info: BootInfo | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._buf = LineBuffer()
        self._pending: list[Message] = []
        self._next_id = 0
        self._console_start = 0
        self.collect_errors: list[str] = []
        self._copier: threading.Thread | None = None
        self.alive = False

    # -- lifetime -------------------------------------------------------------------------
    def __enter__(self) -> GuestVM:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def argv(self, sock_path: str) -> list[str]:
        python = sys.executable
        env = {"KMATRIX_GUEST": "1", "KMATRIX_CACHE": str(cache_root()),
               "PYTHONPATH": str(PROJECT_ROOT), "PYTHONDONTWRITEBYTECODE": "1",
               # the guest's pytest loads kmatrix's guest plugin and the cases' conftests,
               # not the host's entry-point plugins (the host plugin boots VMs)
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **self.guest_env}
        guest_cmd = ["env", *(f"{k}={v}" for k, v in env.items()),
                     python, "-m", "harness.guest.agent"]
        qemu_opts = ["-chardev", f"socket,id=kmxctl,path={sock_path}",
                     "-device", "virtio-serial-pci,id=kmxbus",
                     "-device", f"virtserialport,bus=kmxbus.0,chardev=kmxctl,name={PORT_NAME}"]
        argv = [which("vng"), "-v", *self.accel.vng_args, "-r", str(self.kernel.image),
                "--cpus", str(self.options.cpus), "--memory", self.options.memory,
                "--cwd", str(PROJECT_ROOT), "--append", f"loglevel={CONSOLE_LOGLEVEL}",
                *self.options.extra_vng_args]
        argv += [f"--qemu-opts={opt}" for opt in qemu_opts]
        argv += ["--exec", shlex.join(guest_cmd)]
        return argv

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="kmatrix-vm-")
        sock_path = os.path.join(self._tmp.name, "ctl.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock_path)
        listener.listen(1)
        argv = self.argv(sock_path)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        with open(self.console_log, "ab") as con:
            self._console_start = con.tell()
            con.write(f"\n=== kmatrix: boot {self.kernel.label} ({self.accel.name}): "
                      f"{format_argv(argv)}\n".encode())
        log.info("booting %s: %s", self.kernel.label, format_argv(argv))
        t0 = time.monotonic()
        # QEMU opens its console as /proc/self/fd/2 with O_TRUNC: hand it a pipe and append
        # to the log ourselves, so restarts and earlier boots are never truncated away
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        self._copier = threading.Thread(target=_copy_stream,
                                        args=(self._proc.stdout, self.console_log),
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
            hello = self._recv_boot(clock)
            if hello.get("op") != "hello":
                raise BootError(f"{self.kernel.label}: unexpected first message {hello!r}")
            t_hello = time.monotonic()
            self._conn.sendall(encode({"op": "collect", "nodeids": self.nodeids}))
            collected = self._recv_boot(clock)
        finally:
            listener.close()
        if collected.get("op") != "collected":
            raise BootError(f"{self.kernel.label}: unexpected message {collected!r}")
        self.info = BootInfo(
            release=str(hello["release"]), probes=dict(hello["probes"]),
            boot_s=time.monotonic() - t0,
            guest={**{k: float(hello[k]) for k in ("uptime", "import_s", "probe_s")},
                   "collect_s": time.monotonic() - t_hello})
        self.collect_errors = [str(e) for e in collected.get("errors", [])]
        self.alive = True
        log.info("%s ready in %.1fs (%s)", self.kernel.label, self.info.boot_s,
                 self.info.release)

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
                continue
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

    def close(self) -> None:
        """Ask the agent to shut down; kill whatever is left; always reap and clean up."""
        proc, self._proc = self._proc, None
        if self._conn is not None and self.alive and proc is not None:
            try:
                self._conn.sendall(encode({"op": "shutdown"}))
                proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.alive = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
        if self._copier is not None:
            self._copier.join(timeout=10)
            self._copier = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- channel ---------------------------------------------------------------------------
    def _recv(self, deadline: float) -> Message:
        assert self._conn is not None
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._conn.settimeout(min(left, 1.0))
            try:
                data = self._conn.recv(65536)
            except TimeoutError:
                if self._proc is not None and self._proc.poll() is not None:
                    data = b""
                else:
                    continue
            if not data:
                raise EOFError
            self._pending.extend(self._buf.feed(data))
        return self._pending.pop(0)

    def run_case(self, nodeid: str, timeout: float) -> Message:
        """Run one guest node id; the agent's verdict, or VMLostError with the evidence."""
        if not self.alive or self._conn is None:
            raise VMLostError(f"{self.kernel.label}: VM is not running")
        self._next_id += 1
        req_id = self._next_id
        mark = self.console_size()
        try:
            self._conn.sendall(encode({"op": "run", "id": req_id, "nodeid": nodeid,
                                       "timeout": timeout}))
            deadline = time.monotonic() + timeout + self.options.watchdog_grace
            while True:
                msg = self._recv(deadline)
                if msg.get("op") == "result" and msg.get("id") == req_id:
                    return msg
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
        self.close()
        raise VMLostError(f"{self.kernel.label}: {what}", tail, panic) from exc

    # -- console -------------------------------------------------------------------------
    def console_size(self) -> int:
        try:
            return self.console_log.stat().st_size
        except OSError:
            return 0

    def console_since(self, offset: int) -> str:
        with open(self.console_log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def console_tail(self, lines: int = _CONSOLE_TAIL_LINES) -> str:
        text = self.console_since(self._console_start)
        return "\n".join(text.splitlines()[-lines:])


def _copy_stream(stream: IO[bytes] | None, path: Path) -> None:
    """Append everything QEMU/vng print (kernel console, guest stderr) to the console log."""
    if stream is None:
        return
    with open(path, "ab", buffering=0) as out:
        for chunk in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            out.write(chunk)
