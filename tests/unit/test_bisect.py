"""kmatrix bisect without a kernel: a synthetic git history in tmp_path, git's real
`git bisect run`, and the real step command with its build and run replaced by a fake that
reads the verdict from `state.txt` at the commit git checked out."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.acquire.build import builder as kbuild
from harness.acquire.build import make, plan, toolchain
from harness.bisect import driver, report, step
from harness.bisect.config import BadIf, BisectConfig, SkipAs, default_objdir
from harness.bisect.git import Repo, check_bisectable, first_bad, possible_first_bad
from harness.bisect.records import BuildOutcome, RunOutcome, StepRecord, load_steps
from harness.bisect.verdict import Verdict, combine, decide
from harness.cli import bisect as cli_bisect
from harness.cli import build_parser, main
from harness.errors import CommandError, ExitCode, MissingToolError, UserError
from harness.paths import PROJECT_ROOT
from harness.results.model import CaseResult, KernelInfo, RunResults, Status

CASE = "cases/test_netkit.py::test_l2_arp_between_namespaces"
MAKEFILE = "VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\nEXTRAVERSION =\nNAME = Fake\n"

#: the step git runs, with the expensive parts replaced: what `state.txt` says at the commit
#: decides the build and each run (words: ok, broken, nobuild, noboot, unsupported,
#: flaky:K = fails on run K only, interrupt, abort)
FAKE_STEP = r'''
import os, signal, sys, time
from pathlib import Path

from harness.bisect import step
from harness.bisect.records import BuildOutcome, RunOutcome
from harness.errors import ExitCode
from harness.results.model import Status


def words(config):
    return (config.tree / "state.txt").read_text().split()


def fake_build(config, step_dir):
    if "nobuild" in words(config):
        return BuildOutcome(ok=False, seconds=0.5,
                            message="drivers/net/netkit.c:1: error: expected ';'")
    return BuildOutcome(ok=True, seconds=1.5, label="src-linux-6.12.0",
                        release="6.12.0-kmatrix")


def fake_run(config, build, run_dir):
    w = words(config)
    n = int(run_dir.name.split("-")[1])
    with Path(os.environ["FAKE_STEP_LOG"]).open("a") as log:
        log.write(f"{os.getpid()} {' '.join(w)} run {n}\n")
    if "interrupt" in w:
        os.kill(int(os.environ["FAKE_STEP_PARENT"]), signal.SIGINT)
        time.sleep(60)
    if "abort" in w:
        raise step.StepAbort("kmatrix run exited 5: no case collected",
                             ExitCode.NO_TESTS_COLLECTED)
    flaky = [x for x in w if x.startswith("flaky:")]
    if flaky:
        status = Status.FAIL if n == int(flaky[0].split(":")[1]) else Status.PASS
    elif "noboot" in w:
        status = Status.ERROR
    elif "broken" in w:
        status = Status.FAIL
    elif "unsupported" in w:
        status = Status.SKIP
    else:
        status = Status.PASS
    failed = status is Status.FAIL
    return RunOutcome(status, 2.0,
                      message="NetlinkError: (95, 'Operation not supported')" if failed else "",
                      details="nk.create_pair(...) in make_topo" if failed else "",
                      exit_code=1 if failed else 0, results_dir=str(run_dir))


step.build_at_head = fake_build
step.run_case = fake_run
sys.exit(step.main(sys.argv[1:]))
'''


# --- the synthetic history ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commits without the user's git configuration; the fake step finds harness."""
    for var in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{var}_NAME", "kmatrix test")
        monkeypatch.setenv(f"{var}_EMAIL", "test@kmatrix.invalid")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    monkeypatch.setenv("FAKE_STEP_LOG", str(tmp_path / "fake-step.log"))
    monkeypatch.setenv("KMATRIX_CACHE", str(tmp_path / "cache"))


