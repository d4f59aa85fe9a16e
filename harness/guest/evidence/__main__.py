"""`python -m harness.guest.evidence [CASES]`: what the evidence costs per case, measured the
way the agent uses it (as root, with KMATRIX_BPF_OBJECTS set; in a guest or under
`unshare -n`).

Each round forks a no-op "case" that enters a fresh namespace (lo up), as the agent's case
process does; with evidence, the agent side runs before()/after() around it and the child
has its namespace recorded (snapshot_case): by the evidence server, as the agent does, and
for comparison by CaseEvidence in the two processes themselves. Printed: the attach cost
(once per boot) and, per case, the median and maximum of the agent's before()+after(),
of the child's snapshot and of the whole round, with and without evidence; then what
each read costs alone.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

from ..net.netns import set_up, unshare_netns
from . import devstats, snapshot, snmp, softnet
from .case import CaseEvidence
from .server import EvidenceServer


def _round(ev: CaseEvidence | EvidenceServer | None) -> tuple[float, float, float, float]:
    """(whole round, agent side, child side, the reads themselves: the evidence's cost_ms,
    wherever they ran) in ms."""
    t0 = time.perf_counter()
    agent = reads = 0.0
    if ev is not None:
        ev.before()
        agent = (time.perf_counter() - t0) * 1e3
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            unshare_netns()
            set_up("lo")
            t = time.perf_counter()
            if ev is not None:
                ev.wait_ready()
                ev.snapshot_case()
            os.write(write_fd, str((time.perf_counter() - t) * 1e3).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    child = float(os.read(read_fd, 64) or b"0")
    os.close(read_fd)
    os.waitpid(pid, 0)
    if ev is not None:
        t1 = time.perf_counter()
        reads = float(ev.after().get("cost_ms", 0.0))
        agent += (time.perf_counter() - t1) * 1e3
    return (time.perf_counter() - t0) * 1e3, agent, child, reads


def _parts(ev: CaseEvidence, rounds: int) -> dict[str, list[float]]:
    """Each read the evidence makes, alone, in ms: where before()/after() and the child's
    snapshot spend their time."""
    parts: dict[str, Callable[[], object]] = {
        "softnet_stat": softnet.read,
        "devices (root, rtnetlink + ethtool)": devstats.read,
        "snmp+netstat+snmp6 (root)": snmp.read,
        "namespace id (cookie, inode)": snapshot.current_id,
        "drop map drain": ev.drops.drain if ev.drops is not None else (lambda: None),
    }
    out: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out


def main(argv: list[str]) -> int:
    cases = int(argv[0]) if argv else 50
    t0 = time.perf_counter()
    local = CaseEvidence()
    attach = (time.perf_counter() - t0) * 1e3
    try:
        in_process = [_round(local) for _ in range(cases)]
        parts = _parts(local, cases)
        server = EvidenceServer(local)  # as the agent runs it; closes `local` too
        try:
            served = [_round(server) for _ in range(cases)]
        finally:
            server.close()
    finally:
        local.close()
    without = [_round(None)[0] for _ in range(cases)]

    def stat(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f} ms, max {max(values):.3f} ms"

    print(f"drops: {local.drops_mode}; attach + reason names: {attach:.1f} ms (once per "
          "boot)")
    print(f"round without evidence:          {stat(without)}")
    for title, rounds in (("evidence server (the agent's way)", served),
                          ("in the agent and the case process", in_process)):
        print(f"{title}:")
        print(f"  round:                         {stat([r[0] for r in rounds])}")
        print(f"  agent before()+after():        {stat([r[1] for r in rounds])}")
        print(f"  case snapshot_case():          {stat([r[2] for r in rounds])}")
        print(f"  the reads themselves:          {stat([r[3] for r in rounds])}")
    print("each read alone, in a loop (no fork in between):")
    for name, values in parts.items():
        print(f"  {name + ':':38s}{stat(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
