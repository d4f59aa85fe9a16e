"""What the stack saw during a case, as plain typed data: JSON in and out (`as_dict`,
`from_dict`) and one line per kind of evidence for failure reports (`render`).

Only changes are kept: a counter that did not move, a device that saw nothing, a CPU whose
backlog was idle are not there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: DropRecord.reason where the kernel's tracepoint has no reason (< 5.17)
NO_REASON = None


@dataclass(frozen=True)
class DeviceDelta:
    name: str
    #: IFLA_INFO_KIND: veth, netkit... ("" for lo and NICs)
    kind: str
    #: IFLA_STATS64 changes (rx_dropped, tx_packets...)
    stats: dict[str, int]
    #: driver statistics changes (ethtool -S: rx_queue_0_xdp_drops...)
    driver: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "stats": self.stats,
                "driver": self.driver}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceDelta:
        return cls(str(d["name"]), str(d.get("kind", "")), _ints(d.get("stats", {})),
                   _ints(d.get("driver", {})))


@dataclass(frozen=True)
class NetnsDelta:
    """The changes in one network namespace."""

    #: "case" (the case's own namespace), the /run/netns name, or "root"
    label: str
    cookie: int
    inum: int
    #: protocol counters, "Group.Field" -> change (Udp.NoPorts, TcpExt.TCPAbortOnData)
    counters: dict[str, int]
    devices: list[DeviceDelta] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.counters and not self.devices

    def device(self, name: str) -> DeviceDelta | None:
        return next((d for d in self.devices if d.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "cookie": self.cookie, "inum": self.inum,
                "counters": self.counters, "devices": [d.as_dict() for d in self.devices]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetnsDelta:
        return cls(str(d["label"]), int(d.get("cookie", 0)), int(d.get("inum", 0)),
                   _ints(d.get("counters", {})),
                   [DeviceDelta.from_dict(x) for x in d.get("devices", [])])


@dataclass(frozen=True)
class DropRecord:
    """Packets freed as drops at one place for one reason in one namespace."""

    #: label of the namespace (see NetnsDelta.label), "netns:INUM" for one the case did not
    #: name, "-" when the skb had neither socket nor device
    netns: str
    #: the kernel's name without SKB_DROP_REASON_ (NO_SOCKET), None where the kernel's
    #: tracepoint has no reason
    reason: str | None
    #: the code that freed it, "function+0xoff" (or the address where it has no symbol)
    location: str
    count: int
    reason_code: int | None = None
    netns_cookie: int = 0
    netns_inum: int = 0

    def text(self) -> str:
        what = self.reason if self.reason is not None else "drop"
        return f"{self.count} x {what} in ns {self.netns} (at {self.location})"

    def as_dict(self) -> dict[str, Any]:
        return {"netns": self.netns, "reason": self.reason, "location": self.location,
                "count": self.count, "reason_code": self.reason_code,
                "netns_cookie": self.netns_cookie, "netns_inum": self.netns_inum}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DropRecord:
        code = d.get("reason_code")
        return cls(str(d["netns"]), None if d.get("reason") is None else str(d["reason"]),
                   str(d.get("location", "")), int(d["count"]),
                   None if code is None else int(code), int(d.get("netns_cookie", 0)),
                   int(d.get("netns_inum", 0)))


@dataclass
class Evidence:
    """The stack's view of one case."""

    namespaces: list[NetnsDelta] = field(default_factory=list)
    #: CPU -> /proc/net/softnet_stat counter changes (global: every namespace's traffic)
    softnet: dict[int, dict[str, int]] = field(default_factory=dict)
    drops: list[DropRecord] = field(default_factory=list)
    #: "reason" (drops by reason), "location" (the kernel's tracepoint has no reason: by
    #: location only) or "unavailable: WHY"
    drops_mode: str = "unavailable: not collected"
    #: drops that happened after the previous case's verdict in that case's namespaces
    #: (their asynchronous teardown): the previous case's, not this one's
    previous_drops: list[DropRecord] = field(default_factory=list)
    #: what could not be collected, in words
    notes: list[str] = field(default_factory=list)
    #: what collecting cost (before + after), milliseconds
    cost_ms: float = 0.0

    def netns(self, label: str) -> NetnsDelta | None:
        return next((n for n in self.namespaces if n.label == label), None)

    def counter(self, name: str, netns: str = "case") -> int:
        """The change of counter `name` (Udp.NoPorts) in namespace `netns`; 0 if none."""
        ns = self.netns(netns)
        return ns.counters.get(name, 0) if ns else 0

    def device_stat(self, device: str, name: str, netns: str = "case") -> int:
        """The change of IFLA_STATS64 field (or, failing that, driver statistic) `name`."""
        ns = self.netns(netns)
        dev = ns.device(device) if ns else None
        if dev is None:
            return 0
        return dev.stats.get(name, dev.driver.get(name, 0))

    def drop_count(self, reason: str | None = None, netns: str | None = None) -> int:
        """Drops with `reason` (any reason: None) in namespace `netns` (any: None)."""
        return sum(d.count for d in self.drops
                   if (reason is None or d.reason == reason)
                   and (netns is None or d.netns == netns))

    def as_dict(self) -> dict[str, Any]:
        return {"namespaces": [n.as_dict() for n in self.namespaces],
                "softnet": {str(cpu): row for cpu, row in sorted(self.softnet.items())},
                "drops": [d.as_dict() for d in self.drops],
                "drops_mode": self.drops_mode,
                "previous_drops": [d.as_dict() for d in self.previous_drops],
                "notes": list(self.notes), "cost_ms": round(self.cost_ms, 3)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        return cls([NetnsDelta.from_dict(x) for x in d.get("namespaces", [])],
                   {int(cpu): _ints(row) for cpu, row in d.get("softnet", {}).items()},
                   [DropRecord.from_dict(x) for x in d.get("drops", [])],
                   str(d.get("drops_mode", "unavailable: not collected")),
                   [DropRecord.from_dict(x) for x in d.get("previous_drops", [])],
                   [str(x) for x in d.get("notes", [])], float(d.get("cost_ms", 0.0)))


def _ints(d: dict[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in d.items()}


def _changes(values: dict[str, int]) -> str:
    return ", ".join(f"{name} {value:+d}" for name, value in values.items())


def _device_text(dev: DeviceDelta) -> str:
    parts = [_changes(dev.stats)] if dev.stats else []
    if dev.driver:
        parts.append(f"(driver: {_changes(dev.driver)})")
    return f"dev {dev.name} " + " ".join(parts)


def render_lines(ev: Evidence) -> list[str]:
    """One line per kind of evidence: drops, each namespace, softnet, notes."""
    lines: list[str] = []
    if ev.drops:
        ordered = sorted(ev.drops, key=lambda d: (-d.count, d.netns, d.reason or ""))
        lines.append("drops: " + ", ".join(d.text() for d in ordered))
    elif not ev.drops_mode.startswith("unavailable"):
        lines.append("drops: none")
    for ns in ev.namespaces:
        if ns.empty:
            continue
        parts = [_changes(ns.counters)] if ns.counters else []
        parts += [_device_text(dev) for dev in ns.devices]
        lines.append(f"ns {ns.label}: " + "; ".join(parts))
    if ev.softnet:
        lines.append("softnet: " + "; ".join(f"cpu{cpu} {_changes(row)}"
                                             for cpu, row in sorted(ev.softnet.items())))
    if ev.previous_drops:
        lines.append("drops after the previous case (its teardown): "
                     + ", ".join(d.text() for d in ev.previous_drops))
    if ev.drops_mode.startswith("unavailable"):
        lines.append(f"drop reasons {ev.drops_mode}")
    lines += [f"note: {note}" for note in ev.notes]
    return lines


def render(ev: Evidence | dict[str, Any]) -> str:
    """The evidence as text for a failure report (accepts `as_dict()` output too)."""
    if isinstance(ev, dict):
        ev = Evidence.from_dict(ev)
    return "\n".join(render_lines(ev))
