"""junit.xml (via junit-xml): one <testsuite> per kernel, probes and VM facts as properties."""

from __future__ import annotations

from junit_xml import TestCase, TestSuite, to_xml_report_string

from ..model import CaseResult, RunResults, Status


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
