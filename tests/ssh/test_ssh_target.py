"""The agent on this host over a real SSH connection (a loopback sshd): cases end to end,
nothing left behind, a dropped connection, and `kmatrix run --target`.

This host's kernel is the target's: the cases run as root in fresh network namespaces
here, and the agent's isolation check runs here too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.bpf.compile import object_set
from harness.errors import BootError
from harness.paths import PROJECT_ROOT
from harness.pytest_plugin.pool import VMPool
from harness.targets.base import TargetLostError
from harness.targets.qemu.vm import VMOptions
from harness.targets.ssh.facts import resolve_targets
from harness.targets.ssh.options import SshOptions
from harness.targets.ssh.spec import TargetKernel
from harness.targets.ssh.target import SshTarget

from .loopback_sshd import Sshd, descendants

CASES = PROJECT_ROOT / "tests" / "vm" / "cases"
BASICS = "tests/vm/cases/test_guest_basics.py"
NOOP = f"{BASICS}::test_noop"
FAILS = f"{BASICS}::test_fails_in_guest"
HANGS = f"{BASICS}::test_hang_userspace"


def _target(sshd: Sshd, tmp_path: Path, cache: Path) -> tuple[TargetKernel, SshOptions]:
    sshd.trust_host_key()
    options = sshd.options(case_dirs=(CASES,), cache_dir=str(cache))
    (kernel,) = resolve_targets([sshd.url], options, set(), tmp_path / "results")
    return kernel, options


def _outcomes(verdict: dict[str, object]) -> dict[str, str]:
    reports = verdict.get("reports", [])
    assert isinstance(reports, list)
    return {str(r["when"]): str(r["outcome"]) for r in reports}


def _agents(cache: Path) -> list[str]:
    """Processes working in the target's cache folder (the agent and its case processes
    run in its checkout), with their command lines."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cwd.is_relative_to(cache):
            out.append(f"{proc.name}: {cmdline}")
    return out


def _wait_no_agents(cache: Path, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _agents(cache)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def test_cases_run_over_ssh_and_nothing_is_left(sshd: Sshd, tmp_path: Path,
                                                target_cache: Path) -> None:
    kernel, options = _target(sshd, tmp_path, target_cache)
    links, netns = set(os.listdir("/sys/class/net")), _netns()
    console = tmp_path / "console.log"
    objects = object_set()
    started = time.time()
    with SshTarget(kernel, console, [NOOP, FAILS], options, objects=objects) as target:
        assert target.info is not None and target.info.release == os.uname().release
        assert _outcomes(target.run_case(NOOP, 60)) == {
            "setup": "passed", "call": "passed", "teardown": "passed"}
        failed = target.run_case(FAILS, 60)
        assert _outcomes(failed)["call"] == "failed"
        assert "this case fails on purpose" in json.dumps(failed)
        assert not failed.get("leaks")
    cache = Path(target.root)
    assert cache == target_cache
    assert _wait_no_agents(cache, 10) == []
    assert set(os.listdir("/sys/class/net")) == links and _netns() == netns
    assert sorted(p.name for p in cache.iterdir()) == [
        "agent.lock", "bpf", "checkout", "site", "tmp"]
    text = console.read_text()
    assert "harness.guest.agent" in text and "KMATRIX_CHANNEL=stdio" in text

    # again: nothing to send (but what changed here meanwhile: the tree is shared while
    # engineers work), the agent starts from the cache
    with SshTarget(kernel, console, [NOOP], options, objects=objects) as again:
        assert again.sync_stats is not None and again.sync_stats.unchanged > 100
        assert [rel for rel in again.sync_stats.sent if not rel.startswith("checkout/") or
                (PROJECT_ROOT / rel.removeprefix("checkout/")).stat().st_mtime < started] == []
        assert _outcomes(again.run_case(NOOP, 60))["call"] == "passed"
    assert _wait_no_agents(cache, 10) == []


def _drop_connections(sshd: Sshd) -> None:
    """Kill the sshd processes of the open sessions (not the commands they run): the
    connection drops as when a network or a machine goes away."""
    for pid in descendants(sshd.proc.pid):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("sshd"):
            os.kill(pid, signal.SIGKILL)


def test_dropped_connection_fails_the_case_and_loses_the_target(
        sshd: Sshd, tmp_path: Path, target_cache: Path) -> None:
    kernel, options = _target(sshd, tmp_path, target_cache)
    pool = VMPool([kernel], "auto", VMOptions(), tmp_path / "results", "main", ssh=options)
    pool.nodeids[kernel.label] = [HANGS, NOOP]
    target = pool.get(kernel.label)
    assert pool.boot_record(kernel.label)["accel"] == "ssh"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target.run_case(HANGS, 4)  # the agent ends the case after 4 s
        except BaseException as exc:
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(1.5)  # the case is running
    t0 = time.monotonic()
    _drop_connections(sshd)
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert time.monotonic() - t0 < 10
    (err,) = errors
    assert isinstance(err, TargetLostError)
    assert f"while {HANGS} ran" in str(err) and "SSH connection dropped" in str(err)
    assert not target.alive and not pool.restartable(kernel.label)
    # the rest of its cases error at once, one line each
    t1 = time.monotonic()
    with pytest.raises(BootError) as again:
        pool.get(kernel.label)
    assert time.monotonic() - t1 < 1
    assert "cannot restart an SSH target" in str(again.value)
    assert len(str(again.value).splitlines()) == 1
    assert "the target was lost" in pool.boot_record(kernel.label)["boot_error"]
    pool.close_all()
    # the agent saw EOF: it ends the case (its timeout), cleans up and exits
    assert _wait_no_agents(target_cache, 20) == []


def test_kmatrix_run_with_a_target(sshd: Sshd, tmp_path: Path, target_cache: Path) -> None:
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "harness", "run", "--no-cache", "-n", "0",
            "--target", sshd.url, "--accept-host-key", sshd.host_fingerprint(),
            "--ssh-config", str(sshd.ssh_config), "--target-cache", str(target_cache),
            "--results-dir", str(results), NOOP]
    proc = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    data = json.loads((results / "results.json").read_text())
    (label,) = data["kernels"]
    info = data["kernels"][label]
    assert label == f"127.0.0.1-{os.uname().release}"
    assert info["spec"] == sshd.url and info["accel"] == "ssh"
    assert info["release"] == os.uname().release
    assert [(c["kernel"], c["status"]) for c in data["cases"]] == [(label, "pass")]
    assert (results / f"console-{label}.log").is_file()
    assert sshd.known_hosts.read_text() == ""  # accepted for the run, not saved
    assert _wait_no_agents(target_cache, 10) == []


