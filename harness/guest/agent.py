"""The guest agent: started by `vng --exec`, serves case runs over the control port.

1. It opens /dev/kmsg first (nothing the kernel says is lost), imports pytest and the
   guest library and says "hello" (the kernel release, when init and the agent started).
2. The host answers with the node ids it will ask for on this kernel, the kernel's
   expectations (images/features.toml as applied by the host) and the probe results of an
   earlier boot of the same kernel, if any. The agent starts one pytest session and is
   ready at once: a case module is collected (imported, its items made) when the first of
   its cases is asked for, so the first verdict does not wait for the whole suite.
   Feature probes run when a case first needs one, in the agent (the case processes
   inherit the results), and the rest at shutdown, so the report's table is complete;
   their results and what the kernel said meanwhile go to the host as "probes".
3. For each "run" request it forks (`case_process`): the child moves into a fresh network
   namespace and runs that one collected item through pytest's runtest protocol. The
   kernel messages of the case go back with the verdict; those that arrive after it ended
   (async cleanup) go back with the next request or at shutdown, attributed to it. What the
   case left behind (isolation) fails it and is cleaned before the next one. BPF objects
   a case module shares (`bpf_shared` marker) are loaded here before its first case's
   fork, once a boot, and inherited (harness/guest/bpf/shared.py).
4. Anything that goes wrong before the agent is ready is sent to the host as "fatal", with
   the traceback, instead of a silent exit.

Imports nothing of the host side (the host plugin, the VM runner, kernel acquisition).
"""

from __future__ import annotations

import os
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..protocol import EXEC_AT_ENV, Message
from . import isolation
from .bpf import core_btf, shared
from .case_process import REPORTS, run_item
from .channel import Channel, open_channel
from .kmsg import Kmsg, init_started
from .probes.crosscheck import BpftoolCrossCheck


