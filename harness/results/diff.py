"""What changed between two runs (`kmatrix diff RUN_A RUN_B`), per kernel label: new
failures, fixed cases, other verdict changes, cases added and removed, newly supported and
newly unsupported features (the probes).

`diff_runs` is pure and returns a typed `RunDiff` for any writer (`diff_markdown` here, the
HTML matrix); kernels are matched by label, cases by node id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..nodeid import case_id
from .model import CaseResult, KernelInfo, RunResults, Status


@dataclass(frozen=True)
class CaseChange:
    """One (case, kernel) whose verdict differs, or that only one run has."""

    kernel: str
    nodeid: str
    #: verdict in run A (None: not in run A)
    before: Status | None
    #: verdict in run B (None: not in run B)
    after: Status | None
    #: first line of the message of the run that has the case (B's when both do)
    message: str = ""

    @property
    def case(self) -> str:
        """The case without its kernel: `cases/test_x.py::test_y[a]`."""
        return case_id(self.nodeid, self.kernel)

    @property
    def transition(self) -> str:
        """`pass -> fail`, `- -> fail` (added), `skip -> -` (removed)."""
        return f"{_symbol(self.before)} -> {_symbol(self.after)}"


@dataclass(frozen=True)
class ProbeChange:
    """A feature probe of one kernel that answered differently."""

    kernel: str
    feature: str
    #: "supported", "unsupported", "error", or "" (not probed in that run)
    before: str
    after: str
    #: the probe's detail (run B's; run A's when B has none), e.g. the errno
    detail: str = ""


@dataclass
class KernelDiff:
    """One kernel label's changes. A label in only one run has every case added (or
    removed) and no probe changes."""

    label: str
    #: exact kernel in run A and run B (package version or release; "" when absent)
    version_before: str = ""
    version_after: str = ""
    #: failing in B (fail, crash, error), not failing in A or not in A
    new_failures: list[CaseChange] = field(default_factory=list)
    #: failing in A, passing in B
    fixed: list[CaseChange] = field(default_factory=list)
    #: any other verdict change (pass -> skip, fail -> error, skip -> pass ...)
    changed: list[CaseChange] = field(default_factory=list)
    added: list[CaseChange] = field(default_factory=list)
    removed: list[CaseChange] = field(default_factory=list)
    newly_supported: list[ProbeChange] = field(default_factory=list)
    newly_unsupported: list[ProbeChange] = field(default_factory=list)
    #: other probe changes (unsupported <-> error, a probe only one run has)
    probes_changed: list[ProbeChange] = field(default_factory=list)
    #: cases of both runs with the same verdict
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.new_failures or self.fixed or self.changed or self.added
                    or self.removed or self.newly_supported or self.newly_unsupported
                    or self.probes_changed or self.version_before != self.version_after)


@dataclass
class RunDiff:
    """Run A -> run B."""

    #: the runs' names (their folders)
    a: str
    b: str
    #: every kernel label of either run: B's order, then those only in A
    kernels: list[KernelDiff] = field(default_factory=list)
    #: labels in one run only (matched by label: a renamed kernel shows here)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def new_failures(self) -> list[CaseChange]:
        return [c for k in self.kernels for c in k.new_failures]

    def changes(self) -> Iterator[CaseChange]:
        """Every verdict change of a case both runs have."""
        for k in self.kernels:
            yield from (c for c in k.new_failures if c.before is not None)
            yield from k.fixed
            yield from k.changed


def _symbol(status: Status | None) -> str:
    return "-" if status is None else status.symbol


def _failing(status: Status | None) -> bool:
    return status is not None and status >= Status.FAIL


def probe_state(probe: dict[str, Any] | None) -> str:
    """"supported", "unsupported", "error", or "" for no probe."""
    if probe is None:
        return ""
    return str(probe.get("status") or ("supported" if probe.get("supported")
                                       else "unsupported"))


def _first_line(text: str) -> str:
    return text.splitlines()[0][:200] if text else ""


def _by_kernel(results: RunResults) -> dict[str, dict[str, CaseResult]]:
    """label -> node id -> its (last) result, in the run's order."""
    out: dict[str, dict[str, CaseResult]] = {label: {} for label in results.kernels}
    for c in results.cases:
        out.setdefault(c.kernel, {})[c.nodeid] = c
    return out


def _version(info: KernelInfo | None) -> str:
    if info is None:
        return ""
    return info.package_version or info.release


