"""The Markdown reports: matrix.md (kernel x feature, probes, observed counts) and observed.md."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ...errors import ConfigError
from ...kernel_log import find_problems
from ...matrix.features import Feature, first_supported, load_features
from ..model import RunResults, Status


def _cell(counts: dict[Status, int]) -> str:
    if not counts:
        return "-"
    parts = []
    for status in (Status.PASS, Status.FLAKY, Status.FAIL, Status.CRASH, Status.ERROR,
                   Status.SKIP):
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
    lines += _probe_table(results, labels)
    lines += _crosscheck(results, labels)
    lines += _kernel_problems(results, labels)
    bad = [c for c in results.cases if c.status >= Status.FLAKY]
    if bad:
        lines += ["", "## Not passing", ""]
        for c in bad:
            lines.append(f"- `{c.nodeid}` {c.status.symbol}: {c.message.splitlines()[0][:160]}"
                         if c.message else f"- `{c.nodeid}` {c.status.symbol}")
    return "\n".join(lines) + "\n"


def probe_cell(probe: dict[str, Any] | None, exp: dict[str, Any] | None) -> str:
    """One kernel's answer to one probe, held to its expectation."""
    if probe is None:
        return "-"
    detail = str(probe.get("detail", "")).splitlines()[0].replace("|", "/")[:160] \
        if probe.get("detail") else ""
    status = probe.get("status") or ("supported" if probe.get("supported") else "unsupported")
    if status == "error":
        return f"**PROBE ERROR** ({detail})"
    if status == "supported":
        if exp is not None and not exp.get("expected"):
            return f"yes (not expected: {exp.get('state')}; a backport?)"
        return "yes"
    if exp is not None and exp.get("expected"):
        return f"**NO, expected** ({detail})"
    why = f"; {exp.get('state')}" if exp is not None else ""
    return f"no ({detail}{why})"


def _probe_table(results: RunResults, labels: list[str]) -> list[str]:
    """Probes x kernels, with the feature table's since/Kconfig and the first kernel of the
    run where it works (comparable with bcc's kernel-versions.md)."""
    names = sorted({p for label in labels for p in results.kernel(label).probes})
    if not names:
        return []
    table = _feature_table()
    releases = {label: results.kernel(label).release for label in labels}
    lines = ["", "## Feature probes (by trying, in the booted kernel), held to "
             "images/features.toml", ""]
    lines.append("| feature | since | Kconfig | first kernel here | "
                 + " | ".join(labels) + " |")
    lines.append("|---" * (len(labels) + 4) + "|")
    for name in names:
        f = table.get(name)
        first = first_supported({lb: results.kernel(lb).probes for lb in labels},
                                releases, name) or "-"
        row = [probe_cell(results.kernel(lb).probes.get(name), results.kernel(lb).expect.get(name))
               for lb in labels]
        since = f.since_text if f else "?"
        kconfig = ", ".join(s.removeprefix("CONFIG_") for s in f.kconfig) if f else "?"
        lines.append(f"| {name} | {since} | {kconfig} | {first} | " + " | ".join(row) + " |")
    return lines


def _feature_table() -> dict[str, Feature]:
    try:
        return load_features()
    except ConfigError:
        return {}


def _kernel_problems(results: RunResults, labels: list[str]) -> list[str]:
    """WARN/BUG/oops the kernel printed outside any case (while the probes ran)."""
    out: list[str] = []
    for label in labels:
        for problem in find_problems(results.kernel(label).probe_dmesg):
            out.append(f"- {label}, during the probes: {problem.headline}")
    return ["", "## Kernel problems outside the cases", "", *out] if out else []


def _crosscheck(results: RunResults, labels: list[str]) -> list[str]:
    """Where bpftool feature probe and our probes disagree (a human reads these)."""
    out: list[str] = []
    for label in labels:
        check = results.kernel(label).crosscheck
        if not check:
            continue
        if not check.get("ran"):
            out.append(f"- {label}: not cross-checked: {check.get('detail', '')}")
        for line in check.get("disagreements", []):
            out.append(f"- {label}: {line}")
    if not out:
        return []
    return ["", "## Probes vs bpftool feature probe", "", *out]


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
