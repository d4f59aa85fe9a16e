"""A leash for the VM: whatever happens to kmatrix, its QEMU does not outlive it.

`vng` starts QEMU three processes down (vng -> sh -> virtme-run -> qemu), so a
PR_SET_PDEATHSIG on vng alone would leave QEMU running when kmatrix is SIGKILLed (the OOM
killer, a CI runner cancelling the job). The leash sits between kmatrix and vng:

    kmatrix -> python -m harness.targets.qemu.leash -- vng ... -> sh -> virtme-run -> qemu

- it asks the kernel for SIGTERM when its parent (kmatrix) dies (PR_SET_PDEATHSIG), and
  checks the parent is still there after asking (no race with an early death);
- it becomes a child subreaper (PR_SET_CHILD_SUBREAPER): processes below it that lose
  their parent are reparented to it, so it can still find and kill them;
- it runs the command in a process group of its own; on SIGTERM/SIGINT/SIGHUP (or its
  parent's death) it kills that group, then every descendant it still has, and waits;
- otherwise it waits for the command and exits with its status (stdin/stdout/stderr are
  the command's own);
- on RELEASE_SIGNAL (`kmatrix run --keep-failed` keeping a VM for the user) it lets go:
  kmatrix's death no longer ends the VM (SIGTERM still does); the VM ends when its guest
  powers off.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: seconds between SIGTERM and SIGKILL of what is left
KILL_GRACE = 2.0
#: tells the leash to let the VM outlive kmatrix
RELEASE_SIGNAL = signal.SIGUSR1

_libc = ctypes.CDLL(None, use_errno=True)


def argv(command: list[str]) -> list[str]:
    """The command line that runs `command` on a leash (use it instead of `command`)."""
    return [sys.executable, "-m", "harness.targets.qemu.leash", "--", *command]


def descendants(root: int) -> list[int]:
    """Pids of every live descendant of `root` (from /proc; children before grandchildren)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: ppid follows the last ')'
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(0), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_all(pgid: int) -> None:
    """SIGTERM then SIGKILL to the command's group and every remaining descendant."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline and descendants(os.getpid()):
            _reap()
            time.sleep(0.05)
        if not descendants(os.getpid()):
            return


def _reap() -> None:
    """Collect every exited child (reparented orphans included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(args: list[str]) -> int:
    if not args or args[0] != "--" or len(args) < 2:
        print("usage: python -m harness.targets.qemu.leash -- COMMAND [ARGS...]",
              file=sys.stderr)
        return 2
    parent = os.getppid()
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        print(f"leash: prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)
        return 3
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:  # kmatrix died before the death signal was armed
        return 1
    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def on_release(signum: int, frame: FrameType | None) -> None:
        _libc.prctl(PR_SET_PDEATHSIG, 0)
        for sig in (signal.SIGINT, signal.SIGHUP):  # the user's terminal, not an order
            signal.signal(sig, signal.SIG_IGN)

    signal.signal(RELEASE_SIGNAL, on_release)
    proc = subprocess.Popen(args[1:], process_group=0)
    while proc.poll() is None and not stop:
        time.sleep(0.1)
    if stop or descendants(os.getpid()):
        _kill_all(proc.pid)
    proc.wait()
    _reap()
    if stop:
        return 128 + stop[0]
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
