"""The one runner of external commands: argv lists only, a re-runnable command line logged."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from .errors import CommandError, MissingToolError

log = logging.getLogger("kmatrix.command")

#: tool -> Debian package that provides it; used in MissingToolError hints and by `doctor`
TOOL_PACKAGES: dict[str, str] = {
    "vng": "virtme-ng (pip, in .venv)",
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "clang-19": "clang-19",
    "llvm-strip-19": "llvm-19",
    "bpftool": "bpftool (bookworm-backports)",
    "ip": "iproute2 (bookworm-backports, >= 6.7 for netkit)",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "depmod": "kmod",
    "mke2fs": "e2fsprogs",
    "pahole": "dwarves",
    "gcc": "gcc",
    "make": "make",
    "flex": "flex",
    "bison": "bison",
    "bc": "bc",
    "ccache": "ccache",
    "zstd": "zstd",
}


def format_argv(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """A command line the user can paste into a shell to reproduce the call."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = shlex.join(list(argv))
    return f"{prefix} {line}" if prefix else line


def which(tool: str) -> str:
    """Absolute path of `tool`, looking in the venv's bin dir too; MissingToolError if absent."""
    import sys

    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which(tool, path=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    if found is None:
        for extra in ("/usr/sbin", "/sbin"):
            found = shutil.which(tool, path=extra)
            if found:
                break
    if found is None:
        pkg = TOOL_PACKAGES.get(tool, tool)
        raise MissingToolError(
            f"required tool '{tool}' not found",
            hint=f"install {pkg}: run scripts/bootstrap (or `kmatrix doctor` for the list)",
        )
    return found


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    on_line: Callable[[str], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never a shell string); raise CommandError on failure when `check`.
    `on_line` is called with each line of output as it comes (progress), the output is
    still returned whole.

    The command runs in a process group of its own: when kmatrix is interrupted (Ctrl-C,
    SIGTERM turned into KeyboardInterrupt) or times the command out, the whole group is
    killed (make's compilers, apt's methods), not only the process we started."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", format_argv(argv, env))
    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=full_env, text=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None, process_group=0)
    except FileNotFoundError as exc:
        raise MissingToolError(
            f"required tool '{argv[0]}' not found",
            hint=f"install {TOOL_PACKAGES.get(Path(argv[0]).name, argv[0])}",
        ) from exc
    with proc:
        try:
            if on_line is not None and proc.stdout is not None:
                stdout = _stream(proc, proc.stdout, on_line, timeout)
            else:
                stdout, _ = proc.communicate(timeout=timeout)
        except BaseException:
            kill_group(proc)
            raise
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, stdout or "")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, None)


def _stream(proc: subprocess.Popen[str], out: IO[str], on_line: Callable[[str], None],
            timeout: float | None) -> str:
    """Read `out` line by line into `on_line` (a thread), wait for `proc`; the output."""
    lines: list[str] = []

    def reader() -> None:
        for line in out:
            lines.append(line)
            on_line(line.rstrip("\n"))

    thread = threading.Thread(target=reader, name="command-output", daemon=True)
    thread.start()
    proc.wait(timeout=timeout)
    thread.join(timeout=5)
    return "".join(lines)


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process group `proc` leads, then reap `proc`."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
