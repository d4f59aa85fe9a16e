"""What a target is, asked once when the session starts: the kernel it runs (its column's
label, the expectations' version and config), whether the agent can be root there, and
the Python that will run it. One SSH command; every check that can fail does so here, as
a usage error, before any case runs.
"""

from __future__ import annotations

import gzip
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ...acquire.kernel import make_label
from ...errors import InfraError, UserError
from .connect import connect
from .options import SshOptions
from .spec import SshSpec, TargetKernel

#: the oldest Python the guest code runs on
MIN_PYTHON = (3, 11)
#: seconds a short command on the target may take
COMMAND_TIMEOUT = 60.0

# $1: the Python asked for ("" = python3 on the PATH)
_FACTS_SCRIPT = r"""
py=${1:-$(command -v python3)}
printf 'release=%s\nversion=%s\nuid=%s\nhome=%s\npython=%s\n' \
    "$(uname -r)" "$(uname -v)" "$(id -u)" "$HOME" "$py"
printf 'cpus=%s\n' "$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
printf 'mem_kb=%s\n' "$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null)"
if [ -n "$py" ]; then
    "$py" -c 'import sys; print("python_version=%d.%d\npython_exe=%s" % (
        *sys.version_info[:2], sys.executable))' 2>/dev/null
fi
if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi
fi
"""


@dataclass(frozen=True)
class TargetFacts:
    release: str
    version: str
    uid: int
    home: str
    python: str
    python_version: tuple[int, int] | None
    #: None: root already; True: passwordless sudo works; False: neither
    sudo: bool | None
    cpus: int
    memory: str


def run_command(client: paramiko.SSHClient, argv: list[str],
                timeout: float = COMMAND_TIMEOUT) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv` run on the target (quoted for its shell)."""
    _, out, err = client.exec_command(shlex.join(argv), timeout=timeout)
    stdout = out.read().decode(errors="replace")
    stderr = err.read().decode(errors="replace")
    return out.channel.recv_exit_status(), stdout, stderr


def gather(client: paramiko.SSHClient, python: str | None) -> TargetFacts:
    status, out, err = run_command(client, ["sh", "-c", _FACTS_SCRIPT, "sh", python or ""])
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if status != 0 or not values.get("release"):
        raise InfraError(f"asking the target what it runs failed (exit {status}): "
                         f"{err.strip() or out.strip()}")
    pyver = values.get("python_version", "")
    major, _, minor = pyver.partition(".")
    mem_kb = int(values.get("mem_kb") or 0)
    return TargetFacts(
        release=values["release"], version=values.get("version", ""),
        uid=int(values.get("uid", "-1")), home=values.get("home", ""),
        # the interpreter itself (not a shim or a symlink that PATH or sudo could change)
        python=values.get("python_exe") or values.get("python", ""),
        python_version=(int(major), int(minor)) if pyver else None,
        sudo=None if "sudo" not in values else values["sudo"] == "yes",
        cpus=int(values.get("cpus") or 0),
        memory=f"{round(mem_kb / 1024 / 1024)}G" if mem_kb else "")


def check(spec: SshSpec, facts: TargetFacts, python: str | None) -> None:
    """UserError when the agent cannot run there as it is."""
    if facts.sudo is False:
        raise UserError(f"target {spec}: the cases need root, and the login user (uid "
                        f"{facts.uid}) has no passwordless sudo",
                        hint="log in as root (ssh://root@...), or allow the user "
                             "`sudo -n` (NOPASSWD) on the target")
    if facts.python_version is None:
        which = python or "python3 on the PATH"
        raise UserError(f"target {spec}: no working Python ({which})",
                        hint="install python3 (>= 3.11) there, or name one with "
                             "--target-python PATH")
    if facts.python_version < MIN_PYTHON:
        have = ".".join(map(str, facts.python_version))
        raise UserError(f"target {spec}: {facts.python} is Python {have}; the agent needs "
                        f"{'.'.join(map(str, MIN_PYTHON))} or newer",
                        hint="name a newer one with --target-python PATH")


def kernel_config(sftp: paramiko.SFTPClient, release: str) -> bytes | None:
    """The target's kernel config (/boot/config-RELEASE, else /proc/config.gz), if
    readable: the expectations tell "configured out" from "broken" with it."""
    for path in (f"/boot/config-{release}", "/proc/config.gz"):
        try:
            with sftp.open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        return gzip.decompress(data) if path.endswith(".gz") else data
    return None


def resolve_targets(texts: list[str], options: SshOptions, taken: set[str],
                    config_dir: Path) -> list[TargetKernel]:
    """One matrix column per `--target`: connect, ask, check; the column is labelled by
    the host and its running kernel (`lab1-6.12.38+deb13-amd64`), unique among `taken`
    (the kernels' labels; updated). The target's kernel config goes to `config_dir`."""
    out: list[TargetKernel] = []
    for text in texts:
        spec = SshSpec.parse(text)
        client, params = connect(spec, options)
        try:
            facts = gather(client, options.python)
            check(spec, facts, options.python)
            with client.open_sftp() as sftp:
                config = kernel_config(sftp, facts.release)
        finally:
            client.close()
        label = make_label(f"{spec.host}-{facts.release}")
        base, n = label, 2
        while label in taken:
            label, n = f"{base}-{n}", n + 1
        taken.add(label)
        config_path = None
        if config is not None:
            config_dir.mkdir(parents=True, exist_ok=True)
            config_path = config_dir / f"target-{label}.config"
            config_path.write_bytes(config)
        out.append(TargetKernel(
            spec=str(spec), label=label, image=Path(f"/boot/vmlinuz-{facts.release}"),
            release=facts.release,
            origin=f"SSH target {params.user}@{params.hostname}:{params.port} "
                   f"({facts.release} {facts.version})",
            version=f"{facts.release} {facts.version}".strip(),
            properties={"package_version": facts.version, "python": facts.python},
            config=config_path, target=spec, user=params.user,
            sudo=bool(facts.sudo), python=facts.python, cpus=facts.cpus,
            memory=facts.memory))
    return out
