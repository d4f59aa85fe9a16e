"""KCIDB JSON of a run (schema v5.3, the newest kcidb-io knows): checkouts, builds, tests.

- a **checkout** per kernel source identity: a Debian package's source version (the same
  checkout id for every run that used it), the source a kernel was built from, or, for an
  image given as a path or the host's kernel, its release;
- a **build** per kernel artifact: the Debian package (name and version, Debian's config)
  or kmatrix's source build (its build cache key, the kconfigs/ fragments as config_name);
- a **test** per case and kernel, path `kmatrix.<feature>.<case function>[.<parameters>]`
  (characters KCIDB paths do not allow become `_`; the node id is in `misc`), plus one
  `kmatrix.boot` test per kernel (did the VM reach the guest agent; probes in `misc`).

Statuses (KCIDB orders FAIL > ERROR > MISS > PASS > DONE > SKIP):

| kmatrix | KCIDB | why |
|---|---|---|
| pass | PASS | |
| fail | FAIL | the kernel did not do what the case checks |
| crash | FAIL | the kernel under test died: its code is faulty (`misc.kmatrix_status`) |
| flaky | FAIL | failed, then passed on a fresh boot: no flaky in KCIDB, not a plain pass |
| error | ERROR | the case or its fixtures broke: the code's status is unknown |
| error, kernel did not boot | MISS | the case never ran: the harness could not boot it |
| skip | SKIP | not applicable here (the probe's errno is the log excerpt) |

IDs are `kmatrix:...` (origin `kmatrix` unless told): checkouts and builds by what they
are, tests by run id + kernel + case, so re-submitting a run replaces it and two runs never
collide. `log_excerpt` holds the skip reason, the failure text and the dmesg slice (the
case's details), cut in the middle to KCIDB's 16 KiB limit.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ...nodeid import case_id
from ..model import CaseResult, KernelInfo, RunResults

#: the KCIDB I/O schema version written (tests validate against kcidb-io's newest)
SCHEMA_VERSION = {"major": 5, "minor": 3}
ORIGIN = "kmatrix"
#: KCIDB's maxLength of log_excerpt
LOG_EXCERPT_MAX = 16384
#: every kmatrix kernel is an x86-64 guest
ARCHITECTURE = "x86_64"

#: kmatrix status symbol -> KCIDB test status (a symbol not listed is reported as ERROR)
STATUS_MAP = {"pass": "PASS", "fail": "FAIL", "crash": "FAIL", "flaky": "FAIL",
              "error": "ERROR", "skip": "SKIP"}
#: a comment for the statuses KCIDB folds into another
_STATUS_COMMENT = {"crash": "the guest kernel crashed during this case",
                   "flaky": "flaky: failed, then passed on a fresh boot of the same kernel"}

_DEBIAN = re.compile(r"^Debian package (?P<package>\S+) (?P<version>\S+)$")
_BUILT = re.compile(r"^built from (?P<source>.*?)(?: \(fragments: (?P<fragments>.*)\))?$")
_PATH_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def excerpt(text: str, limit: int = LOG_EXCERPT_MAX) -> str:
    """`text` within KCIDB's limit, NULs removed; too long, its head (the assertion) and
    its tail (the kernel messages) are kept around a note of what was cut."""
    text = text.replace("\0", "")
    if len(text) <= limit:
        return text
    note = "\n[... {} characters cut by kmatrix ...]\n"
    keep = limit - len(note.format(len(text)))
    head = keep // 2
    return text[:head] + note.format(len(text) - keep) + text[len(text) - (keep - head):]


def kcidb_path(case: CaseResult) -> str:
    """`kmatrix.<feature>.<function>[.<parameters>]`: a dotted KCIDB path of the case."""
    cid = case_id(case.nodeid, case.kernel)
    parts = cid.split("::")[1:] or [cid]
    name = parts[-1]
    params = ""
    if name.endswith("]") and "[" in name:
        name, params = name[:-1].split("[", 1)
    components = [ORIGIN, case.feature, *parts[:-1], name] + ([params] if params else [])
    return ".".join(_PATH_BAD.sub("_", c).strip("_") or "_" for c in components)


def kcidb_status(case: CaseResult, kernel: KernelInfo) -> str:
    symbol = case.status.symbol
    if symbol == "error" and _never_ran(case, kernel):
        return "MISS"
    return STATUS_MAP.get(symbol, "ERROR")


def _never_ran(case: CaseResult, kernel: KernelInfo) -> bool:
    """An ERROR that is the kernel's boot failure (the case never started)."""
    if not kernel.boot_error:
        return False
    text = f"{case.message}\n{case.details}"
    first = kernel.boot_error.splitlines()[0]
    return first in text or "already failed to boot" in text


