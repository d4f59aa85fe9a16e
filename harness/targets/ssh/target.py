"""`SshTarget`: the guest agent on a machine reached over SSH, behind the same interface as
a booted VM (harness.targets.base.Target).

start(): connect (harness.targets.ssh.connect), sync what the agent needs into the
per-user cache folder (payload, sync), run `python -m harness.guest.agent` there over an
SSH channel with KMATRIX_CHANNEL=stdio: the protocol's JSON lines go over the channel's
stdin/stdout, the agent's stderr to this target's console log. The agent holds a lock in
the cache folder while it runs, so two agents never share a machine (their isolation
checks would see each other's objects): a second one waits, saying so.

A target that stops answering (the channel's EOF, a dead connection, the host watchdog)
fails its running case with what its console showed and is lost: it cannot be rebooted
from here, so the pool errors its remaining cases at once (TargetLostError).

What stays on the target: the cache folder (the synced files, the bytecode its Python
wrote next to them, `tmp/` with the agent's minimal BTF, the lock file). The agent is told
to shut down on close; when the connection dropped instead, the agent sees EOF on its
stdin and exits after the case it is running (its own timeout bounds it), cleaning that
case's objects as after any case.
"""

from __future__ import annotations

import logging
import posixpath
import shlex
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paramiko
from paramiko.agent import AgentRequestHandler

from ...bpf.compile import OBJECTS_ENV
from ...errors import BootError, KmatrixError, VMLostError
from ...guest.channel import CHANNEL_ENV
from ...paths import PROJECT_ROOT
from ...protocol import Message, encode
from ..base import TargetLostError
from ..session import AgentSession, BootInfo, boot_info
from .connect import HostParams, connect
from .facts import run_command
from .options import SshOptions
from .payload import CHECKOUT, MANAGED, OBJECTS, SITE, payload
from .spec import TargetKernel
from .sync import SyncStats, makedirs, sync

log = logging.getLogger("kmatrix.ssh")

