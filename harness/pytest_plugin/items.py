"""Host items: one `GuestItem` per (case, kernel), whose body runs in the guest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..errors import BootError, KmatrixError, VMLostError
from ..nodeid import without_kernel
from ..results.model import Status
from ..targets.base import TargetLostError
from .session import SessionState, state_key
from .verdict import Phases, guest_properties, interpret

KERNEL_FIXTURE = "kmatrix_kernel"
#: markers the guest's pytest evaluates, not the host's
GUEST_EVALUATED = frozenset({"skip", "skipif", "xfail"})
#: prefix of the host item's user properties that carry a guest case's record_property
GUEST_PROPERTY = "guest."


class GuestFailure(Exception):
    """A failure whose text came from the guest (or from the host's evidence of a crash)."""

    def __init__(self, text: str, status: Status = Status.FAIL) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


class GuestItem(pytest.Item):
    """One (case, kernel) pair; its body runs in the guest booted with that kernel."""

    def __init__(self, *, label: str, guest_nodeid: str, timeout: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.label = label
        self.guest_nodeid = guest_nodeid
        self.timeout = timeout
        self._phases = Phases()
        self._crash: GuestFailure | None = None
        #: the case function's line (0-based), for reports
        self.line: int | None = None
        #: the agent holds this case's process after its failure (--keep-failed)
        self._held = False

    @property
    def state(self) -> SessionState:
        return self.config.stash[state_key]

    def setup(self) -> None:
        failed_before: list[str] = []
        self._attempt(self._vm())
        for _ in range(self.state.rerun_failed):
            # (a lost SSH target cannot be restarted: its crash stands)
            if not self._failed() or not self.state.pool.restartable(self.label):
                break
            # --rerun-failed: again on a fresh boot of the same kernel
            failed_before.append(self._failure_text())
            self.note_late(self.state.pool.close(self.label, graceful=self._crash is None))
            self._phases, self._crash = Phases(), None
            self._attempt(self._vm())
        if failed_before and not self._failed():
            self.user_properties.append(("kmatrix_flaky", json.dumps(failed_before)))
        if self._held and not self.state.kept:  # --keep-failed: this VM is the user's now
            kept = self.state.pool.keep(self.label, self.guest_nodeid)
            self.state.kept.append(kept)
            self.user_properties.append(("kmatrix_kept", json.dumps(kept)))
        if self._crash is not None:
            return
        if self._phases.setup_error is not None:
            raise GuestFailure(self._phases.setup_error, Status.ERROR)
        if self._phases.setup_skip is not None:
            pytest.skip(self._phases.setup_skip)

    def _vm(self) -> Any:
        try:
            vm = self.state.pool.get(self.label)
        except BootError:  # reported as ERROR (infrastructure), with the boot's evidence
            self.user_properties.append(("kmatrix_boot", json.dumps(
                self.state.pool.boot_record(self.label))))
            raise
        self.user_properties.append(("kmatrix_boot", json.dumps(self.state.pool.boot_record(
            self.label))))
        return vm

    def _attempt(self, vm: Any) -> None:
        """Run the case once on `vm`: its phases (or the crash) for setup/runtest/teardown,
        its properties for the recorder (a later attempt's override an earlier one's)."""
        try:
            verdict = vm.run_case(self.guest_nodeid, self.timeout)
        except VMLostError as exc:
            self.user_properties.append(("kmatrix_status", "crash"))
            self._crash = GuestFailure(_crash_text(exc, vm.console_log), Status.CRASH)
            return
        self.user_properties.append(("kmatrix_status", ""))
        self._held = bool(verdict.get("held"))
        self.note_late(vm.take_late())
        self.user_properties.append(("kmatrix_guest_s", f"{verdict.get('duration', 0):.3f}"))
        phases = verdict.get("phases", {})
        # netns_s: the fresh namespace's phase, under the name results.json has had
        timing = {**verdict.get("timing", {}), "netns_s": phases.get("netns", 0.0),
                  **{f"process_{k}_s": v for k, v in phases.items()}}
        self.user_properties.append(("kmatrix_timing", json.dumps(timing)))
        if verdict.get("profile"):
            self.user_properties.append(("kmatrix_profile", str(verdict["profile"])))
        if verdict.get("evidence"):
            self.user_properties.append(("kmatrix_evidence", json.dumps(verdict["evidence"])))
        self.user_properties += [(f"{GUEST_PROPERTY}{k}", v)
                                 for k, v in guest_properties(verdict).items()]
        self._phases = interpret(verdict, self.guest_nodeid, self.timeout)

    def _failed(self) -> bool:
        p = self._phases
        return self._crash is not None or any(
            t is not None for t in (p.setup_error, p.call_error, p.teardown_error))

    def _failure_text(self) -> str:
        if self._crash is not None:
            return self._crash.text
        p = self._phases
        return next(t for t in (p.setup_error, p.call_error, p.teardown_error) if t)

    def note_late(self, late: dict[str, list[str]]) -> None:
        """Kernel messages that came after an earlier case's verdict, for the recorder to
        attribute to that case (property `kmatrix_late`: host node id -> lines)."""
        if late:
            hosts = self.state.pool.host_nodeids
            self.user_properties.append(("kmatrix_late", json.dumps(
                {hosts.get((self.label, gid), gid): lines for gid, lines in late.items()})))

    def runtest(self) -> None:
        if self._crash is not None:
            raise self._crash
        if self._phases.call_error is not None:
            raise GuestFailure(self._phases.call_error)
        if self._phases.call_skip is not None:
            pytest.skip(self._phases.call_skip)
        if self._phases.xfail is not None:
            pytest.xfail(self._phases.xfail)

    def teardown(self) -> None:
        phases, self._phases = self._phases, Phases()
        self._crash = None
        if phases.teardown_error is not None:
            raise GuestFailure(phases.teardown_error, Status.ERROR)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, GuestFailure):
            return f"[{self.label}] {excinfo.value.text}"
        if isinstance(excinfo.value, KmatrixError):
            err = excinfo.value
            tail = getattr(err, "console_tail", "")
            return f"[{self.label}] {err.describe()}" + (
                f"\n--- console tail ---\n{tail}" if tail else "")
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.line, f"{self.name} (in guest {self.label})"


def _crash_text(exc: VMLostError, console_log: Path) -> str:
    parts = [str(exc)]
    if exc.panic:
        parts.append(f"--- kernel report ---\n{exc.panic}")
    parts.append(f"--- console tail ({console_log}) ---\n{exc.console_tail}")
    parts.append(exc.after if isinstance(exc, TargetLostError)
                 else "the VM was stopped; the next case on this kernel boots a new one")
    return "\n".join(parts)


def guest_items(state: SessionState, items: list[pytest.Item]) -> list[pytest.Item]:
    """Each collected case function becomes a GuestItem (kept in kernel order: one boot
    per kernel serves all of its cases); other items are left as they are."""
    out: list[pytest.Item] = []
    for item in items:
        if not isinstance(item, pytest.Function) or not state.is_case_path(item.path):
            out.append(item)
            continue
        if not state.kernels:
            item.add_marker(pytest.mark.skip(
                reason="guest case: give --kernel SPEC (or use `kmatrix run`) to run it"))
            out.append(item)
            continue
        label = str(item.callspec.params[KERNEL_FIXTURE])
        assert item.parent is not None
        mark = item.get_closest_marker("case_timeout")
        timeout = float(mark.args[0]) if mark else state.case_timeout
        guest_id = f"{item.nodeid.rsplit('::', 1)[0]}::{without_kernel(item.name, label)}"
        gi = GuestItem.from_parent(item.parent, name=item.name, label=label,
                                   guest_nodeid=guest_id, timeout=timeout)
        gi.line = item.location[1]
        # skip/skipif/xfail are the guest's to evaluate (a skipif condition means what it
        # says in the kernel under test, not on the host); the rest serve -m selection
        gi.own_markers = [m for m in item.own_markers if m.name not in GUEST_EVALUATED]
        gi.keywords.update(item.keywords)
        gi.extra_keyword_matches.update(item.extra_keyword_matches)
        out.append(gi)
        state.pool.nodeids.setdefault(label, []).append(guest_id)
        nics = item.get_closest_marker("nics")
        if nics is not None:  # the kernel's VM gets the NICs this suite needs
            state.pool.nics[label] = str(nics.args[0] if nics.args else "loop")
        state.pool.host_nodeids[(label, guest_id)] = gi.nodeid
    order = {k.label: i for i, k in enumerate(state.kernels)}
    out.sort(key=lambda it: order.get(getattr(it, "label", ""), -1))
    return out