def git(tree: Path, *args: str, date: int = 0) -> str:
    """git in `tree`; commits dated `date` minutes after a fixed time (the same history
    has the same commit ids, so git's choices between equal candidates do not vary)."""
    stamp = f"2026-01-01T{date // 60:02d}:{date % 60:02d}:00Z"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def make_history(root: Path, states: list[str]) -> list[str]:
    """A git repository that looks like a kernel tree, one commit per state (commit 0 is
    the initial one); the commit ids, oldest first."""
    (root / "scripts" / "kconfig").mkdir(parents=True)
    (root / "Makefile").write_text(MAKEFILE)
    (root / "Kconfig").write_text('mainmenu "fake"\n')
    (root / "scripts" / "kconfig" / "Makefile").write_text("# kconfig\n")
    git(root.parent, "init", "-q", "-b", "main", str(root))
    commits = []
    for n, state in enumerate(states):
        (root / "state.txt").write_text(state + "\n")
        (root / "serial.txt").write_text(f"{n}\n")  # two commits of one state differ
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"c{n}: {state}", date=n)
        commits.append(git(root, "rev-parse", "HEAD"))
    return commits


def make_config(tmp_path: Path, tree: Path, **kw: Any) -> BisectConfig:
    return BisectConfig(tree=tree, case=CASE, results_dir=tmp_path / "results",
                        objdir=tmp_path / "objs" / "bisect", **kw)


@pytest.fixture
def fake_step(tmp_path: Path) -> list[str]:
    """The step command with build and run faked (the config path is appended by the
    driver's caller: see run_bisect)."""
    path = tmp_path / "fake_step.py"
    path.write_text(FAKE_STEP)
    return [sys.executable, str(path)]


def run_bisect(config: BisectConfig, fake: list[str], good: str, bad: str,
               confirm: bool = True) -> driver.BisectOutcome:
    return driver.bisect(config, [good], bad, confirm=confirm,
                         step_command=[*fake, str(config.path)])


def assert_restored(tree: Path, head: str, branch: str | None = "main") -> None:
    """The tree is as it was: same commit, same branch (or detached), no bisect going on."""
    assert git(tree, "rev-parse", "HEAD") == head
    proc = subprocess.run(["git", "-C", str(tree), "symbolic-ref", "-q", "--short", "HEAD"],
                          capture_output=True, text=True)
    assert (proc.stdout.strip() or None) == branch
    assert not Repo(tree).bisecting()
    assert git(tree, "status", "--porcelain") == ""


# --- bisect over the synthetic history ------------------------------------------------------


def test_names_the_planted_bad_commit(tmp_path: Path, fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "ok", "ok", "ok", "broken", "broken", "broken"])
    config = make_config(tmp_path, tree)
    outcome = run_bisect(config, fake_step, commits[0], "main")
    assert outcome.first_bad == commits[4]
    assert outcome.parent == commits[3]
    assert outcome.confirmed
    bad = outcome.step(commits[4])
    assert bad is not None and bad.verdict is Verdict.BAD and bad.runs[0].status is Status.FAIL
    good = outcome.step(commits[3])
    assert good is not None and good.verdict is Verdict.GOOD
    assert_restored(tree, commits[-1])
    # the report: failure on the first bad commit, pass on the parent, a table of the steps
    text = report.format_summary(config, outcome)
    assert f"first bad commit: {commits[4]} c4: broken" in text
    assert "Operation not supported" in text and "nk.create_pair" in text
    assert f"its parent: {commits[3][:12]} c3: ok: good" in text
    assert text.count("| bisect |") == len([s for s in outcome.steps if s.phase == "bisect"])
    assert f"| {commits[4][:12]} | bisect | bad | fail | 2 | 2 | c4: broken |" in text
    report.write_summary(config, outcome)
    saved = json.loads((config.results_dir / "summary.json").read_text())
    assert saved["first_bad"] == commits[4] and saved["confirmed"] is True
    assert first_bad((config.results_dir / "bisect-log.txt").read_text()) == commits[4]
    assert BisectConfig.load(config.path) == config


def test_confirms_what_git_did_not_test(tmp_path: Path, fake_step: list[str]) -> None:
    """A range of one commit: git names --bad at once and tests nothing; kmatrix runs the
    step on it and on its parent (the --good revision)."""
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    config = make_config(tmp_path, tree)
    outcome = run_bisect(config, fake_step, commits[0], commits[1])
    assert outcome.first_bad == commits[1] and outcome.confirmed
    assert [(s.commit, s.phase, s.verdict) for s in outcome.steps] == [
        (commits[1], "confirm", Verdict.BAD), (commits[0], "confirm", Verdict.GOOD)]
    assert_restored(tree, commits[-1])

    unconfirmed = make_config(tmp_path / "b", tree)
    outcome = run_bisect(unconfirmed, fake_step, commits[0], commits[1], confirm=False)
    assert outcome.first_bad == commits[1] and outcome.steps == []
    assert "not tested" in report.format_summary(unconfirmed, outcome)


