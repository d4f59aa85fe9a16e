"""SSH targets without a server: the URL, ~/.ssh/config, what is synced, the agent's
command, the pool's handling of a lost target, the options' errors. (tests/ssh/ runs the
same code against a real sshd on loopback.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bpf.compile import OBJECTS_ENV
from harness.errors import BootError, UserError
from harness.paths import PROJECT_ROOT
from harness.protocol import Message
from harness.pytest_plugin.pool import VMPool
from harness.targets.base import Target, TargetLostError
from harness.targets.qemu.vm import GuestVM, VMOptions
from harness.targets.session import BootInfo
from harness.targets.ssh.connect import host_params
from harness.targets.ssh.options import PASSWORD_ENV, SshOptions
from harness.targets.ssh.payload import (
    GUEST_DISTRIBUTIONS,
    checkout_files,
    distribution_files,
    object_files,
    payload,
    requirement_closure,
)
from harness.targets.ssh.spec import SshSpec, TargetKernel
from harness.targets.ssh.target import SshTarget

pytest_plugins = ["pytester"]


def _as_target(vm: GuestVM, ssh: SshTarget) -> list[Target]:
    """mypy checks here that both satisfy the pool's interface."""
    return [vm, ssh]


def test_urls() -> None:
    assert SshSpec.parse("ssh://lab1") == SshSpec("lab1")
    assert SshSpec.parse("ssh://root@10.0.0.2:2222") == SshSpec("10.0.0.2", "root", 2222)
    assert SshSpec.parse("ssh://u@[fe80::1]:22/") == SshSpec("fe80::1", "u", 22)
    for text in ("ssh://root@10.0.0.2:2222", "ssh://lab1", "ssh://u@[fe80::1]:22"):
        assert str(SshSpec.parse(text)) == text
    for bad in ("lab1", "http://lab1", "ssh://", "ssh://h/path", "ssh://h:notaport"):
        with pytest.raises(UserError):
            SshSpec.parse(bad)
    with pytest.raises(UserError) as info:
        SshSpec.parse("ssh://root:hunter2@lab1")
    assert "hunter2" not in info.value.describe()
    assert PASSWORD_ENV in info.value.describe()


def test_ssh_config_is_followed(tmp_path: Path) -> None:
    key = tmp_path / "id_lab"
    key.write_text("")
    config = tmp_path / "config"
    config.write_text(f"""\
Host lab
    HostName 192.0.2.7
    User tester
    Port 2200
    IdentityFile {key}
    IdentityFile {tmp_path}/missing_key
    IdentitiesOnly yes
    UserKnownHostsFile {tmp_path}/kh1 {tmp_path}/kh2
    ForwardAgent yes
    ServerAliveInterval 30
""")
    options = SshOptions(ssh_config=config)
    params = host_params(SshSpec.parse("ssh://lab"), options)
    assert (params.hostname, params.user, params.port) == ("192.0.2.7", "tester", 2200)
    assert params.identity_files == (str(key),)  # a missing file is not offered
    assert params.identities_only and params.forward_agent and params.server_alive == 30
    assert params.user_known_hosts == (tmp_path / "kh1", tmp_path / "kh2")
    assert params.host_key_name == "[192.0.2.7]:2200"
    # the URL's user and port win over the config, as ssh's command line does
    params = host_params(SshSpec.parse("ssh://root@lab:22"), options)
    assert (params.user, params.port, params.host_key_name) == ("root", 22, "192.0.2.7")
    # no config: the host as given, port 22, the known_hosts files ssh reads
    plain = host_params(SshSpec.parse("ssh://other"), SshOptions(ssh_config=None))
    assert (plain.hostname, plain.port) == ("other", 22)
    assert Path("~/.ssh/known_hosts").expanduser() in plain.user_known_hosts
    assert Path("/etc/ssh/ssh_known_hosts") in plain.global_known_hosts


def test_checkout_payload_is_the_guest_half() -> None:
    files = checkout_files(PROJECT_ROOT, [PROJECT_ROOT / "cases",
                                          PROJECT_ROOT / "tests" / "vm" / "cases"])
    assert {"pyproject.toml", "conftest.py", "harness/__init__.py", "harness/protocol.py",
            "harness/guest/agent.py", "harness/guest/channel.py",
            "cases/test_tcx.py", "tests/vm/cases/test_guest_basics.py"} <= set(files)
    assert not [f for f in files if f.startswith(("harness/pytest_plugin", "harness/targets",
                                                  "tests/unit"))]
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    with pytest.raises(UserError):
        checkout_files(PROJECT_ROOT, [Path("/somewhere/else")])


def _third_party_imports(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"harness", "__future__", "_typeshed"}


def test_the_synced_environment_has_what_the_guest_imports() -> None:
    guest = [*(PROJECT_ROOT / "harness" / "guest").rglob("*.py"),
             *(PROJECT_ROOT / "cases").rglob("*.py"), PROJECT_ROOT / "conftest.py",
             PROJECT_ROOT / "harness" / "protocol.py"]
    needed = _third_party_imports(guest)
    dists = {d.metadata["Name"].lower() for d in requirement_closure(GUEST_DISTRIBUTIONS)}
    assert needed <= dists, f"the guest imports {needed - dists}: add to GUEST_DISTRIBUTIONS"
    files = distribution_files()
    tops = {f.split("/")[0] for f in files}
    assert {"pytest", "_pytest", "pluggy", "pyroute2"} <= tops
    assert not [f for f in files if f.endswith((".so", ".pyc"))]


