"""A network namespace's counters, read the way `nstat` and `ip -s link` read them: the
protocol MIBs of /proc/net/snmp, /proc/net/netstat and /proc/net/snmp6, and each device's
IFLA_STATS64 (struct rtnl_link_stats64), as a `Snapshot`; two snapshots give a `Delta`.

    before = snapshot("kmx-ns-1")
    ...traffic...
    delta = snapshot("kmx-ns-1").minus(before)
    assert delta.mib("Tcp", "InSegs") == 0, delta.describe()
    assert delta.link("veth0", "rx_packets") == 10

Formats. /proc/net/snmp and /proc/net/netstat are pairs of lines, a header and its values,
both starting with the group name (``Ip: Forwarding DefaultTTL ...`` then ``Ip: 1 64
...``); values are signed (Tcp MaxConn is -1). /proc/net/snmp6 is one ``NameValue`` pair
per line (``Ip6InReceives  42``, ``Icmp6InType133  1``); its names are split into the
group prefix (Ip6, Icmp6, Udp6, UdpLite6) and the rest. Groups are disjoint across the
three files, so one mapping holds them all: group -> counter -> value.

Namespaces: /proc/net is the namespace of the process's main thread; the files are read
through /proc/thread-self/net inside `run_in_netns`, so they are the named namespace's
(the same for rtnetlink). A file the kernel does not have (snmp6 without IPv6) reads as
no groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .netns import run_in_netns

#: the files read, relative to /proc/thread-self/net
MIB_FILES = ("snmp", "netstat", "snmp6")
#: struct rtnl_link_stats64 fields (include/uapi/linux/if_link.h), in order
LINK_FIELDS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
    "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
    "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
    "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
    "rx_nohandler",
)
_SNMP6_GROUP = re.compile(r"(UdpLite6|Icmp6|Udp6|Ip6)(.+)")

Mib = dict[str, dict[str, int]]


class CounterFormatError(ValueError):
    """A counters file that is not laid out as the kernel writes it."""


def parse_paired(text: str, source: str = "snmp") -> Mib:
    """/proc/net/snmp or /proc/net/netstat text: group -> counter -> value."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise CounterFormatError(f"{source}: {len(lines)} lines, not header/value pairs")
    out: Mib = {}
    for head, values in zip(lines[::2], lines[1::2], strict=True):
        group, _, names = head.partition(":")
        vgroup, _, numbers = values.partition(":")
        if not group or group != vgroup:
            raise CounterFormatError(f"{source}: header {group!r} followed by {vgroup!r}")
        keys, nums = names.split(), numbers.split()
        if len(keys) != len(nums):
            raise CounterFormatError(f"{source}: {group} has {len(keys)} names and "
                                     f"{len(nums)} values")
        try:
            parsed = {k: int(v) for k, v in zip(keys, nums, strict=True)}
        except ValueError as exc:
            raise CounterFormatError(f"{source}: {group}: {exc}") from None
        out.setdefault(group, {}).update(parsed)
    return out


def parse_snmp6(text: str) -> Mib:
    """/proc/net/snmp6 text: Ip6/Icmp6/Udp6/UdpLite6 -> counter -> value (a name with no
    known prefix goes to group "Snmp6" whole)."""
    out: Mib = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise CounterFormatError(f"snmp6: {line!r} is not 'Name value'")
        name, value = parts
        try:
            number = int(value)
        except ValueError:
            raise CounterFormatError(f"snmp6: {line!r}: value is not a number") from None
        m = _SNMP6_GROUP.fullmatch(name)
        group, key = (m.group(1), m.group(2)) if m else ("Snmp6", name)
        out.setdefault(group, {})[key] = number
    return out


@dataclass(frozen=True)
class LinkStats:
    """One device's IFLA_STATS64, by field name (LINK_FIELDS; 0 where the kernel sent
    none, e.g. rx_nohandler before 4.6)."""

    ifname: str
    ifindex: int
    values: Mapping[str, int]

    def __getitem__(self, name: str) -> int:
        if name not in LINK_FIELDS:
            raise KeyError(f"{name!r} is not a rtnl_link_stats64 field")
        return int(self.values.get(name, 0))