def test_skip_steps_are_skipped(tmp_path: Path, fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    states = ["ok", "ok", "ok nobuild", "ok noboot", "ok", "broken", "broken nobuild",
              "broken noboot", "broken"]
    commits = make_history(tree, states)
    config = make_config(tmp_path, tree)
    outcome = run_bisect(config, fake_step, commits[0], "main")
    assert outcome.first_bad == commits[5] and outcome.confirmed
    skipped = [s for s in outcome.steps if s.verdict is Verdict.SKIP]
    kinds = {w for s in skipped for w in states[commits.index(s.commit)].split()}
    assert {"nobuild", "noboot"} <= kinds, "git must meet both kinds of untestable commit"
    for s in skipped:
        state = states[commits.index(s.commit)]
        assert "nobuild" in state or "noboot" in state
        assert f"git bisect skip {s.commit}" in outcome.log
        if "nobuild" in state:
            assert s.build is not None and not s.build.ok and s.runs == []
            assert s.reason == "the build failed"
        else:
            assert [r.status for r in s.runs] == [Status.ERROR]
    table = report.step_table(outcome.steps)
    for s in skipped:
        assert f"| {s.commit[:12]} | bisect | skip |" in table
    assert_restored(tree, commits[-1])


def test_only_skipped_commits_left_is_inconclusive(tmp_path: Path,
                                                   fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "nobuild", "nobuild", "broken"])
    config = make_config(tmp_path, tree)
    outcome = run_bisect(config, fake_step, commits[0], "main")
    assert outcome.first_bad is None
    assert set(outcome.candidates) == {commits[1], commits[2], commits[3]}
    text = report.format_summary(config, outcome)
    assert "No first bad commit" in text and f"{commits[1][:12]} c1: nobuild" in text
    assert_restored(tree, commits[-1])


def test_skip_of_the_case_counts_as_bad_by_default(tmp_path: Path,
                                                   fake_step: list[str]) -> None:
    """The feature refused where not expected from c3 on: a regression hunt calls that
    bad (--skip-as bad) unless told otherwise."""
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "ok", "ok", "unsupported", "unsupported", "broken"])
    outcome = run_bisect(make_config(tmp_path, tree), fake_step, commits[0], "main")
    assert outcome.first_bad == commits[3]
    outcome = run_bisect(make_config(tmp_path / "g", tree, skip_as=SkipAs.GOOD), fake_step,
                         commits[0], "main")
    assert outcome.first_bad == commits[5]
    assert_restored(tree, commits[-1])


def test_runs_find_a_flaky_failure(tmp_path: Path, fake_step: list[str]) -> None:
    """c3 fails one run in three (its second): one run per step takes it for good, three
    find it (any run failing is bad), a majority of three does not."""
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "ok", "ok", "flaky:2", "flaky:2", "broken"])
    once = run_bisect(make_config(tmp_path / "1", tree), fake_step, commits[0], "main")
    assert once.first_bad == commits[5]
    thrice = run_bisect(make_config(tmp_path / "3", tree, runs=3), fake_step, commits[0],
                        "main")
    assert thrice.first_bad == commits[3] and thrice.confirmed
    bad = thrice.step(commits[3])
    assert bad is not None and [r.status for r in bad.runs] == [Status.PASS, Status.FAIL]
    good = thrice.step(commits[2])
    assert good is not None and [r.status for r in good.runs] == [Status.PASS] * 3
    majority = run_bisect(make_config(tmp_path / "m", tree, runs=3, bad_if=BadIf.MAJORITY),
                          fake_step, commits[0], "main")
    assert majority.first_bad == commits[5]
    assert_restored(tree, commits[-1])


# --- the tree is left as it was --------------------------------------------------------------