class AgentLoop:
    """pytest plugin for the agent's one session: after collection, serve run requests
    instead of running the items in order."""

    def __init__(self, channel: Channel, kmsg: Kmsg, messages: Iterator[Message],
                 expect: dict[str, dict[str, Any]], known: dict[str, dict[str, Any]],
                 nodeids: list[str], evidence: Callable[[], Any]) -> None:
        self.channel = channel
        #: the node ids the host may ask for, by module (collected on first use)
        self.wanted: dict[str, list[str]] = {}
        for nodeid in nodeids:
            self.wanted.setdefault(module_of(nodeid), []).append(nodeid)
        #: module -> its collection errors ([] once collected cleanly)
        self.modules: dict[str, list[str]] = {}
        self.session: Any = None
        self.kmsg = kmsg
        #: probes that ran (here, or in an earlier boot of this kernel: `known`)
        self.probes = Probes(channel, kmsg, known)
        self.messages = messages
        self.expect = expect
        self.items: dict[str, Any] = {}
        self.collect_errors: list[str] = []
        #: the request id of the case that ran last (late kernel messages are its)
        self.last_id: int | None = None
        self.state: isolation.Snapshot | None = None
        #: (node id, pid) of a failed case's process held before its teardown
        self.held: tuple[str, int] | None = None
        #: the stack's counters and drop reasons around each case (loading, in a thread
        #: started before the session: `evidence`; waited for before the isolation
        #: baseline: its program, map and link are the agent's, not a case's leak)
        self.evidence: Any = None
        self._evidence = evidence

    def pytest_configure(self, config: Any) -> None:
        from .expect import install

        install(config, self.expect)

    def pytest_collectstart(self, collector: Any) -> None:
        import pytest

        if isinstance(collector, pytest.Module):
            self.channel.send({"op": "progress", "stage": f"collecting {collector.nodeid}"})

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext}")

    def pytest_collection(self, session: Any) -> bool:
        """No collection up front: modules are collected when first needed."""
        return True

    def collect(self, nodeid: str) -> float:
        """Collect the module of `nodeid` (the node ids of it the host may ask for) unless
        done; seconds it took (0 when it was)."""
        module = module_of(nodeid)
        if module in self.modules:
            return 0.0
        import pytest

        t0 = time.monotonic()
        self.collect_errors = []
        try:
            items = self.session.perform_collect(self.wanted.get(module, [nodeid]))
        except (pytest.UsageError, Exception) as exc:  # a node id pytest cannot find
            self.collect_errors.append(f"{module}: {exc}")
            items = []
        self.items.update((item.nodeid, item) for item in items)
        self.modules[module] = self.collect_errors
        _warm_inspect_cache()  # before forking: see its docstring
        return time.monotonic() - t0

    def pytest_runtestloop(self, session: Any) -> bool:
        self.session = session
        # nobody reads the guest's terminal: verdicts go to the host as data. Without the
        # reporter (as on an xdist worker), a case's process does not format progress for
        # each of its reports (8-16 ms a case under TCG)
        session.config.pluginmanager.unregister(name="terminalreporter")
        try:
            self.evidence = self._evidence()
        except BaseException as exc:  # the host's boot fails with this, not a bare EOF
            self.channel.send({"op": "fatal", "error": "".join(traceback.format_exception(exc))})
            raise
        self.state = isolation.take()
        self.channel.send({"op": "collected", "count": 0, "errors": []})
        for msg in self.messages:
            op = msg.get("op")
            if op == "shutdown":
                break
            if op == "run":
                self.channel.send({"op": "result", "id": msg["id"], **self.run(msg)})
            elif op == "ping":
                self.channel.send({"op": "pong", "id": msg.get("id")})
            elif op == "shell":  # kmatrix shell, --keep-failed: no more cases
                self.channel.send({"op": "shell", "ok": True})
                self.shell(msg)
                return True
        self.send_late()
        shared.close_all()  # before the probes' bpftool cross-check: they are not its
        self.probes.finish()  # the rest of the probe table, for the report
        self.channel.send({"op": "bye"})
        return True

    def shell(self, msg: Message) -> None:
        """Serve an interactive shell until it exits (harness/guest/shell.py); the VM then
        powers off. A case held after its failure (--keep-failed) is named in the banner
        with how to enter its namespaces."""
        from .shell import serve

        banner = str(msg.get("banner", ""))
        if self.held is not None:
            nodeid, pid = self.held
            banner += (f"\nheld after its failure: {nodeid} (pid {pid}, before its fixtures' "
                       f"teardown)\n  enter its network namespace: nsenter -t {pid} -n")
        serve(str(msg.get("label", "")), {k: v for k, v in os.environ.items()
                                          if k.startswith(("KMATRIX_", "PYTHON", "PATH"))},
              os.getcwd(), rows=int(msg.get("rows", 40)), cols=int(msg.get("cols", 120)),
              banner=banner)

    def send_late(self) -> None:
        """Kernel messages since the last case's verdict belong to that case (they are often
        its asynchronous cleanup)."""
        late = self.kmsg.drain()
        if late and self.last_id is not None:
            self.channel.send({"op": "late", "id": self.last_id, "dmesg": late})

    def run(self, msg: Message) -> dict[str, Any]:
        from .evidence.server import EvidenceServerError

        t_request = time.monotonic()
        cpu0 = _cpu_self()
        self.send_late()
        nodeid = str(msg["nodeid"])
        collect_s = self.collect(nodeid)
        item = self.items.get(nodeid)
        self.last_id = int(msg["id"])
        if item is None:
            errors = ("\n".join(self.modules.get(module_of(nodeid), []))
                      or "(no collection error reported)")
            return {"reports": [], "collect_errors": [
                f"{nodeid} was not collected in the guest session; collection said:\n"
                f"{errors}"]}
        # probes in the agent (the case processes inherit the results); what they made is
        # not the case's, so the state before the case is taken after them
        probed = self.probes.ensure(required_features(item))
        # the BPF objects its module shares (bpf_shared): loaded here, once a boot, so
        # every case process inherits them; theirs too, not a case's, for the baseline
        loaded = shared.preload(shared_objects(item))
        before = isolation.take() if probed or loaded or self.state is None else self.state
        evidence = self.evidence if msg.get("evidence", True) else None
        hold = bool(msg.get("hold_on_failure", False))
        if self.evidence is not None:
            self.evidence.collecting = evidence is not None
        evidence_lost = ""
        if evidence is not None:
            try:
                evidence.before()
            except EvidenceServerError as exc:  # the rest run without
                evidence_lost, evidence, self.evidence = str(exc), None, None
        # pytest computes an item's location (its file checked to exist, over 9p, and
        # relative to the rootdir) in its protocol; once here, in the process that stays,
        # and the case processes inherit it
        _ = item.location
        t0 = time.monotonic()
        result = run_item(item, float(msg.get("timeout", 120)), hold_on_failure=hold)
        t1 = time.monotonic()
        if "held" in result:  # --keep-failed: the case process waits before its teardown
            self.held = (nodeid, int(result["held"]))
            result["timing"] = {"case_s": t1 - t0}
            return result
        if evidence is not None:  # the evidence server works while the agent checks
            try:
                evidence.after_begin()
            except EvidenceServerError as exc:
                evidence_lost, evidence, self.evidence = str(exc), None, None
        learn_imports(result.pop("imported", []))
        result["dmesg"] = self.kmsg.drain()
        t_check = time.monotonic()
        after = isolation.settle(before)
        leaked = isolation.leaks(before, after)
        if leaked:
            result["leaks"] = [str(leak) for leak in leaked]
            result["not_cleaned"] = isolation.clean(before, leaked)
            after = isolation.take()
        self.state = after
        t_evidence = time.monotonic()
        if evidence is not None:
            try:
                result["evidence"] = evidence.after_end()
            except EvidenceServerError as exc:
                evidence_lost, self.evidence = str(exc), None
        if evidence_lost:
            result["evidence"] = _no_evidence(evidence_lost)
        # where the agent's time went (kmatrix bench reports it)
        t_end = time.monotonic()
        result["timing"] = {"case_s": t1 - t0, "after_s": t_end - t1,
                            "collect_s": collect_s, "before_s": t0 - t_request,
                            "isolation_s": t_evidence - t_check,
                            "evidence_after_s": t_end - t_evidence,
                            # CPU seconds: the case process's, the agent's own for it
                            # (collection, probes, fork, checks; not the evidence process)
                            "case_cpu_s": float(result.pop("cpu_s", 0.0)),
                            "agent_cpu_s": _cpu_self() - cpu0}
        return result