def _kernel(**kwargs: Any) -> TargetKernel:
    fields: dict[str, Any] = {
        "spec": "ssh://lab", "label": "lab-6.12.0", "image": Path("/boot/vmlinuz-6.12.0"),
        "release": "6.12.0", "target": SshSpec("lab"), "user": "root",
        "python": "/usr/bin/python3", "cpus": 8, "memory": "16G", **kwargs}
    return TargetKernel(**fields)


def test_agent_command(tmp_path: Path) -> None:
    objects = tmp_path / "0123abcd"
    objects.mkdir()
    (objects / "tc.bpf.o").write_bytes(b"")
    target = SshTarget(_kernel(sudo=True), tmp_path / "console.log", [], SshOptions(),
                       guest_env={OBJECTS_ENV: "/host/path", "KMATRIX_PROFILE": "1"},
                       objects=objects)
    target.root = "/home/u/.cache/kmatrix/target"
    env = target.agent_env()
    assert env[OBJECTS_ENV] == "/home/u/.cache/kmatrix/target/bpf/0123abcd"
    assert env["KMATRIX_CHANNEL"] == "stdio" and env["KMATRIX_PROFILE"] == "1"
    assert env["PYTHONPATH"] == ("/home/u/.cache/kmatrix/target/checkout:"
                                 "/home/u/.cache/kmatrix/target/site")
    assert env["TMPDIR"] == "/home/u/.cache/kmatrix/target/tmp"
    command = target.agent_command()
    assert command.startswith("sudo -n env ")
    assert command.endswith("/usr/bin/python3 -m harness.guest.agent")
    assert object_files(objects) == {"0123abcd/tc.bpf.o": objects / "tc.bpf.o"}
    # an environment of the target's own: nothing of ours on its path, nothing synced
    own = SshTarget(_kernel(), tmp_path / "c.log", [],
                    SshOptions(python="/opt/venv/bin/python"))
    own.root = "/c"
    assert own.agent_env()["PYTHONPATH"] == "/c/checkout"
    assert not own.agent_command().startswith("sudo")
    assert not [f for f in payload(PROJECT_ROOT, [], None, with_env=False)
                if f.startswith("site/")]


class _LosingTarget:
    """Stands in for an SshTarget whose connection drops during its first case."""

    def __init__(self, console_log: Path) -> None:
        self.alive = False
        self.console_log = console_log
        self.info: BootInfo | None = None
        self.collect_errors: list[str] = []
        self.lost: str | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.alive = True
        self.info = BootInfo("6.12.0", {}, [], 1.0)

    def run_case(self, nodeid: str, timeout: float, *, evidence: bool = True) -> Message:
        self.alive = False
        self.lost = f"the SSH connection dropped while {nodeid} ran"
        raise TargetLostError(f"lab-6.12.0: {self.lost}", "console tail")

    def take_late(self) -> dict[str, list[str]]:
        return {}

    def close(self, *, graceful: bool = True) -> None:
        self.alive = False


def test_a_lost_target_is_not_restarted(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = _kernel()
    pool = VMPool([kernel], "auto", VMOptions(), tmp_path, "main", objects=tmp_path)
    fake = _LosingTarget(tmp_path / "console.log")
    monkeypatch.setattr(pool, "_ssh_target", lambda k: fake)
    target = pool.get(kernel.label)
    assert target is fake and pool.restartable(kernel.label)
    record = pool.boot_record(kernel.label)
    assert (record["accel"], record["vcpus"], record["memory"]) == ("ssh", 8, "16G")
    with pytest.raises(TargetLostError) as lost:
        target.run_case("cases/test_x.py::test_y", 10)
    assert "cannot reboot it" in lost.value.after
    assert not pool.restartable(kernel.label)
    with pytest.raises(BootError) as err:
        pool.get(kernel.label)
    assert fake.starts == 1
    text = str(err.value)
    assert text.splitlines() == [text] and "cannot restart an SSH target" in text
    assert "the target was lost" in pool.boot_record(kernel.label)["boot_error"]


def test_bad_target_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    result = pytester.runpytest("--target", "ftp://lab", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--target 'ftp://lab': not an ssh:// URL*"])
    result = pytester.runpytest("--target", "ssh://root:hunter2@lab", "-p",
                                "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "hunter2" not in result.stderr.str() + result.stdout.str()


def test_kmatrix_run_passes_targets_and_adds_no_default_kernels() -> None:
    from harness import cli
    from harness.cli import run

    args, rest = cli.build_parser().parse_known_args(
        ["run", "--target", "ssh://root@lab", "--accept-host-key", "SHA256:abc",
         "--target-python", "/opt/py", "-k", "tcx"])
    assert args.target == ["ssh://root@lab"]
    assert run.kernel_specs(args) == []
    argv = run.pytest_argv(args, rest, run.kernel_specs(args))
    assert "--kernel" not in argv
    assert argv[argv.index("--target") + 1] == "ssh://root@lab"
    assert argv[-6:] == ["--accept-host-key", "SHA256:abc", "--target-python", "/opt/py",
                         "-k", "tcx"]  # the rest goes to pytest as typed
    assert "-n" not in argv  # one column: serial
    args, _ = cli.build_parser().parse_known_args(["run", "--target", "ssh://a",
                                                   "--kernel", "debian:6.12"])
    assert run.kernel_specs(args) == ["debian:6.12"]