def test_dirty_tree_is_refused(tmp_path: Path, fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    (tree / "state.txt").write_text("edited\n")
    config = make_config(tmp_path, tree)
    with pytest.raises(UserError, match="uncommitted changes") as exc:
        run_bisect(config, fake_step, commits[0], "main")
    assert "M state.txt" in str(exc.value) and "stash" in exc.value.hint
    assert git(tree, "rev-parse", "HEAD") == commits[-1] and not Repo(tree).bisecting()
    assert (tree / "state.txt").read_text() == "edited\n"  # the user's edit is untouched

    git(tree, "checkout", "-q", "state.txt")
    (tree / "notes.txt").write_text("untracked\n")
    with pytest.raises(UserError, match=r"\?\? notes.txt"):
        check_bisectable(Repo(tree))


def test_refuses_a_bisect_in_progress_and_unknown_revisions(tmp_path: Path,
                                                            fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    with pytest.raises(UserError, match="not a commit"):
        run_bisect(make_config(tmp_path, tree), fake_step, "v0.0-nope", "main")
    git(tree, "bisect", "start")
    with pytest.raises(UserError, match="already in progress"):
        run_bisect(make_config(tmp_path / "b", tree), fake_step, commits[0], "main")
    assert Repo(tree).bisecting()  # the user's own bisect is left alone
    git(tree, "bisect", "reset")
    assert_restored(tree, commits[-1])


def test_restored_after_a_step_stops_the_bisect(tmp_path: Path,
                                                fake_step: list[str]) -> None:
    """A step that cannot go on (here: no case collected) stops git (exit >= 128); the
    error says which commit and why, with the exit code of what went wrong. The bisect
    started on a detached HEAD: it is detached there again."""
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "abort", "abort", "abort", "broken"])
    git(tree, "checkout", "-q", "--detach", commits[2])
    config = make_config(tmp_path, tree)
    with pytest.raises(driver.BisectAborted, match="no case collected") as exc:
        run_bisect(config, fake_step, commits[0], commits[4])
    assert exc.value.exit_code == ExitCode.NO_TESTS_COLLECTED
    assert "stopped the bisect" in str(exc.value)
    assert [s.verdict for s in load_steps(config.results_dir)] == [Verdict.ABORT]
    assert_restored(tree, commits[2], branch=None)


