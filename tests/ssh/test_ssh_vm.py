"""An SSH target that runs a kernel of the matrix, not this host's: a VM booted the way the
suite boots it stands in for a lab machine. It gets one user-mode NIC (`restrict=on`: no
route to anything outside; only the forwarded port comes in) with a host port forwarded to
an sshd started in the guest from its shell port (openssh-server from Debian, the host's
binary over the VM's 9p root). The TCX suite runs on it over SSH with `kmatrix run
--target`, and its verdicts equal those of the VM path on the same kernel, case for case.

Marked `vm` (it boots a kernel): tox's vm environment runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.acquire.spec import resolve
from harness.cli.shell import suite_vm
from harness.nodeid import case_id
from harness.paths import PROJECT_ROOT, cache_root
from harness.targets.qemu.accel import choose
from harness.targets.qemu.vm import VMOptions

from .loopback_sshd import ALIAS, SshdFiles, free_port, prepare

pytestmark = pytest.mark.vm

KERNEL = os.environ.get("KMATRIX_TEST_KERNEL", "debian:6.12")
SUITE = "cases/test_tcx.py"
#: the guest's NIC for SSH (found in the guest by this address)
MAC = "52:54:00:6b:6d:78"
#: where QEMU's user-mode network puts the guest (its default) and the port sshd listens on
GUEST_IP = "10.0.2.15"
GUEST_PORT = 22


def user_nic(host_port: int) -> tuple[str, ...]:
    """vng arguments: a virtio NIC on QEMU's user-mode network, isolated (restrict=on),
    with 127.0.0.1:host_port forwarded to the guest's sshd."""
    netdev = (f"user,id=kmxssh,restrict=on,"
              f"hostfwd=tcp:127.0.0.1:{host_port}-{GUEST_IP}:{GUEST_PORT}")
    return ("--qemu-opts=-netdev", f"--qemu-opts={netdev}",
            "--qemu-opts=-device", f"--qemu-opts=virtio-net-pci,netdev=kmxssh,mac={MAC}")


def guest_sshd_script(files: SshdFiles) -> str:
    """One shell line for the guest: bring the NIC up, start sshd, print KMX_SSHD_<rc>.
    virtme-ng's init gives the guest an /etc/shadow of its own (a tmpfs file bind-mounted
    over the host's) with every account locked ("!"), and sshd refuses a locked account
    even a key ("User root not allowed because account is locked"): root gets "*" there
    (no password login, not locked), in the guest's copy only."""
    return ("sed 's/^root:!:/root:*:/' /etc/shadow > /run/kmx-shadow && "
            "cat /run/kmx-shadow > /etc/shadow; "
            "modprobe -q virtio_net; IF=; for i in $(seq 60); do "
            f"IF=$(grep -l {MAC} /sys/class/net/*/address 2>/dev/null | cut -d/ -f5); "
            '[ -n "$IF" ] && break; sleep 1; done; '
            f'ip link set "$IF" up && ip addr add {GUEST_IP}/24 dev "$IF" && '
            "mkdir -p /run/sshd && "
            f"/usr/sbin/sshd -e -f {files.sshd_config} 2>/run/kmx-sshd.log; rc=$?; "
            "cat /run/kmx-sshd.log; echo KMX_SSHD_$rc\n")


#: the guest shell's prompt (harness/guest/shell.py): `kmatrix(LABEL):CWD# `
PROMPT = re.compile(rb"kmatrix\([^)]*\):[^\n]*# ?$")


def _read_until(conn: socket.socket, seen: bytes, done: re.Pattern[bytes],
                deadline: float) -> bytes:
    while not done.search(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"the guest shell did not get there:\n{seen.decode()}")
        try:
            data = conn.recv(65536)
        except TimeoutError:
            continue
        if not data:
            raise AssertionError(f"the guest shell ended:\n{seen.decode()}")
        seen += data
    return seen


