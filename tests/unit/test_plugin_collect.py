"""Host-side collection: one item per (case, kernel), kernel last in the id, grouped by
kernel, guest node ids without the kernel. Uses a fake bzImage: nothing boots here."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, cast

import pytest

from harness.nodeid import without_kernel as guest_name
from harness.pytest_plugin.recorder import ResultRecorder
from harness.results.model import CaseResult, Status

pytest_plugins = ["pytester"]


def test_guest_name() -> None:
    assert guest_name("test_x[debian-6.12]", "debian-6.12") == "test_x"
    assert guest_name("test_x[ingress-debian-6.12]", "debian-6.12") == "test_x[ingress]"
    with pytest.raises(ValueError):
        guest_name("test_x[debian-6.12-ingress]", "debian-6.12")


def _fake_kernel(path: Path) -> str:
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return str(path)


def test_items_per_kernel(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    cases = pytester.mkdir("cases")
    (cases / "test_demo.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('hook', ['ingress', 'egress'])\n"
        "def test_attach(hook):\n    pass\n"
        "def test_plain():\n    pass\n")
    (pytester.path / "test_host.py").write_text("def test_host_only():\n    pass\n")
    k1 = _fake_kernel(pytester.path / "kA")
    k2 = _fake_kernel(pytester.path / "kB")
    result = pytester.runpytest("--kernel", k1, "--kernel", k2, "--collect-only", "-q",
                                "-p", "no:cacheprovider")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "test_host.py::test_host_only",
        "cases/test_demo.py::test_attach[ingress-kA]",
        "cases/test_demo.py::test_attach[egress-kA]",
        "cases/test_demo.py::test_plain[kA]",
        "cases/test_demo.py::test_attach[ingress-kB]",
        "cases/test_demo.py::test_attach[egress-kB]",
        "cases/test_demo.py::test_plain[kB]",
    ]
    # -k selects on the kernel id as on any other id part
    result = pytester.runpytest("--kernel", k1, "--kernel", k2, "--collect-only", "-q",
                                "-k", "kB and plain", "-p", "no:cacheprovider")
    assert [line for line in result.outlines if "::" in line] == [
        "cases/test_demo.py::test_plain[kB]"]


def test_without_kernel_cases_skip(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    cases = pytester.mkdir("cases")
    (cases / "test_demo.py").write_text("def test_plain():\n    raise AssertionError\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*guest case: give --kernel SPEC*"])


def test_bad_kernel_is_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    result = pytester.runpytest("--kernel", "/nonexistent", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*kernel '/nonexistent': no such file or directory*"])


def test_kernel_label_of() -> None:
    from harness.nodeid import kernel_label_of

    labels = ["debian-6.1", "debian-6.12"]
    assert kernel_label_of("c/t.py::test_x[debian-6.12]", labels) == "debian-6.12"
    assert kernel_label_of("c/t.py::test_x[ingress-debian-6.1]", labels) == "debian-6.1"
    assert kernel_label_of("c/t.py::test_x[ingress]", labels) is None



def _recorder(label: str) -> tuple[ResultRecorder, list[CaseResult]]:
    """A ResultRecorder over a stand-in session state that knows one kernel label."""
    recorded: list[CaseResult] = []
    state = SimpleNamespace(kernels=[SimpleNamespace(label=label)], record=recorded.append)
    return ResultRecorder(cast(Any, state)), recorded


def test_recorded_duration_counts_every_phase() -> None:
    """A guest item works in setup (boot, then the case in the guest): the recorded time
    (JUnit's `time`) counts every phase, not the ~0 s call phase alone."""
    recorder, recorded = _recorder("debian-6.12")
    nodeid = "cases/test_tcx.py::test_a[debian-6.12]"
    phases: tuple[tuple[Literal["setup", "call", "teardown"], float], ...] = (
        ("setup", 2.5), ("call", 0.001), ("teardown", 0.002))
    for when, duration in phases:
        rep = _report(nodeid, when)
        rep.duration = duration
        recorder.pytest_runtest_logreport(rep)
    assert [(c.status, round(c.duration, 3)) for c in recorded] == [(Status.PASS, 2.503)]


def _report(nodeid: str, when: Literal["setup", "call", "teardown"],
            outcome: Literal["passed", "failed", "skipped"] = "passed",
            longrepr: Any = None) -> pytest.TestReport:
    return pytest.TestReport(nodeid, ("x", None, "t"), {}, outcome, longrepr, when)


def test_xfail_message_is_its_reason() -> None:
    recorder, recorded = _recorder("debian-6.1")
    nodeid = "cases/t.py::t[debian-6.1]"
    report = _report(nodeid, "call", "skipped", "reader = <socket ...>\nXFailed")
    report.wasxfail = "kernel gap: FIONREAD is 0"
    for rep in (_report(nodeid, "setup"), report, _report(nodeid, "teardown")):
        recorder.pytest_runtest_logreport(rep)
    assert [(c.status, c.message) for c in recorded] == [
        (Status.SKIP, "xfail: kernel gap: FIONREAD is 0")]


def test_one_result_per_case_teardown_error_after_pass() -> None:
    """A guest teardown error after a pass is one ERROR, not a PASS and an ERROR."""
    recorder, recorded = _recorder("debian-6.12")
    nodeid = "cases/t.py::t[debian-6.12]"
    for rep in (_report(nodeid, "setup"), _report(nodeid, "call"),
                _report(nodeid, "teardown", "failed", "error in guest teardown: boom")):
        recorder.pytest_runtest_logreport(rep)
    assert [(c.nodeid, c.status) for c in recorded] == [(nodeid, Status.ERROR)]


def test_interrupted_case_is_recorded_once_at_the_end() -> None:
    recorder, recorded = _recorder("debian-6.12")
    nodeid = "cases/t.py::t[debian-6.12]"
    recorder.pytest_runtest_logreport(_report(nodeid, "setup"))
    assert recorded == []
    recorder.finish_pending()
    assert [(c.status, c.message) for c in recorded] == [
        (Status.ERROR, "the case's setup passed but its body never ran (no call phase "
                       "reported)")]


def test_plan_units_shares_kernels_over_workers() -> None:
    from harness.pytest_plugin.scheduling import plan_units

    a, b, c = list(range(0, 10)), list(range(10, 18)), list(range(18, 24))
    # one worker: whole kernels in matrix order
    assert plan_units([a, b, c], 1, min_cut=1) == [a, b, c]
    # two workers, three kernels: the two largest whole, the smallest in halves
    assert plan_units([a, b, c], 2, min_cut=1) == [a, b, [18, 19, 20], [21, 22, 23]]
    # ... unless it is too small to be worth a second boot
    assert plan_units([a, b, c], 2, min_cut=7) == [a, b, c]
    # two kernels, two workers: one each
    assert plan_units([a, b], 2, min_cut=1) == [a, b]
    # one kernel, two workers: both boot it and share its cases
    assert plan_units([a], 2, min_cut=1) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert sorted(i for u in plan_units([a, b, c], 2, min_cut=1) for i in u) == list(range(24))


def test_skip_marks_are_the_guests(pytester: pytest.Pytester) -> None:
    """A skipif condition is evaluated in the guest (where it means what it says), not on
    the host: the host item keeps the other markers (for -m) and the case's line."""
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    cases = pytester.mkdir("cases")
    (cases / "test_demo.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.slow\n"
        "@pytest.mark.skipif(True, reason='decided in the guest')\n"
        "def test_marked():\n    pass\n")
    k1 = _fake_kernel(pytester.path / "kA")
    items: list[pytest.Item] = []

    class Grab:
        def pytest_collection_finish(self, session: pytest.Session) -> None:
            items.extend(session.items)

    pytester.inline_run("--kernel", k1, "--collect-only", "-p", "no:cacheprovider",
                        "-m", "slow", plugins=[Grab()])
    (item,) = items
    assert [m.name for m in item.iter_markers()] == ["slow"]
    assert item.reportinfo()[1] == 2  # 0-based, its first decorator (as pytest says)


def test_default_run_takes_the_default_cases_only(pytester: pytest.Pytester) -> None:
    """With no test path, `kmatrix run` runs kmatrix_default_cases, not every case folder
    (kmatrix's own VM tests keep cases that panic and hang on purpose)."""
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases vmcases\n"
                     "kmatrix_default_cases = cases\n")
    for folder in ("cases", "vmcases"):
        pytester.mkdir(folder)
        (pytester.path / folder / f"test_{folder}.py").write_text("def test_x():\n    pass\n")
    k1 = _fake_kernel(pytester.path / "kA")
    result = pytester.runpytest("--kernel", k1, "--cases-by-default", "--collect-only", "-q",
                                "-p", "no:cacheprovider")
    assert [line for line in result.outlines if "::" in line] == [
        "cases/test_cases.py::test_x[kA]"]