def test_restored_after_ctrl_c(tmp_path: Path, fake_step: list[str],
                               monkeypatch: pytest.MonkeyPatch,
                               request: pytest.FixtureRequest) -> None:
    """Ctrl-C during a step (the fake step sends this process SIGINT and then sleeps): the
    step's process group gets SIGINT and is gone, the tree is reset, KeyboardInterrupt.

    Python's own SIGINT handler is put in place for the test: a process started in the
    background by a non-interactive shell (a CI script, nohup) inherits SIGINT ignored,
    and then no Ctrl-C would arrive."""
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "interrupt", "interrupt", "interrupt", "broken"])
    monkeypatch.setenv("FAKE_STEP_PARENT", str(os.getpid()))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_bisect(make_config(tmp_path, tree), fake_step, commits[0], "main")
    assert time.monotonic() - t0 < 30
    assert_restored(tree, commits[-1])
    pid = int((tmp_path / "fake-step.log").read_text().split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_results_dir_of_an_earlier_bisect_is_refused(tmp_path: Path,
                                                     fake_step: list[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    config = make_config(tmp_path, tree)
    run_bisect(config, fake_step, commits[0], "main")
    with pytest.raises(UserError, match="already holds the steps"):
        run_bisect(config, fake_step, commits[0], "main")


# --- the real step command, without running it -------------------------------------------------


def test_git_runs_the_real_step_command(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "ok", "ok", "broken"])
    config = make_config(tmp_path, tree)
    calls: list[list[str]] = []

    class Stop(Exception):
        pass

    def fake_run_in_group(argv: list[str], cwd: str | None = None) -> int:
        calls.append(list(argv))
        raise Stop

    monkeypatch.setattr(driver, "run_in_group", fake_run_in_group)
    with pytest.raises(Stop):
        driver.bisect(config, [commits[0]], "main")
    step_cmd = [sys.executable, "-m", "harness.bisect.step", str(config.path)]
    assert driver.step_argv(config) == step_cmd
    assert calls == [[Repo(tree).git, "-C", str(tree), "bisect", "run", *step_cmd]]
    # what `-m harness.bisect.step` runs: this module's main, reading that config
    spec = importlib.util.find_spec("harness.bisect.step")
    assert spec is not None and spec.origin == step.__file__
    assert "if __name__ == \"__main__\":\n    sys.exit(main())" in Path(step.__file__).read_text()
    assert BisectConfig.load(config.path) == config
    assert_restored(tree, commits[-1])


def test_each_run_is_a_real_kmatrix_run(tmp_path: Path) -> None:
    config = make_config(tmp_path, tmp_path / "linux", fragments=("base", "netkit"),
                         run_args=("--boot-timeout=600",))
    run_dir = tmp_path / "results" / "steps" / "abc" / "run-1"
    argv = step.run_argv(config, "src-linux-6.12.0", run_dir)
    assert argv == [sys.executable, "-m", "harness", "run", "--kernel",
                    f"{tmp_path / 'linux'}@base,netkit", "-n", "0", "--no-cache",
                    f"--results-dir={run_dir}", "--boot-timeout=600", CASE]
    args, rest = build_parser().parse_known_args(argv[3:])
    assert args.command == "run" and args.kernel == [config.spec] and args.jobs == 0
    assert rest == [f"--results-dir={run_dir}", "--boot-timeout=600", CASE]
    assert step.case_for_kernel("cases/t.py::test_y[l2]", "src-linux-6.12.0") == \
        "cases/t.py::test_y[l2-src-linux-6.12.0]"
    assert step.case_for_kernel(CASE, "x") == CASE


# --- a run's outcome from its results folder -------------------------------------------------


def write_results(run_dir: Path, *statuses: Status, boot_error: str = "") -> None:
    res = RunResults()
    res.kernels["src-linux"] = KernelInfo("src-linux", boots={"main-1": 80.5},
                                          boot_error=boot_error)
    for n, status in enumerate(statuses):
        res.cases.append(CaseResult(f"{CASE}[p{n}-src-linux]", "src-linux", "netkit", status,
                                    message=f"{status.symbol} message", details="traceback"))
    run_dir.mkdir(parents=True)
    res.write_json(run_dir / "results.json")


def test_outcome_of_a_run(tmp_path: Path) -> None:
    write_results(tmp_path / "a", Status.PASS, Status.FAIL)
    out = step.outcome_of_run(1, tmp_path / "a", 95.0, "")
    assert out.status is Status.FAIL and out.message == "fail message"
    assert out.boot_seconds == 80.5 and out.exit_code == 1

    write_results(tmp_path / "b", Status.SKIP, Status.PASS)
    assert step.outcome_of_run(0, tmp_path / "b", 1.0, "").status is Status.PASS

    write_results(tmp_path / "c", boot_error="the kernel did not boot")
    out = step.outcome_of_run(6, tmp_path / "c", 1.0, "")
    assert out.status is Status.ERROR and out.message == "the kernel did not boot"

    out = step.outcome_of_run(6, tmp_path / "none", 1.0, "error: make failed\n")
    assert out.status is Status.ERROR and "without results.json" in out.message
    assert "make failed" in out.details

    with pytest.raises(step.StepAbort, match="no case collected") as exc:
        step.outcome_of_run(5, tmp_path / "none", 1.0, "")
    assert exc.value.exit_code == ExitCode.NO_TESTS_COLLECTED
    with pytest.raises(KeyboardInterrupt):
        step.outcome_of_run(2, tmp_path / "none", 1.0, "")


def test_run_case_runs_kmatrix_from_the_project_root(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, tmp_path / "linux")
    seen: list[tuple[list[str], Any, Any]] = []

    def fake_run(argv: list[str], *, cwd: Any = None, check: Any = True,
                 **_kw: Any) -> subprocess.CompletedProcess[str]:
        seen.append((argv, cwd, check))
        write_results(tmp_path / "run-1", Status.FAIL)
        return subprocess.CompletedProcess(argv, 1, "1 failed\n")

    monkeypatch.setattr(step, "run", fake_run)
    build = BuildOutcome(True, 1.0, label="src-linux-6.12.0")
    out = step.run_case(config, build, tmp_path / "run-1")
    assert out.status is Status.FAIL and out.exit_code == 1
    argv, cwd, check = seen[0]
    assert argv == step.run_argv(config, "src-linux-6.12.0", tmp_path / "run-1")
    assert cwd == PROJECT_ROOT and check is False
    assert (tmp_path / "run-1.log").read_text().endswith("1 failed\n")


def test_build_failures_are_outcomes_missing_tools_are_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, tmp_path / "linux")
    config.objdir.mkdir(parents=True)
    (config.objdir / "kmatrix-build.log").write_text("netkit.c:1: error: expected ';'\n")

    def failing(*_a: Any, **_kw: Any) -> Any:
        raise CommandError(["make", "bzImage"], 2, "netkit.c:1: error: expected ';'")

    monkeypatch.setattr(kbuild, "build", failing)
    out = step.build_at_head(config, tmp_path / "step")
    assert not out.ok and "expected ';'" in out.message
    assert Path(out.log).read_text() == "netkit.c:1: error: expected ';'\n"

    def missing(*_a: Any, **_kw: Any) -> Any:
        raise MissingToolError("required tool 'flex' not found")

    monkeypatch.setattr(kbuild, "build", missing)
    with pytest.raises(MissingToolError):
        step.build_at_head(config, tmp_path / "step")

    seen: dict[str, Any] = {}

    def built(spec: str, fragments: Any, **kw: Any) -> Any:
        seen.update(kw, spec=spec)
        kernel = SimpleNamespace(label="src-linux-6.12.0", release="6.12.0-kmatrix")
        return SimpleNamespace(kernel=lambda: kernel, seconds=12.5, cached=False,
                               entry=SimpleNamespace(path=tmp_path / "entry"))

    monkeypatch.setattr(kbuild, "build", built)
    out = step.build_at_head(config, tmp_path / "step")
    assert out.ok and out.label == "src-linux-6.12.0" and out.seconds == 12.5
    assert seen["objdir"] == config.objdir and seen["spec"] == str(config.tree)


# --- the builder's pinned O= folder ------------------------------------------------------------


class FakeMake:
    """`make` on a fake tree: allnoconfig, olddefconfig, bzImage."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path]] = []

    def run_make(self, argv: list[str], env: dict[str, str], log: Path, what: str, obj: Path,
                 expected: int = 0, timeout: float = 0) -> str:
        self.calls.append((what, obj))
        if what == "allnoconfig":
            (obj / ".config").write_text("#\n# Linux/x86 6.12.0 Kernel Configuration\n#\n"
                                         "CONFIG_64BIT=y\n")
        elif what.startswith("make"):
            image = obj / "arch" / "x86" / "boot" / "bzImage"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(b"kernel")
        return ""

    @staticmethod
    def run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, "6.12.0-kmatrix\n")


@pytest.fixture
def fake_make(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMake]:
    fake = FakeMake()
    monkeypatch.setattr(plan, "detect_toolchain", lambda: toolchain.Toolchain(
        "gcc (Debian 12.2.0-14) 12.2.0", "v1.24", "x86_64", None))
    monkeypatch.setattr(kbuild, "check_build_tools", lambda merged, tc: None)
    monkeypatch.setattr(kbuild, "run_make", fake.run_make)
    monkeypatch.setattr(make, "run_make", fake.run_make)
    monkeypatch.setattr(kbuild, "run", fake.run)
    yield fake


def test_builder_pins_the_objdir_and_reconfigures_each_commit(
        tmp_path: Path, fake_make: FakeMake) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    objdir = default_objdir(tree, tmp_path / "objs")
    assert objdir.name.startswith("bisect-")
    assert default_objdir(tree, tmp_path).name == objdir.name  # one per tree path
    first = kbuild.build(str(tree), ["base"], objdir=objdir)
    git(tree, "checkout", "-q", commits[0])
    second = kbuild.build(str(tree), ["base"], objdir=objdir)
    assert not first.cached and not second.cached and first.entry.key != second.entry.key
    assert {obj for _, obj in fake_make.calls} == {objdir}  # every make ran in the one folder
    assert [what for what, _ in fake_make.calls] == [
        "allnoconfig", "olddefconfig", "make bzImage"] * 2  # configured again per commit
    assert first.entry.meta["dirkey"] == second.entry.meta["dirkey"] == objdir.name
    again = kbuild.build(str(tree), ["base"], objdir=objdir)
    assert again.cached and again.entry.key == second.entry.key


# --- verdicts ------------------------------------------------------------------------------------


P, F, S, E, C = Status.PASS, Status.FAIL, Status.SKIP, Status.ERROR, Status.CRASH


@pytest.mark.parametrize(("statuses", "runs", "bad_if", "skip_as", "verdict"), [
    ([P], 1, BadIf.ANY, SkipAs.BAD, Verdict.GOOD),
    ([F], 1, BadIf.ANY, SkipAs.BAD, Verdict.BAD),
    ([C], 1, BadIf.ANY, SkipAs.BAD, Verdict.BAD),
    ([E], 1, BadIf.ANY, SkipAs.BAD, Verdict.SKIP),
    ([S], 1, BadIf.ANY, SkipAs.BAD, Verdict.BAD),
    ([S], 1, BadIf.ANY, SkipAs.GOOD, Verdict.GOOD),
    ([S], 1, BadIf.ANY, SkipAs.SKIP, Verdict.SKIP),
    ([P], 3, BadIf.ANY, SkipAs.BAD, None),  # two more runs needed
    ([P, P], 3, BadIf.ANY, SkipAs.BAD, None),
    ([P, P, P], 3, BadIf.ANY, SkipAs.BAD, Verdict.GOOD),
    ([P, F], 3, BadIf.ANY, SkipAs.BAD, Verdict.BAD),  # stops at the first failure
    ([P, E], 3, BadIf.ANY, SkipAs.BAD, Verdict.SKIP),
    ([P, F], 3, BadIf.MAJORITY, SkipAs.BAD, None),
    ([P, F, P], 3, BadIf.MAJORITY, SkipAs.BAD, Verdict.GOOD),
    ([P, P], 3, BadIf.MAJORITY, SkipAs.BAD, Verdict.GOOD),  # 2 of 3 already
    ([F, F], 3, BadIf.MAJORITY, SkipAs.BAD, Verdict.BAD),
    ([P, F], 2, BadIf.MAJORITY, SkipAs.BAD, Verdict.BAD),  # a tie goes to bad
    ([F], 4, BadIf.MAJORITY, SkipAs.BAD, None),
])
def test_runs_decide(statuses: list[Status], runs: int, bad_if: BadIf, skip_as: SkipAs,
                     verdict: Verdict | None) -> None:
    assert decide(statuses, runs, bad_if, skip_as).verdict is verdict


def test_every_sequence_of_runs_ends_decided() -> None:
    import itertools

    for runs in range(1, 5):
        for bad_if in BadIf:
            for seq in itertools.product([P, F], repeat=runs):
                assert decide(seq, runs, bad_if).verdict is not None


def test_exit_codes_and_combined_status() -> None:
    assert [v.exit_code for v in Verdict] == [0, 1, 125, 128]
    assert combine([]) is Status.ERROR
    assert combine([P, S]) is Status.PASS and combine([S, S]) is Status.SKIP
    assert combine([P, E, F]) is Status.FAIL and combine([F, C]) is Status.CRASH
    assert combine([P, E]) is Status.ERROR
    others = [s for s in Status if s not in (P, F, S, E, C)]  # e.g. a case that failed, then
    for status in others:                                     # passed when run again
        assert combine([P, status]) is Status.FAIL
        assert decide([status], 3).verdict is Verdict.BAD


def test_step_record_round_trip(tmp_path: Path) -> None:
    rec = StepRecord("a" * 40, "netkit: refuse L2", Verdict.BAD, "1 of 1 runs failed",
                     build=BuildOutcome(True, 30.0, label="x"),
                     runs=[RunOutcome(Status.FAIL, 95.0, "boom", "tb", 1, 80.0, "d")],
                     started=1.0, finished=2.0)
    rec.save(tmp_path / "steps" / "aaaa")
    assert load_steps(tmp_path) == [rec]
    assert rec.failing_run() == rec.runs[0] and rec.run_seconds == 95.0


def test_git_log_parsing() -> None:
    log = ("git bisect start\n# bad: [" + "b" * 40 + "] c5\n"
           "# possible first bad commit: [" + "c" * 40 + "] c4\n"
           "# possible first bad commit: [" + "d" * 40 + "] c3\n")
    assert first_bad(log) is None and possible_first_bad(log) == ["c" * 40, "d" * 40]
    assert first_bad(log + "# first bad commit: [" + "e" * 40 + "] c2\n") == "e" * 40


# --- the command line ----------------------------------------------------------------------------


def test_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "linux"
    commits = make_history(tree, ["ok", "broken"])
    monkeypatch.chdir(PROJECT_ROOT / "cases")
    args = build_parser().parse_args(
        ["bisect", "--good", commits[0], "--bad", "main", "--tree", str(tree), "--runs", "3",
         "--skip-as", "skip", "--run-arg=--boot-timeout=600", "test_netkit.py::test_x"])
    config = cli_bisect.make_config(args, Path.cwd())
    assert config.case == "cases/test_netkit.py::test_x"  # typed from cases/
    assert config.runs == 3 and config.skip_as is SkipAs.SKIP and config.bad_if is BadIf.ANY
    assert config.run_args == ("--boot-timeout=600",) and config.fragments is None
    assert config.results_dir.parent == PROJECT_ROOT / "results"
    assert config.results_dir.name.startswith("bisect-")
    assert config.objdir.name.startswith("bisect-")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bisect", "--good", "a", "--bad", "b", "--tree", ".",
                                   "--runs", "0", CASE])
    with pytest.raises(UserError, match="no such case file"):
        cli_bisect.project_nodeid("cases/test_nope.py::test_x", PROJECT_ROOT)
    with pytest.raises(UserError, match="not a kernel source tree"):
        cli_bisect.make_config(build_parser().parse_args(
            ["bisect", "--good", "a", "--bad", "b", "--tree", str(tmp_path), CASE]), tmp_path)

    # through main(): a dirty tree is refused with exit code 4 and nothing started
    monkeypatch.setattr(cli_bisect, "check_build_inputs", lambda config: None)
    monkeypatch.chdir(PROJECT_ROOT)
    capsys.readouterr()
    (tree / "state.txt").write_text("edited\n")
    code = main(["bisect", "--good", commits[0], "--bad", "main", "--tree", str(tree),
                 "--results-dir", str(tmp_path / "r"), CASE])
    assert code == ExitCode.USAGE_ERROR
    assert "uncommitted changes" in capsys.readouterr().err
    assert not (tmp_path / "r" / "steps").exists() and not Repo(tree).bisecting()


# --- the real-kernel demo's history (benchmarks/bisect_demo.py) ----------------------------------


def test_demo_history_bisects_to_the_planted_commit(tmp_path: Path,
                                                    fake_step: list[str]) -> None:
    """The demo's six commits as the fake step sees them (ok, ok, ok, the planted one,
    the build break, its fix): the bisect names the planted commit."""
    from benchmarks import bisect_demo

    commits = bisect_demo.demo_commits()
    states = bisect_demo.states(commits)
    assert states == ["ok", "ok", "ok", "broken", "broken nobuild", "broken"]
    assert bisect_demo.states(bisect_demo.demo_commits(build_break=False))[-2] == "broken"
    tree = tmp_path / "linux"
    ids = make_history(tree, states)
    outcome = run_bisect(make_config(tmp_path, tree), fake_step, ids[0], ids[-1])
    planted = next(i for i, c in enumerate(commits, 1) if c.effect == "case")
    assert outcome.first_bad == ids[planted] and outcome.confirmed
    argv = bisect_demo.bisect_argv(tree, ids, Path("results/bisect-demo"))
    args = build_parser().parse_args(argv[1:])
    assert (args.good, args.bad, args.case) == ([ids[0]], ids[-1], bisect_demo.CASE)
    assert (PROJECT_ROOT / bisect_demo.CASE.split("::")[0]).is_file()


@pytest.mark.skipif(not (bisect_demo_source := Path("/tmp/ksrc/linux-source-6.12")).is_dir(),
                    reason="Debian's linux-source-6.12 is not unpacked here")
def test_demo_edits_apply_to_linux_source_6_12(tmp_path: Path) -> None:
    """Each edit finds its text once in the real source; the planted one makes
    netkit_check_mode() refuse L2 and nothing else."""
    from benchmarks import bisect_demo

    commits = bisect_demo.demo_commits()
    bisect_demo.check_source(bisect_demo_source, commits)
    for rel in {e.path for c in commits for e in c.edits}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((bisect_demo_source / rel).read_text())
    for c in commits:
        for edit in c.edits:
            bisect_demo.apply_edit(tmp_path, edit)
    netkit = (tmp_path / bisect_demo.NETKIT).read_text()
    assert "\tcase NETKIT_L2:\n\t\treturn -EOPNOTSUPP;\n\tcase NETKIT_L3:\n\t\treturn 0;" \
        in netkit
    assert (tmp_path / bisect_demo.DEV).read_text() == \
        (bisect_demo_source / bisect_demo.DEV).read_text()  # broken, then fixed
