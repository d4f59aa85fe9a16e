"""The protocol counters `nstat` reads: /proc/net/snmp, /proc/net/netstat, /proc/net/snmp6.

/proc/net follows the network namespace of the *reading thread* only through
/proc/thread-self/net (/proc/net is /proc/self/net: the thread group leader's), so a thread
that entered a namespace with setns reads that namespace's counters there.

Names are "Group.Field" as in the files: ``Udp.NoPorts``, ``TcpExt.TCPAbortOnData``; the
snmp6 names (``Udp6NoPorts``) are split the same way (``Udp6.NoPorts``). Files list only
what the kernel has: IcmpMsg/Icmp6 per-type fields appear once non-zero, MPTcpExt only with
MPTCP, so a missing name reads as 0.

A snapshot keeps the files' text; `delta` parses only the lines whose values changed (this
runs before and after every case: parsing ~400 counters each time would be most of the
cost).
"""

from __future__ import annotations

import os
import re

#: configuration values and limits, not counters (what a fresh namespace has non-zero)
NOT_COUNTERS = frozenset({"Ip.Forwarding", "Ip.DefaultTTL", "Tcp.RtoAlgorithm", "Tcp.RtoMin",
                          "Tcp.RtoMax", "Tcp.MaxConn"})
#: values that go down as well as up (reported as a signed change)
GAUGES = frozenset({"Tcp.CurrEstab"})

PROC_NET = "/proc/thread-self/net"
FILES = ("snmp", "netstat", "snmp6")

#: file name -> its text
Texts = dict[str, str]

_SNMP6_NAME = re.compile(r"(Ip6|Icmp6|UdpLite6|Udp6)(\w+)")


def _groups(text: str) -> dict[str, tuple[str, str]]:
    """snmp/netstat: group -> (names, values), from pairs of lines ``Group: names...`` /
    ``Group: values...``."""
    out: dict[str, tuple[str, str]] = {}
    lines = text.splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, names = head.partition(":")
        vgroup, _, nums = values.partition(":")
        if group != vgroup:
            raise ValueError(f"unpaired lines {head[:40]!r} / {values[:40]!r}")
        out[group] = (names, nums)
    return out


def _table_delta(before: str, after: str) -> dict[str, int]:
    old = _groups(before)
    out: dict[str, int] = {}
    for group, (names, nums) in _groups(after).items():
        prev = old.get(group)
        if (prev[1] == nums) if prev is not None else not nums.strip(" 0"):
            continue  # unchanged, or new and all zero
        base = dict(zip(prev[0].split(), prev[1].split(), strict=True)) if prev else {}
        for name, value in zip(names.split(), nums.split(), strict=True):
            if value == base.get(name, "0"):
                continue
            key = f"{group}.{name}"
            if key not in NOT_COUNTERS:
                out[key] = int(value) - int(base.get(name, "0"))
    return out


def _snmp6_name(name: str) -> str:
    match = _SNMP6_NAME.fullmatch(name)
    return f"{match[1]}.{match[2]}" if match else name


def _snmp6_values(text: str) -> dict[str, int]:
    """The non-zero values of a snmp6 text ("Name value" lines; most values are 0)."""
    tokens = text.split()
    return {name: int(value) for name, value in zip(tokens[::2], tokens[1::2], strict=True)
            if value != "0"}


def _snmp6_delta(before: str, after: str) -> dict[str, int]:
    if before == after:
        return {}
    base = _snmp6_values(before)
    now = _snmp6_values(after)
    return {_snmp6_name(name): now.get(name, 0) - base.get(name, 0)
            for name in {**base, **now} if now.get(name, 0) != base.get(name, 0)}


def delta(before: Texts | None, after: Texts) -> dict[str, int]:
    """Counters that changed from `before` to `after` (None: a namespace created in between,
    whose counters started at 0), signed."""
    out: dict[str, int] = {}
    for name, text in after.items():
        prev = (before or {}).get(name, "")
        out.update(_snmp6_delta(prev, text) if name == "snmp6" else _table_delta(prev, text))
    return {k: v for k, v in out.items() if v}


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def read(proc_net: str = PROC_NET) -> Texts:
    """The texts of the calling thread's namespace's counter files, now (a missing file,
    e.g. snmp6 without IPv6, is left out)."""
    texts: Texts = {}
    for name in FILES:
        try:
            texts[name] = _read(os.path.join(proc_net, name))
        except FileNotFoundError:
            continue
    return texts