def test_a_second_agent_waits_for_the_first(sshd: Sshd, tmp_path: Path, target_cache: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    """Two agents on one machine would see each other's objects as leaks: the second
    waits (saying so) until the first is done."""
    kernel, options = _target(sshd, tmp_path, target_cache)
    objects = object_set()
    first = SshTarget(kernel, tmp_path / "first.log", [NOOP], options, objects=objects)
    second = SshTarget(kernel, tmp_path / "second.log", [NOOP], options, objects=objects)
    with first:
        starter = threading.Thread(target=second.start)
        with caplog.at_level("WARNING", "kmatrix.ssh"):
            starter.start()
            deadline = time.monotonic() + 30
            while "holds the target; waiting" not in caplog.text:
                assert time.monotonic() < deadline, "the second agent did not wait"
                time.sleep(0.1)
        assert not second.alive
        assert _outcomes(first.run_case(NOOP, 60))["call"] == "passed"
    starter.join(timeout=60)
    try:
        assert second.alive
        assert _outcomes(second.run_case(NOOP, 60))["call"] == "passed"
    finally:
        second.close()
    assert _wait_no_agents(target_cache, 10) == []


def test_a_hung_agent_is_killed_and_frees_the_target(sshd: Sshd, tmp_path: Path,
                                                     target_cache: Path) -> None:
    """The host watchdog: an agent that stops answering (it SIGSTOPs itself) loses the
    target; its session is killed while the connection lives, so nothing stays
    and the next run gets the target's lock at once."""
    kernel, options = _target(sshd, tmp_path, target_cache)
    options = dataclasses.replace(options, watchdog_grace=2.0)
    hang = f"{BASICS}::test_hang_agent"
    console = tmp_path / "console.log"
    objects = object_set()
    target = SshTarget(kernel, console, [hang], options, objects=objects)
    target.start()
    try:
        with pytest.raises(TargetLostError) as lost:
            target.run_case(hang, 2)
    finally:
        target.close(graceful=False)
    assert "no verdict" in str(lost.value) and "host watchdog" in str(lost.value)
    assert "killed the agent's session" in console.read_text()
    assert _wait_no_agents(target_cache, 10) == []
    with SshTarget(kernel, tmp_path / "next.log", [NOOP], options, objects=objects) as after:
        assert _outcomes(after.run_case(NOOP, 60))["call"] == "passed"
