"""Report writers: JUnit XML (junit-xml), Markdown compatibility matrix. Read-only on results."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from junit_xml import TestCase, TestSuite, to_xml_report_string

from .results import CaseResult, RunResults, Status


def _junit_case(c: CaseResult) -> TestCase:
    classname, _, name = c.nodeid.rpartition("::")
    stdout = "\n".join(filter(None, [f"observed: {c.observed}" if c.observed else "",
                                     c.output]))
    tc = TestCase(name=name, classname=classname.replace("/", ".").removesuffix(".py"),
                  elapsed_sec=c.duration, stdout=stdout or None)
    if c.status is Status.SKIP:
        tc.add_skipped_info(message=c.message)
    elif c.status is Status.FAIL:
        tc.add_failure_info(message=c.message, output=c.details)
    elif c.status is Status.CRASH:
        tc.add_failure_info(message=c.message, output=c.details, failure_type="kernel-crash")
    elif c.status is Status.ERROR:
        tc.add_error_info(message=c.message, output=c.details)
    return tc


def junit_xml(results: RunResults) -> str:
    """One <testsuite> per kernel; kernel release, package, accelerator and probes as
    properties so a CI dashboard can tell why a case skipped on a kernel."""
    suites = []
    labels = list(results.kernels) + sorted(
        {c.kernel for c in results.cases} - set(results.kernels))
    for label in labels:
        info = results.kernel(label)
        props: dict[str, str] = {
            "kernel.label": label, "kernel.spec": info.spec, "kernel.origin": info.origin,
            "kernel.release": info.release, "kernel.package_version": info.package_version,
            "accelerator": info.accel, "accelerator.reason": info.accel_reason,
            "boots": str(len(info.boots)),
            "vm.cpus": str(info.vcpus or ""), "vm.memory": info.memory,
        }
        for feature, probe in sorted(info.probes.items()):
            state = "supported" if probe.get("supported") else "unsupported"
            props[f"probe.{feature}"] = f"{state}: {probe.get('detail', '')}"
        cases = [_junit_case(c) for c in results.cases if c.kernel == label]
        suites.append(TestSuite(f"kmatrix.{label}", cases, properties=props))
    return str(to_xml_report_string(suites))


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


def write_all(results: RunResults, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"junit": out_dir / "junit.xml", "matrix": out_dir / "matrix.md",
             "json": out_dir / "results.json"}
    paths["junit"].write_text(junit_xml(results))
    paths["matrix"].write_text(markdown_matrix(results))
    results.write_json(paths["json"])
    if results.observations():
        paths["observed"] = out_dir / "observed.md"
        paths["observed"].write_text(observed_markdown(results))
    return paths