def test_default_run_started_outside_the_project(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """`kmatrix run` from another folder (it passes --rootdir and -c): the project's
    conftest.py names plugins, and pytest refuses that in a conftest it meets only while
    collecting; the case folders are where the initial conftests are looked for."""
    pytester.makeini("[pytest]\nkmatrix_case_dirs = cases\n")
    pytester.makeconftest("pytest_plugins = ['helpers']\n")
    (pytester.path / "helpers.py").write_text("import pytest\n"
                                              "@pytest.fixture\ndef helper():\n    return 1\n")
    pytester.mkdir("cases")
    (pytester.path / "cases" / "test_c.py").write_text("def test_x(helper):\n    pass\n")
    k1 = _fake_kernel(pytester.path / "kA")
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # not inside the project
    monkeypatch.syspath_prepend(pytester.path)
    result = pytester.runpytest("--rootdir", str(pytester.path),
                                "-c", str(pytester.path / "tox.ini"), "--kernel", k1,
                                "--cases-by-default", "--collect-only", "-q",
                                "-p", "no:cacheprovider")
    assert "non-top-level" not in result.stdout.str()
    assert [line for line in result.outlines if "::" in line] == [
        "cases/test_c.py::test_x[kA]"]


@pytest.mark.parametrize("where", ["checkout", "elsewhere"])
def test_kmatrix_run_collects_quietly(tmp_path: Path, where: str) -> None:
    """`kmatrix run` (no test path, two kernels: two xdist workers) collects the default
    cases from the checkout and from a folder outside it, without pytest's warning that
    `harness` could not be rewritten (an xdist worker started in the checkout has it
    imported already)."""
    import subprocess
    import sys

    from harness.paths import PROJECT_ROOT

    kernels = [_fake_kernel(tmp_path / "kA"), _fake_kernel(tmp_path / "kB")]
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--kernel", kernels[0],
                           "--kernel", kernels[1], "-n", "2", "--no-live",
                           "--results-dir", str(tmp_path / "results"),
                           "--collect-only", "-p", "no:cacheprovider"],
                          cwd=PROJECT_ROOT if where == "checkout" else tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert " tests collected in " in last and "error" not in last, last
    assert "cannot be rewritten" not in proc.stdout
