"""kmatrix's command-line options and ini keys (host side)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from ..matrix.kernels import MATRIX_FILE
from .shards import parse_shard

DEFAULT_CASE_TIMEOUT = 180.0


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kmatrix", "kmatrix: run cases inside booted kernels")
    group.addoption("--kernel", action="append", default=[], metavar="SPEC",
                    help="kernel to boot (repeatable): debian:X.Y, debian-source:X.Y, host, "
                         "a kernel image, a kernel tree or tarball")
    # SSH targets (harness.targets.ssh): machines that are columns of the matrix too
    group.addoption("--target", action="append", default=[], metavar="ssh://[USER@]HOST[:PORT]",
                    help="a machine reached over SSH (repeatable): one more column, labelled "
                         "by host and running kernel; cases run there as root (login as "
                         "root or passwordless sudo); HOST may be a ~/.ssh/config alias")
    group.addoption("--accept-host-key", action="append", default=[], metavar="SHA256:...",
                    help="accept this unknown host key fingerprint for this run (not saved; "
                         "a changed key is refused whatever this says)")
    group.addoption("--target-python", default=None, metavar="PATH",
                    help="the targets' Python, in an environment with pytest and pyroute2 "
                         "(default: python3 there, with those synced from here)")
    group.addoption("--target-cache", default=None, metavar="DIR",
                    help="the per-user cache folder on the targets where the checkout and "
                         "the environment are synced (default ~/.cache/kmatrix/target)")
    group.addoption("--ssh-config", default="~/.ssh/config", metavar="FILE",
                    help="ssh client configuration for the targets (default ~/.ssh/config)")
    group.addoption("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="QEMU accelerator; auto uses KVM only where it boots a kernel")
    group.addoption("--vm-cpus", type=int, default=None,
                    help="guest CPUs (default: 2, fewer when parallel VMs would outnumber "
                         "the host's cores: oversubscribed multi-vCPU TCG guests spin on "
                         "locks, boots 5x slower)")
    group.addoption("--vm-memory", default="2G", help="guest memory (default 2G)")
    group.addoption("--vm-cpu-model", default=None, metavar="MODEL",
                    help="QEMU CPU model of the guests, with features (e.g. "
                         "max,la57=off; qemu-system-x86_64 -cpu help lists them); "
                         "default: virtme-ng's, host under KVM and max under TCG")
    group.addoption("--snapshot", action="store_const", const="on", default="auto",
                    dest="snapshot",
                    help="boot each kernel from a root image and save its ready guest; "
                         "restarts and later runs restore it in seconds (default: where "
                         "the kernel can: virtio-blk and ext4 in its .config; with this "
                         "option a kernel that cannot is an error)")
    group.addoption("--no-snapshot", action="store_const", const="off", dest="snapshot",
                    help="boot every kernel on virtme-ng's 9p root, no root image and no "
                         "snapshots")
    group.addoption("--boot-timeout", type=float, default=300.0,
                    help="seconds a boot may go without a sign of progress (kernel console "
                         "output before the agent starts, then the agent's progress "
                         "messages); a boot never takes more than 3x this (default 300)")
    group.addoption("--case-timeout", type=float, default=DEFAULT_CASE_TIMEOUT,
                    help="per-case timeout in the guest, seconds (default 180); a case may "
                         "set its own with @pytest.mark.case_timeout(N)")
    group.addoption("--watchdog-grace", type=float, default=60.0,
                    help="host watchdog: seconds past a case's timeout before the guest "
                         "counts as hung and the VM is restarted (default 60)")
    group.addoption("--results-dir", default=None,
                    help="where console logs, JUnit XML and the matrix go "
                         "(default results/<date-time>)")
    group.addoption("--guest-profile", action="store_true", default=False,
                    help="run each case in the guest under cProfile; its busiest functions "
                         "go into the case's output (junit system-out, results.json)")
    group.addoption("--bpf-objects", default=None, metavar="DIR",
                    help="use the compiled BPF objects in DIR (NAME.bpf.o) instead of "
                         "compiling bpf/ on the host")
    group.addoption("--matrix-file", default=str(MATRIX_FILE), metavar="TOML",
                    help="kernel matrix whose [kernel.expect] overrides apply to the kernels "
                         "it lists (default images/matrix.toml)")
    group.addoption("--cases-by-default", action="store_true", default=False,
                    help="with no test path given, run the case folders (ini "
                         "kmatrix_case_dirs) instead of pytest's default; `kmatrix run` "
                         "sets it")
    group.addoption("--shard", type=shard_option, default=None, metavar="I/N",
                    help="run shard I of N (1-based) of the collected items: the same split "
                         "in every shard, whole kernels per shard where it can (one boot per "
                         "kernel), balanced by case count or --durations-from; `kmatrix "
                         "merge` combines the shards' results folders")
    group.addoption("--durations-from", default=None, metavar="DIR",
                    help="balance --shard by the case durations an earlier run recorded in "
                         "DIR/results.json (cases it lacks count as its median); give every "
                         "shard of a run the same DIR")
    group.addoption("--rerun-failed", type=int, default=0, metavar="N",
                    help="run a case that failed, errored in the guest or crashed again, up "
                         "to N times, each on a fresh boot of the same kernel; one that then "
                         "passes is reported flaky (never a plain pass; the run does not "
                         "fail for it)")
    group.addoption("--guest-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable of the agent and the cases in the guest "
                         "(repeatable)")
    group.addoption("--keep-failed", action="store_true", default=False,
                    help="leave the VM of the first failing case running after the run, the "
                         "case held before its teardown (its namespaces and objects as they "
                         "were), and print how to attach a shell to it (kmatrix attach)")
    group.addoption("--live", action="store_true", default=False,
                    help="show the run's progress as a live table (kernel stages, cases "
                         "done per kernel, ETA) instead of pytest's; `kmatrix run` asks for "
                         "it on a terminal")
    group.addoption("--progress-every", type=float, default=60.0, metavar="SECONDS",
                    help="without --live: a progress line per kernel at most this often "
                         "(default 60)")
    parser.addini("kmatrix_default_cases", type="paths", default=[],
                  help="what `kmatrix run` runs when given no test path (default: "
                       "kmatrix_case_dirs); kmatrix's own: cases/, not the VM tests' cases")
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")


def shard_option(text: str) -> tuple[int, int]:
    """--shard I/N, checked by pytest's parser."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class _Recorder:
    """Stands in for pytest's parser and option group: records what `add_options` adds."""

    def __init__(self) -> None:
        self.options: list[tuple[str, str]] = []

    def getgroup(self, name: str, description: str = "") -> _Recorder:
        return self

    def addoption(self, *flags: str, **attrs: Any) -> None:
        metavar = attrs.get("metavar") or ("" if attrs.get("action") in (
            "store_true", "store_false") else "VALUE")
        choices = attrs.get("choices")
        if choices:
            metavar = "{" + ",".join(choices) + "}"
        self.options.append((", ".join(flags) + (f" {metavar}" if metavar else ""),
                             str(attrs.get("help", ""))))

    def addini(self, *args: Any, **kwargs: Any) -> None:
        pass


def describe_options() -> list[tuple[str, str]]:
    """(flags, help) of every kmatrix pytest option, in the order they are defined."""
    recorder = _Recorder()
    add_options(recorder)  # type: ignore[arg-type]
    return recorder.options