def diff_runs(a: RunResults, b: RunResults, name_a: str = "A", name_b: str = "B") -> RunDiff:
    """Run A -> run B, per kernel label."""
    cases_a, cases_b = _by_kernel(a), _by_kernel(b)
    labels = list(cases_b) + [label for label in cases_a if label not in cases_b]
    out = RunDiff(name_a, name_b, only_a=[la for la in cases_a if la not in cases_b],
                  only_b=[lb for lb in cases_b if lb not in cases_a])
    for label in labels:
        before, after = cases_a.get(label, {}), cases_b.get(label, {})
        info_a, info_b = a.kernels.get(label), b.kernels.get(label)
        k = KernelDiff(label, _version(info_a), _version(info_b))
        for nodeid, cb in after.items():
            ca = before.get(nodeid)
            sa = ca.status if ca is not None else None
            change = CaseChange(label, nodeid, sa, cb.status, _first_line(cb.message))
            if ca is None:
                k.added.append(change)
            if _failing(cb.status) and not _failing(sa):
                k.new_failures.append(change)
            elif ca is None:
                continue
            elif sa == cb.status:
                k.unchanged += 1
            elif _failing(sa) and cb.status is Status.PASS:
                k.fixed.append(change)
            else:
                k.changed.append(change)
        k.removed = [CaseChange(label, n, c.status, None, _first_line(c.message))
                     for n, c in before.items() if n not in after]
        if info_a is not None and info_b is not None:
            _probe_changes(k, info_a, info_b)
        out.kernels.append(k)
    return out


def _probe_changes(k: KernelDiff, a: KernelInfo, b: KernelInfo) -> None:
    for feature in list(b.probes) + [f for f in a.probes if f not in b.probes]:
        pa, pb = a.probes.get(feature), b.probes.get(feature)
        sa, sb = probe_state(pa), probe_state(pb)
        if sa == sb:
            continue
        detail = _first_line(str((pb or pa or {}).get("detail", "")))
        change = ProbeChange(k.label, feature, sa, sb, detail)
        if sb == "supported" and sa in ("unsupported", "error"):
            k.newly_supported.append(change)
        elif sa == "supported" and sb in ("unsupported", "error"):
            k.newly_unsupported.append(change)
        else:
            k.probes_changed.append(change)


#: list entries shown per section before "... and N more" (new failures and fixed cases
#: are always listed whole)
LIST_LIMIT = 50


def diff_markdown(d: RunDiff, limit: int = LIST_LIMIT) -> str:
    """The diff as Markdown: a summary table per kernel, then each kernel's lists."""
    lines = ["# kmatrix diff", "", f"- A: `{d.a}`", f"- B: `{d.b}`"]
    if d.only_a or d.only_b:
        lines.append("- kernel labels differ (kernels are matched by label): "
                     + "; ".join(filter(None, [
                         f"only in A: {', '.join(d.only_a)}" if d.only_a else "",
                         f"only in B: {', '.join(d.only_b)}" if d.only_b else ""])))
    lines += ["", "| kernel | new failures | fixed | other changes | added | removed | "
              "newly supported | newly unsupported | unchanged |", "|---" * 9 + "|"]
    for k in d.kernels:
        lines.append(f"| {k.label} | {len(k.new_failures)} | {len(k.fixed)} | "
                     f"{len(k.changed)} | {len(k.added)} | {len(k.removed)} | "
                     f"{len(k.newly_supported)} | {len(k.newly_unsupported)} | "
                     f"{k.unchanged} |")
    if all(k.empty for k in d.kernels):
        return "\n".join([*lines, "", "No differences.", ""])
    for k in d.kernels:
        if k.empty:
            continue
        title = k.label
        if k.version_before != k.version_after:
            title += f" ({k.version_before or '-'} -> {k.version_after or '-'})"
        lines += ["", f"## {title}"]
        lines += _cases("New failures", k.new_failures, None)
        lines += _cases("Fixed", k.fixed, None)
        lines += _probes("Newly supported", k.newly_supported)
        lines += _probes("Newly unsupported", k.newly_unsupported)
        lines += _probes("Other probe changes", k.probes_changed)
        lines += _cases("Other verdict changes", k.changed, limit)
        lines += _cases("Cases added", k.added, limit)
        lines += _cases("Cases removed", k.removed, limit)
    return "\n".join(lines) + "\n"


def _cases(title: str, changes: list[CaseChange], limit: int | None) -> list[str]:
    if not changes:
        return []
    lines = ["", f"### {title} ({len(changes)})", ""]
    for c in changes[:limit]:
        why = f": {c.message}" if c.message and _failing(c.after) else ""
        lines.append(f"- `{c.case}` {c.transition}{why}")
    if limit is not None and len(changes) > limit:
        lines.append(f"- ... and {len(changes) - limit} more")
    return lines


def _probes(title: str, changes: list[ProbeChange]) -> list[str]:
    if not changes:
        return []
    lines = ["", f"### {title} ({len(changes)})", ""]
    for p in changes:
        lines.append(f"- {p.feature}: {p.before or 'not probed'} -> "
                     f"{p.after or 'not probed'}" + (f" ({p.detail})" if p.detail else ""))
    return lines