@dataclass(frozen=True)
class Snapshot:
    """A namespace's protocol MIBs and device counters at one moment."""

    netns: str | None
    mibs: Mib = field(default_factory=dict)
    links: Mapping[str, LinkStats] = field(default_factory=dict)

    def mib(self, group: str, name: str) -> int:
        """One protocol counter; KeyError naming what exists when it is not there."""
        try:
            return self.mibs[group][name]
        except KeyError:
            have = sorted(self.mibs.get(group, {}))[:20] if group in self.mibs else sorted(
                self.mibs)
            raise KeyError(f"no counter {group}.{name} (have: {have})") from None

    def minus(self, before: Snapshot) -> Delta:
        """What changed since `before`."""
        return delta(before, self)


@dataclass(frozen=True)
class Delta:
    """Differences between two snapshots of the same namespace (after - before); counters
    that appeared since count from 0, those that vanished are ignored."""

    mibs: Mib
    links: dict[str, dict[str, int]]

    def mib(self, group: str, name: str) -> int:
        return self.mibs.get(group, {}).get(name, 0)

    def link(self, ifname: str, name: str) -> int:
        if name not in LINK_FIELDS:
            raise KeyError(f"{name!r} is not a rtnl_link_stats64 field")
        return self.links.get(ifname, {}).get(name, 0)

    def changed(self, groups: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """The non-zero protocol deltas (of `groups` only, if given)."""
        wanted = None if groups is None else set(groups)
        return {g: {k: v for k, v in c.items() if v}
                for g, c in self.mibs.items()
                if (wanted is None or g in wanted) and any(c.values())}

    def changed_links(self) -> dict[str, dict[str, int]]:
        """The non-zero device deltas."""
        return {d: {k: v for k, v in c.items() if v}
                for d, c in self.links.items() if any(c.values())}

    def describe(self) -> str:
        """Everything that changed, one group or device per line (for assertion text)."""
        lines = [f"{g}: " + " ".join(f"{k}={v:+d}" for k, v in sorted(c.items()))
                 for g, c in sorted(self.changed().items())]
        lines += [f"link {d}: " + " ".join(f"{k}={v:+d}" for k, v in sorted(c.items()))
                  for d, c in sorted(self.changed_links().items())]
        return "\n".join(lines) or "(nothing changed)"


def delta(before: Snapshot, after: Snapshot) -> Delta:
    """after - before, counter by counter."""
    mibs: Mib = {}
    for group, counters in after.mibs.items():
        old = before.mibs.get(group, {})
        mibs[group] = {k: v - old.get(k, 0) for k, v in counters.items()}
    links: dict[str, dict[str, int]] = {}
    for name, stats in after.links.items():
        prev = before.links.get(name)
        links[name] = {f: stats[f] - (prev[f] if prev is not None else 0)
                       for f in LINK_FIELDS}
    return Delta(mibs, links)


def read_mibs(netns: str | None = None) -> Mib:
    """Every protocol MIB of namespace `netns` (None: the calling thread's)."""
    out: Mib = {}
    with run_in_netns(netns):
        for name in MIB_FILES:
            try:
                with open(f"/proc/thread-self/net/{name}") as fh:
                    text = fh.read()
            except FileNotFoundError:
                continue
            parsed = parse_snmp6(text) if name == "snmp6" else parse_paired(text, name)
            for group, counters in parsed.items():
                out.setdefault(group, {}).update(counters)
    return out


def link_stats_of(msg: Any) -> LinkStats:
    """A pyroute2 RTM_NEWLINK message's IFLA_STATS64 as LinkStats."""
    stats = msg.get_attr("IFLA_STATS64")
    values = {f: int(stats.get(f) or 0) for f in LINK_FIELDS} if stats is not None else {}
    return LinkStats(str(msg.get_attr("IFLA_IFNAME")), int(msg["index"]), values)


def read_links(netns: str | None = None,
               ifnames: Iterable[str] | None = None) -> dict[str, LinkStats]:
    """IFLA_STATS64 of every device of `netns` (or only `ifnames`), by name."""
    from pyroute2 import IPRoute

    wanted = None if ifnames is None else set(ifnames)
    with run_in_netns(netns), IPRoute() as ipr:
        msgs = ipr.link("dump")
    out = {}
    for msg in msgs:
        stats = link_stats_of(msg)
        if wanted is None or stats.ifname in wanted:
            out[stats.ifname] = stats
    return out


def snapshot(netns: str | None = None, *, links: bool = True,
             ifnames: Iterable[str] | None = None) -> Snapshot:
    """The MIBs and (with `links`) device counters of `netns` now."""
    mibs = read_mibs(netns)
    devs = read_links(netns, ifnames) if links else {}
    return Snapshot(netns, mibs, devs)
