"""Kernel text addresses to "function+0xoff" from /proc/kallsyms.

Only where the drop counter cannot name locations itself (drop_location_bare on kernels
without bpf_snprintf, < 5.13; or its symbol map is full): reading /proc/kallsyms costs
~60 ms natively (~150 ms with parsing), so it is read once, on the first address to name,
and kept sorted for bisection.
"""

from __future__ import annotations

import bisect

PATH = "/proc/kallsyms"
_TEXT = frozenset("tTwW")


class Symbols:
    """A sorted table of text symbols."""

    def __init__(self, text: str) -> None:
        pairs: list[tuple[int, str]] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in _TEXT:
                addr = int(parts[0], 16)
                if addr:
                    pairs.append((addr, parts[2]))
        pairs.sort()
        self._addrs = [a for a, _ in pairs]
        self._names = [n for _, n in pairs]

    def name(self, address: int) -> str:
        """"func+0xoff" for the nearest symbol at or below `address`, else the hex address
        (no symbols: kptr_restrict hides addresses from this reader)."""
        i = bisect.bisect_right(self._addrs, address) - 1
        if i < 0:
            return f"{address:#x}"
        return f"{self._names[i]}+{address - self._addrs[i]:#x}"


_table: Symbols | None = None


def name(address: int, path: str = PATH) -> str:
    global _table
    if _table is None:
        try:
            with open(path) as fh:
                _table = Symbols(fh.read())
        except OSError:
            _table = Symbols("")
    return _table.name(address)