def _source(info: KernelInfo) -> dict[str, Any]:
    """The checkout (what source) and build (what artifact) facts of one kernel."""
    debian = _DEBIAN.match(info.origin)
    if debian:
        version, package = debian["version"], debian["package"]
        flavour = info.release.rsplit("-", 1)[-1] if "-" in info.release else ""
        return {"checkout": f"debian:linux:{version}", "tree": "debian",
                "checkout_comment": f"Debian linux {version}",
                "build": f"debian:{package}:{version}",
                "config": f"debian {flavour}".strip(), "command": "apt-get download"}
    built = _BUILT.match(info.origin)
    if built:
        return {"checkout": f"source:{built['source']}", "tree": "",
                "checkout_comment": built["source"],
                "build": f"build:{info.package_version or info.release}",
                "config": f"kconfigs: {built['fragments']}" if built["fragments"] else "",
                "command": f"kmatrix kernels build {info.spec}".strip()}
    identity = info.release or info.package_version or info.spec or info.label
    return {"checkout": f"kernel:{info.spec or info.label}:{identity}", "tree": "",
            "checkout_comment": info.origin or identity,
            "build": f"image:{info.spec or info.label}:{identity}", "config": "",
            "command": ""}


def _drop_empty(obj: dict[str, Any]) -> dict[str, Any]:
    """KCIDB allows no nulls; an unknown field is left out rather than sent empty."""
    return {k: v for k, v in obj.items() if v not in ("", None, {}, [])}


def _log_text(case: CaseResult) -> str:
    parts = [case.message]
    if case.details and case.details.strip() != case.message.strip():
        parts.append(case.details)
    if case.observed:
        parts.append(f"observed: {case.observed}")
    return "\n\n".join(p for p in parts if p)


def kcidb_report(results: RunResults, run_id: str, start_time: datetime | None = None,
                 origin: str = ORIGIN) -> dict[str, Any]:
    """The run as KCIDB I/O data. `run_id` makes the test ids of this run unique;
    `start_time` (timezone-aware) is the run's start, given to every test: the model
    records each case's duration, not when it started."""
    started = start_time.isoformat() if start_time is not None else ""
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    build_of: dict[str, str] = {}
    tests: list[dict[str, Any]] = []
    labels = list(results.kernels) + sorted(
        {c.kernel for c in results.cases} - set(results.kernels))
    for label in labels:
        info = results.kernels.get(label) or KernelInfo(label)
        src = _source(info)
        checkout_id = f"{origin}:{src['checkout']}"
        build_id = f"{origin}:{src['build']}"
        build_of[label] = build_id
        checkouts.setdefault(checkout_id, _drop_empty({
            "id": checkout_id, "origin": origin, "tree_name": src["tree"],
            "comment": src["checkout_comment"], "valid": True,
            "misc": _drop_empty({"spec": info.spec, "package_version": info.package_version}),
        }))
        builds.setdefault(build_id, _drop_empty({
            "id": build_id, "origin": origin, "checkout_id": checkout_id,
            "comment": info.origin, "architecture": ARCHITECTURE,
            "config_name": src["config"], "command": src["command"], "status": "PASS",
            "misc": _drop_empty({"spec": info.spec, "release": info.release,
                                 "package_version": info.package_version}),
        }))
        booted = bool(info.boots) and not info.boot_error
        tests.append(_drop_empty({
            "id": f"{origin}:{run_id}:{label}:boot", "origin": origin, "build_id": build_id,
            "path": f"{ORIGIN}.boot", "status": "PASS" if booted else "ERROR",
            "start_time": started,
            "duration": round(next(iter(info.boots.values()), 0.0), 3) or None,
            "comment": f"boot of {label} to the guest agent",
            "log_excerpt": excerpt(info.boot_error),
            "environment": _environment(info),
            "misc": _drop_empty({"kernel": label, "release": info.release,
                                 "boots": info.boots, "probes": info.probes,
                                 "expect": info.expect}),
        }))
    for case in results.cases:
        info = results.kernels.get(case.kernel) or KernelInfo(case.kernel)
        status = kcidb_status(case, info)
        tests.append(_drop_empty({
            "id": f"{origin}:{run_id}:{case.kernel}:{case_id(case.nodeid, case.kernel)}",
            "origin": origin, "build_id": build_of[case.kernel], "path": kcidb_path(case),
            "status": status, "start_time": started, "duration": round(case.duration, 3),
            "comment": _STATUS_COMMENT.get(case.status.symbol, ""),
            "log_excerpt": excerpt(_log_text(case)),
            "environment": _environment(info),
            "misc": _drop_empty({"nodeid": case.nodeid, "kernel": case.kernel,
                                 "feature": case.feature,
                                 "kmatrix_status": case.status.symbol,
                                 "observed": case.observed,
                                 "guest_duration": case.guest_duration}),
        }))
    return {"version": dict(SCHEMA_VERSION), "checkouts": list(checkouts.values()),
            "builds": list(builds.values()), "tests": tests}


def _environment(info: KernelInfo) -> dict[str, Any]:
    facts = [f"virtme-ng VM ({info.accel or 'accelerator unknown'})"]
    if info.vcpus:
        facts.append(f"{info.vcpus} vCPUs")
    if info.memory:
        facts.append(f"{info.memory} memory")
    return {"comment": ", ".join(facts),
            "misc": _drop_empty({"accel": info.accel, "vcpus": info.vcpus,
                                 "memory": info.memory})}