#: the agent's progress stage while another agent holds the target
LOCK_STAGE = "waiting for the target lock"
#: the PATH of the agent (cases run ip, tc, bpftool; a user's login PATH may lack sbin)
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: seconds a graceful shutdown may take (the agent's last probes, then "bye")
SHUTDOWN_WAIT = 60.0

# $1 a session id: SIGKILL every process of it (fields after the command's name: state,
# ppid, pgrp, session)
_KILL_SESSION = r"""
for stat in /proc/[0-9]*/stat; do
    fields=$(sed 's/.*) //' "$stat" 2>/dev/null) || continue
    set -- $fields
    if [ "$4" = "$0" ]; then pid=${stat#/proc/}; kill -KILL "${pid%/stat}" 2>/dev/null; fi
done
exit 0
"""

# $1 the lock file, $2 the checkout, then the agent's command. fd 9 holds the lock for as
# long as the agent (exec keeps it) and its case processes run. "launched" names the
# session (sshd made the command a session of its own; the cases' process groups are in
# it): what a lost target's agent and cases are killed by.
_LAUNCH = r"""
exec 9>>"$1" || exit 1
cd "$2" || exit 1
shift 2
printf '{"op":"launched","sid":%s}\n' "$(cut -d' ' -f6 /proc/$$/stat)"
if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
    printf '{"op":"progress","stage":"%s"}\n' "$KMATRIX_LOCK_STAGE"
    flock 9
fi
exec "$@"
"""


class SshTarget(AgentSession):
    """A machine reached over SSH with the agent waiting for cases."""

    def __init__(self, kernel: TargetKernel, console_log: Path, nodeids: list[str],
                 options: SshOptions, guest_env: Mapping[str, str] | None = None,
                 expect: Mapping[str, dict[str, Any]] | None = None,
                 known_probes: Mapping[str, dict[str, Any]] | None = None,
                 objects: Path | None = None) -> None:
        assert kernel.target is not None
        self.kernel = kernel
        self.spec = kernel.target
        self.console_log = console_log
        self.nodeids = nodeids
        self.options = options
        self.guest_env = dict(guest_env or {})
        self.expect = dict(expect or {})
        self.known_probes = dict(known_probes or {})
        #: the BPF objects compiled here (synced to the target)
        self.objects = objects
        self.info: BootInfo | None = None
        self.collect_errors: list[str] = []
        self.alive = False
        #: why the target was lost (None: it was not)
        self.lost: str | None = None
        super().__init__()
        #: what the last sync did
        self.sync_stats: SyncStats | None = None
        #: the cache folder on the target (absolute, known after the sync)
        self.root = ""
        self._client: paramiko.SSHClient | None = None
        self._params: HostParams | None = None
        self._chan: paramiko.Channel | None = None
        self._copier: threading.Thread | None = None
        self._console_start = 0
        #: the agent's session on the target ("launched")
        self._sid: int | None = None

    @property
    def label(self) -> str:
        return self.kernel.label

    # -- lifetime (entered as a context manager: AgentSession) ---------------------------
    def start(self) -> None:
        """Connect, sync, start the agent and hand it the cases; BootError if any step
        fails (the caller closes)."""
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        self._console_start = self.console_size()
        self._console_write(f"\n=== kmatrix: connect {self.label} ({self.spec}) ===\n")
        t0 = time.monotonic()
        try:
            self._client, self._params = connect(self.spec, self.options)
        except KmatrixError as exc:
            raise BootError(f"{self.label}: {exc}", hint=exc.hint) from exc
        t_connect = time.monotonic()
        try:
            try:
                self.sync_stats = self._sync()
            except KmatrixError as exc:  # what to sync cannot go there (see payload)
                raise BootError(f"{self.label}: {exc}", hint=exc.hint) from exc
            self._console_write(f"=== kmatrix: synced {self.root}: {self.sync_stats} ===\n")
            t_sync = time.monotonic()
            self._launch()
            hello = self._handshake_message()
            if hello.get("op") != "hello":
                raise BootError(f"{self.label}: unexpected first message {hello!r}",
                                self.console_tail())
            if hello.get("release") != self.kernel.release:
                raise BootError(
                    f"{self.label}: the target now runs {hello.get('release')}, not "
                    f"{self.kernel.release} (rebooted since the run started?)",
                    hint="start the run again: the column is labelled by the kernel")
            t_hello = time.monotonic()
            assert self._chan is not None
            self._chan.sendall(encode({"op": "collect", "nodeids": self.nodeids,
                                       "expect": self.expect,
                                       "probes": self.known_probes}))
            collected = self._handshake_message()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise BootError(f"{self.label}: syncing or starting the agent over SSH failed"
                            f" ({self.root or 'cache folder unknown'}): "
                            f"{exc or type(exc).__name__}", self.console_tail(),
                            hint=f"see the console log {self.console_log}") from exc
        if collected.get("op") != "collected":
            raise BootError(f"{self.label}: unexpected message {collected!r}",
                            self.console_tail())
        self.info = boot_info(hello, self.known_probes, t0, t_hello,
                              connect_s=t_connect - t0, sync_s=t_sync - t_connect,
                              synced_files=float(len(self.sync_stats.sent)))
        self.collect_errors = [str(e) for e in collected.get("errors", [])]
        self.alive = True
        log.info("%s ready in %.1fs (%s; %s)", self.label, self.info.boot_s,
                 self.info.release, self.sync_stats)

    def _sync(self) -> SyncStats:
        assert self._client is not None
        with self._client.open_sftp() as sftp:
            cache = self.options.cache_dir.removeprefix("~/")
            self.root = cache if cache.startswith("/") else posixpath.join(
                sftp.normalize("."), cache)
            files = payload(PROJECT_ROOT, self.options.case_dirs, self.objects,
                            with_env=self.options.python is None)
            stats = sync(sftp, self.root, files, MANAGED)
            makedirs(sftp, posixpath.join(self.root, "tmp"))
        return stats

    def agent_env(self) -> dict[str, str]:
        """The agent's environment on the target."""
        path = [posixpath.join(self.root, CHECKOUT)]
        if self.options.python is None:
            path.append(posixpath.join(self.root, SITE))
        # (bytecode is written: into the cache folder, and it makes the next start faster)
        env = {**self.guest_env,
               "KMATRIX_GUEST": "1", "KMATRIX_CACHE": self.root, CHANNEL_ENV: "stdio",
               "PYTHONPATH": ":".join(path),
               # the guest's pytest loads kmatrix's guest plugin and the cases' conftests
               # only, as in the VM
               "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
               # what the agent writes (its minimal BTF) stays in the cache folder
               "TMPDIR": posixpath.join(self.root, "tmp"),
               "PATH": AGENT_PATH, "KMATRIX_LOCK_STAGE": LOCK_STAGE}
        env.pop(OBJECTS_ENV, None)  # a host path: the target has its own copy
        if self.objects is not None:
            env[OBJECTS_ENV] = posixpath.join(self.root, OBJECTS, self.objects.name)
        return env

    def agent_command(self) -> str:
        """The command line run on the target (for its login shell)."""
        env = [f"{k}={v}" for k, v in self.agent_env().items()]
        sudo = ["sudo", "-n"] if self.kernel.sudo else []
        python = self.kernel.python or self.options.python or "python3"  # as resolved
        return shlex.join([*sudo, "env", *env, "sh", "-c", _LAUNCH, "kmatrix-agent",
                           posixpath.join(self.root, "agent.lock"),
                           posixpath.join(self.root, CHECKOUT),
                           python, "-m", "harness.guest.agent"])

    def _launch(self) -> None:
        assert self._client is not None and self._params is not None
        transport = self._client.get_transport()
        assert transport is not None
        chan = transport.open_session()
        if self._params.forward_agent:
            AgentRequestHandler(chan)
        command = self.agent_command()
        self._console_write(f"=== kmatrix: agent: {command}\n")
        chan.exec_command(command)
        self._chan = chan
        self._copier = threading.Thread(target=_copy_stderr, args=(chan, self.console_log),
                                        name=f"console-{self.label}", daemon=True)
        self._copier.start()

    def _handshake_message(self) -> Message:
        """The next message before the agent is ready: its progress keeps the start alive,
        silence beyond the boot timeout ends it (not while it waits for the lock)."""
        stage, since = "starting", time.monotonic()
        while True:
            try:
                msg = self._recv(time.monotonic() + 1.0)
            except TimeoutError:
                if stage != LOCK_STAGE and time.monotonic() - since > self.options.boot_timeout:
                    self._kill_agent()
                    raise BootError(
                        f"{self.label}: the agent said nothing for "
                        f"{self.options.boot_timeout:.0f}s (last: {stage})",
                        self.console_tail(),
                        hint=f"see the console log {self.console_log}") from None
                continue
            except EOFError:
                raise BootError(f"{self.label}: the agent ended before it was ready "
                                f"({self._ending()}; last: {stage})", self.console_tail(),
                                hint=f"see the console log {self.console_log}") from None
            if msg.get("op") == "launched":
                self._sid = int(msg.get("sid", 0)) or None
                continue
            if msg.get("op") == "progress":
                stage, since = str(msg.get("stage", "")), time.monotonic()
                if stage == LOCK_STAGE:
                    log.warning("%s: another kmatrix agent holds the target; waiting",
                                self.label)
                continue
            if msg.get("op") == "fatal":
                raise BootError(f"{self.label}: the agent failed before it was ready "
                                f"({stage}):\n{msg.get('error', '')}", self.console_tail(),
                                hint="an import error, a missing tool on the target or a "
                                     f"bad case path; see the console log {self.console_log}")
            return msg

    def _ending(self) -> str:
        """How the agent's channel ended, in words."""
        chan = self._chan
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            return "the SSH connection dropped"
        if chan is not None:
            deadline = time.monotonic() + 5
            while not chan.exit_status_ready() and time.monotonic() < deadline:
                time.sleep(0.05)
            if chan.exit_status_ready():
                return f"the agent exited with status {chan.recv_exit_status()}"
        return "the agent's channel closed"

    def close(self, *, graceful: bool = True) -> None:
        """Tell the agent to shut down (graceful: and wait for its last probes and "bye"),
        then close the channel and the connection; always cleans up here."""
        chan = self._chan
        if chan is not None:
            if self.alive:
                try:
                    chan.sendall(encode({"op": "shutdown"}))
                    if graceful:
                        self._drain_until_bye(time.monotonic() + SHUTDOWN_WAIT)
                except (OSError, EOFError, paramiko.SSHException):
                    pass
            chan.close()
        self._chan = None
        self.alive = False
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._copier is not None:
            self._copier.join(timeout=5)
            self._copier = None

    def _read(self, timeout: float) -> bytes | None:
        chan = self._chan
        if chan is None:
            return b""
        chan.settimeout(timeout)
        try:
            data: bytes = chan.recv(65536)
        except TimeoutError:
            return None
        return data

    def run_case(self, nodeid: str, timeout: float, *, evidence: bool = True) -> Message:
        """Run one guest node id; the agent's verdict, or TargetLostError with what the
        console showed (the target is then lost for the rest of the run)."""
        if not self.alive or self._chan is None:
            raise VMLostError(f"{self.label}: the target is not connected")
        self._next_id += 1
        req_id = self._next_id
        mark = self.console_size()
        self._nodeid_of[req_id] = nodeid
        grace = self.options.watchdog_grace
        try:
            self._chan.sendall(encode({"op": "run", "id": req_id, "nodeid": nodeid,
                                       "timeout": timeout, "evidence": evidence}))
            return self._await_verdict(req_id, time.monotonic() + timeout + grace)
        except TimeoutError as exc:  # before OSError: TimeoutError is an OSError
            self._lost(f"the target stopped answering: no verdict for {nodeid} within "
                       f"{timeout + grace:.0f}s (host watchdog)", mark, exc)
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self._lost(f"{self._ending()} while {nodeid} ran", mark, exc)
        raise AssertionError("unreachable")

    def _kill_agent(self) -> None:
        """Kill the agent's session (a hung agent and its cases, the orphans of one that
        died): best effort, while the connection lives; it frees the target's lock. (What
        a case killed this way made is not cleaned up after it.)"""
        transport = self._client.get_transport() if self._client is not None else None
        if self._sid is None or transport is None or not transport.is_active():
            return
        assert self._client is not None
        sudo = ["sudo", "-n"] if self.kernel.sudo else []
        try:
            status, _, err = run_command(
                self._client, [*sudo, "sh", "-c", _KILL_SESSION, str(self._sid)], timeout=15)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            status, err = -1, str(exc)
        self._console_write(f"=== kmatrix: killed the agent's session {self._sid}"
                            f"{'' if status == 0 else f' (failed: {err.strip()})'} ===\n")

    def _lost(self, what: str, mark: int, exc: BaseException) -> None:
        self.alive = False
        self.lost = what
        self._kill_agent()
        self.close(graceful=False)  # joins the console copier: the log is complete
        seen = self.console_since(mark).strip()
        raise TargetLostError(f"{self.label}: {what}",
                              self.console_tail() + ("" if seen else
                                                     "\n(the agent printed nothing during "
                                                     "the case)")) from exc

    # -- console ---------------------------------------------------------------------------
    def _console_write(self, text: str) -> None:
        with open(self.console_log, "ab") as con:
            con.write(text.encode())

def _copy_stderr(chan: paramiko.Channel, path: Path) -> None:
    """Append the agent's stderr to the console log until the channel ends."""
    with open(path, "ab", buffering=0) as out:
        while True:
            try:
                data = chan.recv_stderr(65536)
            except TimeoutError:
                continue
            except (OSError, EOFError):
                return
            if not data:
                return
            out.write(data)