def _cpu_self() -> float:
    """The agent's own CPU seconds so far (user + system, this process only)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _case_evidence() -> Callable[[], Any]:
    """Start loading the agent's evidence (`CaseEvidence`: its drop counter's program is
    verified and attached, 0.6 s under TCG) in a thread, which runs while the agent starts
    its pytest session (libbpf's calls, through ctypes, let go of the GIL); the returned
    function waits for it and returns it run by an `EvidenceServer` process (forked then,
    with no other thread of ours running), or None when KMATRIX_EVIDENCE=0 (cases run
    without)."""
    if os.environ.get("KMATRIX_EVIDENCE", "1") == "0":
        return lambda: None
    from .background import start
    from .evidence.case import CaseEvidence

    loading = start(CaseEvidence, "kmatrix-evidence")

    def server() -> Any:
        from .evidence.server import EvidenceServer

        return EvidenceServer(loading())

    return server


def _no_evidence(why: str) -> dict[str, Any]:
    """The evidence of a case whose evidence could not be had, saying why."""
    from .evidence.model import Evidence

    return Evidence(notes=[f"no evidence from here on: {why}"]).as_dict()


def learn_imports(names: list[str]) -> None:
    """Import what a case process imported that the agent has not: the next case processes
    inherit it (a lazy `import pyroute2` in a fixture costs seconds under TCG, each time).
    What fails to import here is left to the cases."""
    import importlib

    for name in names:
        if name not in sys.modules and name != "__main__":
            try:
                importlib.import_module(name)
            except Exception:
                continue


def module_of(nodeid: str) -> str:
    """The module part of a node id (`cases/test_tcx.py` of `cases/test_tcx.py::t[x]`)."""
    return nodeid.split("::", 1)[0]


def _warm_inspect_cache() -> None:
    """Fill inspect's module-file cache once, before forking: pytest's failure report calls
    inspect.getmodule(), whose first call realpath()s every loaded module (thousands of 9p
    lookups, tens of seconds under TCG). Each forked case inherits the warm cache."""
    import inspect

    inspect.getmodule(_warm_inspect_cache.__code__)


def required_features(item: Any) -> list[str]:
    """The features an item's `requires` markers name."""
    return [str(f) for mark in item.iter_markers("requires") for f in mark.args]


def shared_objects(item: Any) -> list[str]:
    """The BPF objects an item's `bpf_shared` markers name (harness/guest/bpf/shared.py)."""
    return [str(o) for mark in item.iter_markers("bpf_shared") for o in mark.args]


class Probes:
    """Feature probes run when a case first needs them, in the agent before it forks (the
    case processes inherit the cached results), the rest at shutdown so the report's probe
    table is complete. What the kernel says while a probe runs goes with the results."""

    def __init__(self, channel: Channel, kmsg: Kmsg, known: dict[str, dict[str, Any]]) -> None:
        from . import probes

        self.channel = channel
        self.kmsg = kmsg
        self.module = probes
        for feature, result in known.items():  # an earlier boot of this very kernel
            if feature in probes.FEATURES:
                probes.remember(probes.ProbeResult(feature, str(result["status"]),
                                                   str(result["detail"])))
        self.done: set[str] = set(known)

    def ensure(self, features: list[str]) -> bool:
        """Probe what `features` has not had probed yet; whether any probe ran."""
        todo = [f for f in dict.fromkeys(features)
                if f not in self.done and f in self.module.FEATURES]
        if not todo:
            return False
        t0 = time.monotonic()
        results = {f: self.module.probe(f).as_dict() for f in todo}
        self.done.update(todo)
        self.channel.send({"op": "probes", "results": results,
                           "seconds": time.monotonic() - t0, "dmesg": self.kmsg.drain()})
        return True

    def finish(self) -> None:
        """At shutdown: the probes no case needed, then bpftool's view of the same kernel
        (not while cases run: its objects would look like theirs to the isolation check)."""
        from .net.nics import root_nics

        wanted = [f for f in self.module.FEATURES
                  if f in self.done or f not in self.module.NEEDS_NICS or root_nics()]
        self.ensure(wanted)
        table = {f: self.module.probe(f).as_dict() for f in wanted}
        self.channel.send({"op": "probes", "results": {}, "seconds": 0.0, "dmesg": [],
                           "crosscheck": BpftoolCrossCheck().result(table)})


def serve(channel: Channel, t0: float, mount_s: float = -1.0) -> int:
    """The agent's life: hello, its pytest session, cases until shutdown. `t0`: when it
    began (its imports are timed from there); `mount_s`: what of that mounting the checkout
    took (a snapshotted guest's attach; -1: none)."""
    kmsg = Kmsg()  # first: what the kernel says during the probes is kept
    agent_at = float(Path("/proc/uptime").read_text().split()[0])
    init_at = init_started()
    channel.send({"op": "progress", "stage": "agent started"})
    core_btf.generate_in_background()  # while pytest is imported and the cases collected
    isolation.ensure_bpffs()
    os.environ["KMATRIX_GUEST"] = "1"
    import pytest

    from . import plugin  # imported now: its import time counts as import_s

    evidence = _case_evidence()

    t_import = time.monotonic()
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    channel.send({"op": "hello", "release": os.uname().release, "probes": {},
                  "probe_dmesg": kmsg.drain(), "uptime": uptime, "agent_at": agent_at,
                  "init_at": init_at if init_at is not None else -1.0,
                  "exec_at": _exec_at(),
                  "import_s": t_import - t0, "mount_s": mount_s, "probe_s": 0.0,
                  "python": sys.version.split()[0]})
    messages = channel.messages()
    for msg in messages:
        if msg.get("op") == "shutdown":
            return 0
        if msg.get("op") == "collect":
            _refresh(msg)
            nodeids = [str(n) for n in msg["nodeids"]]
            loop = AgentLoop(channel, kmsg, messages, dict(msg.get("expect", {})),
                             dict(msg.get("probes", {})), nodeids, evidence)
            # the modules as arguments: pytest finds the rootdir and the conftests from them
            from . import fixtures
            from .evidence import fixture as evidence_fixture
            from .evidence.case import EvidencePlugin

            # the guest plugin and the fixture modules it names as objects, not `-p`: for a
            # name given with -p or in a registered module's `pytest_plugins` (conftest.py
            # names the fixture modules too), pytest 9 first searches every installed
            # distribution's entry points, reading each one's metadata (0.8 s a boot under
            # TCG for the three); a module registered already is not looked up. The guest
            # plugin last: its hooks run before the others', as they did with -p.
            pytest.main(["-p", "no:cacheprovider", "-q", "--tb=long", "-o", "addopts=",
                         "-W", "ignore::pytest.PytestAssertRewriteWarning",
                         *dict.fromkeys(module_of(n) for n in nodeids)],
                        plugins=[loop, EvidencePlugin(), REPORTS, fixtures, evidence_fixture,
                                 plugin])
            return 0
    return 0


def _refresh(msg: Message) -> None:
    """The host's clock, randomness and the boot's environment (its collect message's
    "now", "seed" and "env"): a guest restored from a snapshot would otherwise have the
    saved guest's clock, the same random numbers as every other restore of it, and the
    saved boot's number."""
    os.environ.update({str(k): str(v) for k, v in dict(msg.get("env", {})).items()})
    if "now" in msg:
        try:
            time.clock_settime(time.CLOCK_REALTIME, float(msg["now"]))
        except OSError:  # not allowed (an SSH target's unprivileged agent): keep its own
            pass
    if "seed" in msg:
        seed = bytes.fromhex(str(msg["seed"]))
        try:
            with open("/dev/urandom", "wb") as fh:  # mixed into the kernel's pool
                fh.write(seed)
        except OSError:
            pass
        random.seed(seed)


def _exec_at() -> float:
    """The guest's uptime when init ran the agent's shell line (-1: not known; the agent
    was started otherwise, e.g. over SSH)."""
    try:
        return float(os.environ.get(EXEC_AT_ENV, "-1"))
    except ValueError:
        return -1.0


def main() -> int:
    t0 = time.monotonic()
    channel = open_channel()  # the virtio-serial port, or stdio over SSH
    try:
        return serve(channel, t0)
    except BaseException as exc:
        channel.send({"op": "fatal", "error": "".join(traceback.format_exception(exc))})
        raise


if __name__ == "__main__":
    sys.exit(main())
