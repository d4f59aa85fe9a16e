"""/proc/net/softnet_stat: the per-CPU receive backlog counters (global, not per namespace).

One line per online CPU, hexadecimal columns; the kernel added columns over time, so they
are named by how many there are (net/core/net-procfs.c, softnet_seq_show):

    10  processed dropped time_squeeze 0 0 0 0 0 cpu_collision received_rps
    11  ... flow_limit_count                                  (3.11)
    13  ... backlog_len cpu                                   (5.10, commit 7d58e6555870)
    15  ... input_qlen process_qlen                           (6.4, "net-sysfs: display two
                                                               backlog queue len separately")

`dropped` is packets dropped because the backlog (netdev_max_backlog) was full,
`time_squeeze` the NAPI rounds that ran out of budget or time with work left. Columns 3-7
are always 0 (they were fastroute), cpu_collision is 0 since 4.x. The CPU number is the
`cpu` column where there is one (offline CPUs are not listed), the line number otherwise.
"""

from __future__ import annotations

import os

#: column names, by position
COLUMNS = ("processed", "dropped", "time_squeeze", "", "", "", "", "", "cpu_collision",
           "received_rps", "flow_limit_count", "backlog_len", "cpu", "input_qlen",
           "process_qlen")
#: queue lengths at the moment of reading, not counters: left out of deltas
GAUGES = frozenset({"backlog_len", "input_qlen", "process_qlen"})
PATH = "/proc/net/softnet_stat"


def parse(text: str) -> dict[int, dict[str, int]]:
    """CPU -> its counters (unnamed always-zero columns dropped; columns a newer kernel adds
    beyond the known ones are kept as ``colN``)."""
    out: dict[int, dict[str, int]] = {}
    for line_no, line in enumerate(text.splitlines()):
        values = [int(v, 16) for v in line.split()]
        if not values:
            continue
        row: dict[str, int] = {}
        for i, value in enumerate(values):
            name = COLUMNS[i] if i < len(COLUMNS) else f"col{i}"
            if name:
                row[name] = value
        cpu = row.pop("cpu", line_no)
        out[cpu] = row
    return out


def read(path: str = PATH) -> dict[int, dict[str, int]]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return parse(b"".join(chunks).decode())


def delta(before: dict[int, dict[str, int]],
          after: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
    """Per CPU, the counters that changed (CPUs that came online count from 0; the columns
    are 32-bit and wrap)."""
    out: dict[int, dict[str, int]] = {}
    for cpu, row in after.items():
        base = before.get(cpu, {})
        changed = {name: (value - base.get(name, 0)) & 0xFFFFFFFF
                   for name, value in row.items()
                   if name not in GAUGES and value != base.get(name, 0)}
        if changed:
            out[cpu] = changed
    return out