def run_in_shell(sock: Path, line: str, timeout: float) -> str:
    """Type `line` into the VM's shell (its shell port) as `kmatrix attach` would: a
    newline first (the shell starts on it, and drops it), then the line once the prompt
    shows. What it printed up to the KMX_SSHD_<rc> marker; closing the connection
    detaches, the shell stays."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(sock))
        conn.settimeout(2.0)
        conn.sendall(b"\n")
        seen = _read_until(conn, b"", PROMPT, deadline)
        conn.sendall(line.encode())
        seen = _read_until(conn, seen, re.compile(rb"KMX_SSHD_\d+"), deadline)
    return seen.decode(errors="replace")


def wait_ssh_banner(port: int, timeout: float) -> None:
    """Until the forwarded port answers with an SSH banner (QEMU accepts the connection
    before the guest does: only the banner shows sshd is there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"no sshd behind 127.0.0.1:{port} within {timeout:.0f}s")


def kmatrix_run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--no-live", *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800)
    print(proc.stdout[-4000:], proc.stderr[-3000:])
    return proc


def verdicts(results: Path) -> dict[str, str]:
    """case (node id without its kernel) -> status, from a run's results.json."""
    data = json.loads((results / "results.json").read_text())
    return {case_id(c["nodeid"], c["kernel"]): c["status"] for c in data["cases"]}


def test_tcx_over_ssh_to_a_vm_matches_the_vm_path(tmp_path: Path) -> None:
    on_vm = kmatrix_run("--kernel", KERNEL, "--boot-timeout", "900",
                        "--results-dir", str(tmp_path / "vm"), SUITE)
    assert on_vm.returncode == 0

    # the guest sees the host's filesystem over 9p except its tmpfs folders (/tmp, /run):
    # the sshd's files go where it can read them (cache_root() creates the folder)
    folder = Path(tempfile.mkdtemp(prefix="sshvm-", dir=cache_root()))
    try:
        port = free_port()
        files = prepare(folder / "sshd", port, listen=GUEST_IP, listen_port=GUEST_PORT,
                        pid_file="/run/kmx-sshd.pid")
        kernel = resolve(KERNEL)
        options = VMOptions(boot_timeout=900, tag="sshvm", shell_socket=folder / "shell.sock",
                            extra_vng_args=user_nic(port))
        with suite_vm(kernel, choose("auto", kernel.image), options,
                      tmp_path / "console-sshvm.log") as vm:
            vm.open_shell()
            shown = run_in_shell(folder / "shell.sock", guest_sshd_script(files), 300)
            assert "KMX_SSHD_0" in shown, shown
            wait_ssh_banner(port, 120)
            on_ssh = kmatrix_run("--target", f"ssh://{ALIAS}",
                                 "--ssh-config", str(files.ssh_config),
                                 "--accept-host-key", files.host_fingerprint(),
                                 # the guest's root is read-only: the cache on its tmpfs
                                 "--target-cache", "/run/kmx-target",
                                 "--results-dir", str(tmp_path / "ssh"), SUITE)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert on_ssh.returncode == 0
    (ssh_kernel,) = json.loads((tmp_path / "ssh" / "results.json").read_text())["kernels"].values()
    (vm_kernel,) = json.loads((tmp_path / "vm" / "results.json").read_text())["kernels"].values()
    # the target ran the VM's kernel, not this host's
    assert ssh_kernel["release"] == vm_kernel["release"] != os.uname().release, ssh_kernel
    vm_verdicts, ssh_verdicts = verdicts(tmp_path / "vm"), verdicts(tmp_path / "ssh")
    assert vm_verdicts and "pass" in vm_verdicts.values()
    different = {case: (vm_verdicts.get(case), ssh_verdicts.get(case))
                 for case in vm_verdicts.keys() | ssh_verdicts.keys()
                 if vm_verdicts.get(case) != ssh_verdicts.get(case)}
    assert different == {}
