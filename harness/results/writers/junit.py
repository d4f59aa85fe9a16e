"""junit.xml (via junit-xml): one <testsuite> per kernel, probes and VM facts as properties;
per case, what the stack counted and dropped while it ran (testcase <properties>, as
pytest's own record_property writes them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ..model import CaseResult, RunResults, Status


def evidence_properties(evidence: dict[str, Any]) -> dict[str, str]:
    """A case's stack evidence as testcase properties: ``evidence.<ns>.<Counter>`` (+N),
    ``evidence.<ns>.dev.<device>.<stat>``, ``evidence.drops`` ("3 x NO_SOCKET in ns case,
    ..."), ``evidence.drops_mode``."""
    from ...guest.evidence.model import Evidence

    if not evidence:
        return {}
    ev = Evidence.from_dict(evidence)
    out: dict[str, str] = {}
    for ns in ev.namespaces:
        for name, value in ns.counters.items():
            out[f"evidence.{ns.label}.{name}"] = f"{value:+d}"
        for dev in ns.devices:
            for name, value in {**dev.driver, **dev.stats}.items():
                out[f"evidence.{ns.label}.dev.{dev.name}.{name}"] = f"{value:+d}"
    if ev.drops:
        ordered = sorted(ev.drops, key=lambda d: (-d.count, d.netns, d.reason or ""))
        out["evidence.drops"] = ", ".join(d.text() for d in ordered)
    out["evidence.drops_mode"] = ev.drops_mode
    return out


def _with_case_properties(xml: str, results: RunResults, labels: list[str]) -> str:
    """Insert each case's <properties> (evidence) into its <testcase> (junit-xml has none)."""
    props = {(c.kernel, c.nodeid): evidence_properties(c.evidence) for c in results.cases}
    if not any(props.values()):
        return xml
    root = ET.fromstring(xml)
    for suite, label in zip(root.iter("testsuite"), labels, strict=True):
        cases = [c for c in results.cases if c.kernel == label]
        for element, case in zip(suite.iter("testcase"), cases, strict=True):
            mine = props[(case.kernel, case.nodeid)]
            if mine:
                box = ET.Element("properties")
                for name, value in mine.items():
                    ET.SubElement(box, "property", name=name, value=value)
                element.insert(0, box)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


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
            state = probe.get("status") or (
                "supported" if probe.get("supported") else "unsupported")
            props[f"probe.{feature}"] = f"{state}: {probe.get('detail', '')}"
        for feature, exp in sorted(info.expect.items()):
            word = "expected" if exp.get("expected") else "not expected"
            props[f"expect.{feature}"] = f"{word} ({exp.get('state')}): {exp.get('reason')}"
        cases = [_junit_case(c) for c in results.cases if c.kernel == label]
        suites.append(TestSuite(f"kmatrix.{label}", cases, properties=props))
    return _with_case_properties(str(to_xml_report_string(suites)), results, labels)
