"""A private sshd on loopback for the SSH-target tests (imported as `loopback_sshd`): its
own host key, authorized keys, config and port (127.0.0.1 only), started by the test and
stopped after it.

It runs as root (the agent's cases need root) in a private mount namespace (`unshare
--mount`), so what the agent mounts on this host (bpffs on /sys/fs/bpf when it has none)
goes away with it. Tests skip, saying why, where sshd is not installed or not root.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.targets.ssh.options import SshOptions

SSHD = Path("/usr/sbin/sshd")
#: the alias of the test server in the client config the tests write
ALIAS = "kmx-test"


def skip_reason() -> str | None:
    if not SSHD.is_file():
        return "needs /usr/sbin/sshd (apt-get install openssh-server; scripts/bootstrap)"
    if os.geteuid() != 0:
        return "needs root (the test sshd logs in as root; the agent's cases need it)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SshdFiles:
    """What an sshd and its clients need: host key, authorized client key, sshd config
    (`sshd_config`), client config (alias ALIAS -> 127.0.0.1:port as root with client_key)
    and known_hosts. The server may run here or in a guest (tests/vm/test_ssh_vm.py)."""

    dir: Path
    #: the port clients connect to on 127.0.0.1
    port: int
    client_key: Path
    ssh_config: Path
    known_hosts: Path
    host_key_pub: str

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    def options(self, **kwargs: object) -> SshOptions:
        defaults: dict[str, object] = {"ssh_config": self.ssh_config,
                                       "cache_dir": str(self.dir / "cache"),
                                       "connect_timeout": 10.0, "boot_timeout": 60.0}
        return SshOptions(**{**defaults, **kwargs})  # type: ignore[arg-type]

    def host_fingerprint(self) -> str:
        kind, blob = self.host_key_pub.split()[:2]
        return str(paramiko.PKey.from_type_string(kind, _b64(blob)).fingerprint)

    def trust_host_key(self) -> None:
        self.known_hosts.write_text(
            f"[127.0.0.1]:{self.port} {' '.join(self.host_key_pub.split()[:2])}\n")


@dataclass
class Sshd(SshdFiles):
    """A running test sshd on loopback and the client side that reaches it."""

    proc: subprocess.Popen[bytes]

    def sessions(self) -> list[int]:
        """Pids of this sshd's children (one per connection)."""
        return children(self.proc.pid)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's sessions, their shells and commands)."""
    out: list[int] = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _write_config(d: Path, listen: str, port: int, pid_file: str) -> Path:
    config = d / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress {listen}
HostKey {d}/host_key
PidFile {pid_file}
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel VERBOSE
""")
    return config


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited ({proc.returncode}): {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}: {log.read_text()}")


def prepare(d: Path, port: int, *, listen: str = "127.0.0.1", listen_port: int | None = None,
            pid_file: str | None = None) -> SshdFiles:
    """The files of a test sshd in `d` (made): the server listens on `listen`:`listen_port`
    (default: 127.0.0.1:`port`); clients reach it on 127.0.0.1:`port`."""
    d.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")],
                   check=True)
    client = paramiko.ECDSAKey.generate()
    client_key = d / "client_key"
    client.write_private_key_file(str(client_key))
    (d / "authorized_keys").write_text(f"{client.get_name()} {client.get_base64()}\n")
    _write_config(d, listen, port if listen_port is None else listen_port,
                  pid_file or f"{d}/sshd.pid")
    known_hosts = d / "known_hosts"
    known_hosts.write_text("")
    ssh_config = d / "ssh_config"
    ssh_config.write_text(f"""\
Host {ALIAS}
    HostName 127.0.0.1
    Port {port}
    User root
Host *
    IdentityFile {client_key}
    IdentitiesOnly yes
    UserKnownHostsFile {known_hosts}
    GlobalKnownHostsFile /dev/null
""")
    return SshdFiles(d, port, client_key, ssh_config, known_hosts,
                     (d / "host_key.pub").read_text())


@contextlib.contextmanager
def running(d: Path) -> Iterator[Sshd]:
    """A test sshd with its files in `d` (made), stopped on exit with everything below it."""
    files = prepare(d, free_port())
    made_run_dir = not Path("/run/sshd").exists()
    if made_run_dir:  # sshd's privilege separation folder (its service would make it)
        Path("/run/sshd").mkdir(mode=0o755)
    with open(d / "sshd.log", "wb") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                 str(SSHD), "-D", "-e", "-f", str(files.sshd_config)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log)
    try:
        _wait_listening(files.port, proc, d / "sshd.log")
        yield Sshd(**vars(files), proc=proc)
    finally:
        for pid in descendants(proc.pid):  # what a failed test left running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if made_run_dir:
            shutil.rmtree("/run/sshd", ignore_errors=True)
