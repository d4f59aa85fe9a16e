"""Reading kernel output: panics, oopses, BUGs and WARNs in a console log or dmesg records.

Pure text logic on the host: the VM's console log, and the kernel messages the guest agent
sends back with each verdict. Unit-tested on saved logs in tests/unit/data/.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """Ordered: a panic outranks an oops, which outranks a WARN."""

    WARN = 1
    BUG = 2
    OOPS = 3
    PANIC = 4


# (severity, pattern) -- patterns match the kernel's own wording after the "[ time]" prefix
_PATTERNS: Sequence[tuple[Severity, re.Pattern[str]]] = [
    (Severity.PANIC, re.compile(r"Kernel panic - not syncing")),
    (Severity.OOPS, re.compile(r"Oops: |general protection fault|BUG: unable to handle")),
    (Severity.BUG, re.compile(
        r"kernel BUG at |BUG: (?!unable to handle)|UBSAN: |KASAN: |KFENCE: "
        r"|refcount_t: |list_(add|del) corruption|INFO: task .* blocked for more than"
        r"|rcu: INFO: rcu_.* detected stalls|watchdog: BUG: soft lockup")),
    (Severity.WARN, re.compile(r"WARNING: CPU: \d+ PID: \d+|WARNING: .* at .*\+0x")),
]

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
#: lines following a problem's headline that belong to its report
_CONTEXT_LINES = 40
_END_MARKERS = ("---[ end trace", "---[ end Kernel panic")


@dataclass(frozen=True)
class Problem:
    severity: Severity
    #: the line that matched, without timestamp
    headline: str
    #: the headline and the report lines after it (call trace, registers), as printed
    text: str


def strip_timestamp(line: str) -> str:
    return _TIMESTAMP.sub("", line)


def classify(line: str) -> Severity | None:
    body = strip_timestamp(line)
    for severity, pattern in _PATTERNS:
        if pattern.search(body):
            return severity
    return None


def find_problems(lines: Iterable[str]) -> list[Problem]:
    """Every problem report in `lines`, each with up to _CONTEXT_LINES of its report."""
    all_lines = list(lines)
    problems: list[Problem] = []
    i = 0
    while i < len(all_lines):
        severity = classify(all_lines[i])
        if severity is None:
            i += 1
            continue
        end = min(len(all_lines), i + _CONTEXT_LINES)
        for j in range(i + 1, end):
            if any(m in all_lines[j] for m in _END_MARKERS):
                end = j + 1
                break
        text = "\n".join(all_lines[i:end])
        problems.append(Problem(severity, strip_timestamp(all_lines[i]).strip(), text))
        i += 1
    return problems


def worst(problems: Sequence[Problem]) -> Problem | None:
    return max(problems, key=lambda p: p.severity) if problems else None


def panic_report(console: str) -> str:
    """The panic/oops text from a console log (the worst problem with its context), or ''."""
    top = worst(find_problems(console.splitlines()))
    if top is None:
        return ""
    # for a panic, the oops/BUG that caused it comes first: show from the earliest problem
    problems = find_problems(console.splitlines())
    first = next(p for p in problems if p.severity >= Severity.BUG) if any(
        p.severity >= Severity.BUG for p in problems) else top
    if first is top:
        return top.text
    return f"{first.text}\n...\n{top.text}"


#: what a kernel that cannot mount the guest's root over 9p (or virtiofs) prints
_ROOT_MOUNT_FAILURES = (
    re.compile(r"VFS: Cannot open root device"),
    re.compile(r"Unable to mount root fs"),
    re.compile(r"mount: mounting \S+ on /\S* failed: (No such device|Invalid argument)"),
    re.compile(r"virtme-ng-init: .*(mount|9p).*(failed|No such device|unknown filesystem)",
               re.I),
    re.compile(r"unknown filesystem type '(9p|virtiofs)'"),
)


def root_mount_failure(console: str) -> str:
    """The console line saying the kernel could not mount the guest's root filesystem
    (no 9p/virtiofs support), or ""."""
    for line in console.splitlines():
        if any(p.search(line) for p in _ROOT_MOUNT_FAILURES):
            return strip_timestamp(line).strip()
    return ""
