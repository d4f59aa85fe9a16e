"""The Markdown reports: matrix.md (kernel x feature, probes, observed counts) and observed.md."""

from __future__ import annotations

from collections import Counter, defaultdict

from ..model import RunResults, Status


def _cell(counts: dict[Status, int]) -> str:
    if not counts:
        return "-"
    parts = []
    for status in (Status.PASS, Status.FAIL, Status.CRASH, Status.ERROR, Status.SKIP):
        if counts.get(status):
            parts.append(f"{counts[status]} {status.symbol}")
    return ", ".join(parts)


def markdown_matrix(results: RunResults) -> str:
    """Kernel x feature: pass/fail/skip counts per cell, then the probe table."""
    labels = list(results.kernels) or sorted({c.kernel for c in results.cases})
    lines = ["# kmatrix compatibility matrix", ""]
    lines.append("| kernel | release | accel | vCPUs | boots | boot s |")
    lines.append("|---|---|---|---|---|---|")
    for label in labels:
        k = results.kernel(label)
        boot_s = ", ".join(f"{v:.1f}" for v in k.boots.values()) or "-"
        release = k.release or "-"
        if k.boot_error:
            release += f" - did not boot: {k.boot_error.splitlines()[0]}"
        lines.append(f"| {label} | {release} | {k.accel or '-'} | {k.vcpus or '-'} | "
                     f"{len(k.boots)} | {boot_s} |")
    lines += ["", "## Cases (feature x kernel)", ""]
    lines.append("| feature | " + " | ".join(labels) + " |")
    lines.append("|---" * (len(labels) + 1) + "|")
    matrix = results.matrix()
    for feature in sorted(matrix):
        row = [_cell(matrix[feature].get(label, {})) for label in labels]
        lines.append(f"| {feature} | " + " | ".join(row) + " |")
    lines += _observed_counts(results, labels)
    probe_names = sorted({p for label in labels for p in results.kernel(label).probes})
    if probe_names:
        lines += ["", "## Feature probes (by trying, in the booted kernel)", ""]
        lines.append("| probe | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for name in probe_names:
            row = []
            for label in labels:
                p = results.kernel(label).probes.get(name)
                if p is None:
                    row.append("-")
                elif p.get("supported"):
                    row.append("yes")
                else:
                    detail = str(p.get("detail", "")).replace("|", "/")
                    row.append(f"no ({detail[:160]})")
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    bad = [c for c in results.cases if c.status >= Status.FAIL]
    if bad:
        lines += ["", "## Not passing", ""]
        for c in bad:
            lines.append(f"- `{c.nodeid}` {c.status.symbol}: {c.message.splitlines()[0][:160]}"
                         if c.message else f"- `{c.nodeid}` {c.status.symbol}")
    return "\n".join(lines) + "\n"


def _observed_counts(results: RunResults, labels: list[str]) -> list[str]:
    """Per feature, how many cases saw each behaviour on each kernel."""
    observed = results.observations()
    if not observed:
        return []
    lines = ["", "## Observed behaviour (cases per kernel; observed.md lists each case)", ""]
    lines.append("| feature: observed | " + " | ".join(labels) + " |")
    lines.append("|---" * (len(labels) + 1) + "|")
    for feature in sorted(observed):
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for per_kernel in observed[feature].values():
            for label, what in per_kernel.items():
                counts[what][label] += 1
        for what in sorted(counts):
            row = [str(counts[what].get(label, "-")) for label in labels]
            lines.append(f"| {feature}: {_md(what)} | " + " | ".join(row) + " |")
    return lines


def observed_markdown(results: RunResults) -> str:
    """Every case that recorded what it observed, one row per case, one column per kernel;
    the cases whose behaviour differs between kernels come first."""
    labels = list(results.kernels) or sorted({c.kernel for c in results.cases})
    lines = ["# kmatrix: observed behaviour per case and kernel", ""]
    for feature, cases in sorted(results.observations().items()):
        differ = {cid: per for cid, per in cases.items()
                  if len({per.get(label, "-") for label in labels}) > 1}
        same = {cid: per for cid, per in cases.items() if cid not in differ}
        for title, group in ((f"{feature}: differs between kernels", differ),
                             (f"{feature}: the same on every kernel", same)):
            if not group:
                continue
            lines += [f"## {title} ({len(group)})", ""]
            lines.append("| case | " + " | ".join(labels) + " |")
            lines.append("|---" * (len(labels) + 1) + "|")
            for cid in sorted(group):
                row = [_md(group[cid].get(label, "-")) for label in labels]
                lines.append(f"| `{cid.split('::', 1)[-1]}` | " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "/")
