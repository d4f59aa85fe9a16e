"""kmatrix's command-line options and ini keys (host side)."""

from __future__ import annotations

import argparse

import pytest

from ..matrix.kernels import MATRIX_FILE
from .shards import parse_shard

DEFAULT_CASE_TIMEOUT = 180.0


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("kmatrix", "kmatrix: run cases inside booted kernels")
    group.addoption("--kernel", action="append", default=[], metavar="SPEC",
                    help="kernel to boot (repeatable): debian:X.Y, debian-source:X.Y, host, "
                         "a kernel image, a kernel tree or tarball")
    group.addoption("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="QEMU accelerator; auto uses KVM only where it boots a kernel")
    group.addoption("--vm-cpus", type=int, default=None,
                    help="guest CPUs (default: 2, fewer when parallel VMs would outnumber "
                         "the host's cores: oversubscribed TCG vCPUs slow boots 5x)")
    group.addoption("--vm-memory", default="2G", help="guest memory (default 2G)")
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
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")


def shard_option(text: str) -> tuple[int, int]:
    """--shard I/N, checked by pytest's parser."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
