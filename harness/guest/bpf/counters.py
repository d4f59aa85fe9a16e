"""Reading the run counters of programs built on bpf/run_trace.h: `hits` (an array,
packets per program number) and `trace` (trace[0] records, then the program numbers in the
order the kernel ran them)."""

from __future__ import annotations

from .maps import Map


def hits(counts: Map) -> dict[int, int]:
    """Packets each program number counted (non-zero entries only)."""
    return {i: n for i in range(counts.max_entries) if (n := counts.lookup_int(i))}


def trace(log: Map) -> list[int]:
    """Program numbers in run order, as many as were recorded (up to the map's room)."""
    length = log.lookup_int(0)
    return [log.lookup_int(i) for i in range(1, min(length, log.max_entries - 1) + 1)]
