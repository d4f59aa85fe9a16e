"""kmatrix's command-line options and ini keys (host side)."""

from __future__ import annotations

import pytest

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
    parser.addini("kmatrix_case_dirs", type="paths", default=[],
                  help="folders whose tests run inside the guest (default: cases)")
