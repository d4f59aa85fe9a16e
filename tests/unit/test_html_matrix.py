"""matrix.html: the page's data and escaping (plain unit tests), then the page itself in a
real headless browser (Debian's chromium driven by Playwright): click a failing cell, see
its evidence, filter, keep a screenshot beside the page.

The fixture is a trimmed copy of a real three-kernel run (older results.json format) with a
failure (dmesg in its details), a guest crash (kernel report, console tail) and an error
whose text tries to inject markup.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.results.diff import diff_runs
from harness.results.model import RunResults, Status
from harness.results.writers import write_all
from harness.results.writers.html import evidence_sections, html_matrix, page_data

DATA = Path(__file__).parent / "data" / "results-3kernels.json"
CHROMIUM = Path("/usr/bin/chromium")
#: where the browser test also copies its screenshot (besides the test's results folder)
SCREENSHOT_ENV = "KMATRIX_SCREENSHOT_DIR"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FAILING = "cases/test_tcx.py::test_attach[egress]"


def fixture_results() -> RunResults:
    return RunResults.from_json(json.loads(DATA.read_text()))


def test_differing_features_and_cases_come_first() -> None:
    data = page_data(fixture_results())
    assert [k["label"] for k in data["kernels"]] == ["debian-6.1", "debian-6.12", "debian-7.3"]
    flags = [s["differs"] for s in data["suites"]]
    assert flags == sorted(flags, reverse=True)
    for suite in data["suites"]:
        case_flags = [c["differs"] for c in suite["cases"]]
        assert case_flags == sorted(case_flags, reverse=True)
    tcx = next(s for s in data["suites"] if s["name"] == "tcx")
    failing = next(c for c in tcx["cases"] if c["id"] == FAILING)
    assert failing["differs"] and failing["r"]["debian-6.12"]["s"] == "fail"
    assert data["statuses"][:3] == ["crash", "error", "fail"]


def test_evidence_is_cut_into_failure_text_dmesg_and_console() -> None:
    res = fixture_results()
    crash = next(c for c in res.cases if c.status.symbol == "crash")
    titles = [t for t, _ in evidence_sections(crash.details, "crash")]
    assert titles == ["failure text", "kernel report", "console tail"]
    fail = next(c for c in res.cases if c.status.symbol == "fail")
    sections = dict(evidence_sections(fail.details, "fail"))
    assert sections["failure text"].startswith("cases/test_tcx.py:88")
    assert "WARNING: CPU: 1 PID: 412" in sections["dmesg"]
    assert evidence_sections("", "skip") == []


def test_untrusted_text_cannot_break_out_of_the_data() -> None:
    page = html_matrix(fixture_results())
    # the error case's message holds "</script><b>bold</b>" and an <img onerror>: in the page
    # they exist only as escaped JSON
    assert "<b>bold</b>" not in page and "<img src=x" not in page
    assert page.count("</script>") == 2  # the data element's and the script's own
    assert "\\u003cscript\\u003ealert" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_every_run_writes_the_page_and_it_is_deterministic(tmp_path: Path) -> None:
    res = fixture_results()
    paths = write_all(res, tmp_path)
    assert paths["html"] == tmp_path / "matrix.html"
    assert paths["html"].read_text() == html_matrix(res)
    again = RunResults.from_json(json.loads((tmp_path / "results.json").read_text()))
    assert html_matrix(again) == paths["html"].read_text()


def test_changes_from_kmatrix_diff() -> None:
    before = fixture_results()
    after = fixture_results()
    fixed = next(c for c in after.cases if c.status is Status.FAIL)
    fixed.status = Status.PASS
    after.kernels["debian-6.1"].probes["tcx"] = {"supported": True, "detail": "link id 1"}
    data = page_data(after, diff_runs(before, after, "runs/a", "runs/b"))
    changes = data["changes"]
    assert changes["title"] == "changes from runs/a to runs/b"
    assert changes["sections"]["fixed"] == [
        f"debian-6.12: {FAILING} fail -> pass: "
        "AssertionError: tcx link did not see the packet: counter 0 != 1"]
    assert changes["sections"]["newly supported"][0].startswith(
        "debian-6.1: tcx unsupported -> supported")
    assert "new failures" not in changes["sections"]
    assert page_data(after)["changes"] is None


# --- in a browser -----------------------------------------------------------------------


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    """A headless chromium page (Playwright over Debian's chromium, never a downloaded
    browser) and the results folder the test writes into."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (scripts/bootstrap)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e .[dev])")
    results = tmp_path / "results"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1500, "height": 950})
        try:
            page = context.new_page()
            yield page, results
        finally:
            context.close()


@pytest.mark.browser
def test_click_a_failing_cell_shows_its_evidence(browser_page: tuple[object, Path]) -> None:
    from playwright.sync_api import Dialog, Page, expect

    page, results = browser_page
    assert isinstance(page, Page)
    paths = write_all(fixture_results(), results)
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(paths["html"].as_uri())
    page.wait_for_selector("body[data-ready='1']")

    # the feature row: tcx on debian-6.12 holds the failure
    suite_cell = page.locator('td.cell[data-suite="tcx"][data-kernel="debian-6.12"]')
    expect(suite_cell).to_contain_text("1 fail")
    suite_cell.locator("button").click()
    evidence = page.locator("#evidence")
    expect(evidence).to_contain_text("tcx on debian-6.12")
    expect(evidence).to_contain_text("AssertionError: tcx link did not see the packet")

    # the case row's cell: the whole evidence
    page.locator('tr.suite[data-suite="tcx"] button.toggle').click()
    cell = page.locator(f'td.cell[data-case="{FAILING}"][data-kernel="debian-6.12"]')
    expect(cell).to_have_attribute("data-status", "fail")
    cell.locator("button").click()
    expect(evidence).to_contain_text(f"{FAILING} on debian-6.12")
    expect(evidence).to_contain_text("failure text")
    expect(evidence).to_contain_text("WARNING: CPU: 1 PID: 412 at net/core/dev.c:2361")
    expect(evidence).to_contain_text("bpf_link_create(BPF_TCX_INGRESS) on lo")  # the probe
    expect(evidence).to_contain_text("since 6.6; CONFIG_NET_XGRESS=y")  # the expectation
    expect(evidence).to_contain_text("counter 0 after 1 packet")  # observed

    # filters: only what did not pass or skip, then one feature
    page.uncheck('#outcomes input[data-status="pass"]')
    page.uncheck('#outcomes input[data-status="skip"]')
    expect(page.locator("tr.case")).to_have_count(3)
    page.select_option("#suite-filter", "netkit")
    expect(page.locator("tr.suite")).to_have_count(1)
    crash = page.locator('tr.case td.cell[data-status="crash"]')
    expect(crash).to_have_count(1)
    crash.locator("button").click()
    expect(evidence).to_contain_text("Kernel panic - not syncing")
    expect(evidence).to_contain_text("console tail")

    # the injected markup is shown as text and never ran
    page.select_option("#suite-filter", "sockmap")
    page.locator('tr.case td.cell[data-status="error"] button').click()
    expect(evidence).to_contain_text("<script>alert('x')</script>")
    expect(evidence).to_contain_text("<img src=x onerror=alert(1)>")
    assert page.locator("#evidence b, #evidence img, #evidence script").count() == 0
    assert dialogs == [] and errors == []

    page.select_option("#suite-filter", "tcx")
    page.check('#outcomes input[data-status="pass"]')
    page.locator(f'td.cell[data-case="{FAILING}"][data-kernel="debian-6.12"] button').click()
    page.mouse.move(0, 0)  # no hover outline in the picture
    shot = paths["html"].with_name("matrix.png")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        dest = Path(os.environ[SCREENSHOT_ENV])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, dest / shot.name)
        shutil.copy2(paths["html"], dest / paths["html"].name)


@pytest.mark.browser
def test_changes_section_in_the_browser(browser_page: tuple[object, Path]) -> None:
    from playwright.sync_api import Page, expect

    page, results = browser_page
    assert isinstance(page, Page)
    before, after = fixture_results(), fixture_results()
    next(c for c in after.cases if c.status is Status.FAIL).status = Status.PASS
    results.mkdir(parents=True)
    path = results / "matrix.html"
    path.write_text(html_matrix(after, diff_runs(before, after, "runs/a", "runs/b")))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    changes = page.locator("#changes")
    expect(changes).to_be_visible()
    expect(changes).to_contain_text("changes from runs/a to runs/b")
    expect(changes).to_contain_text("fixed (1)")
    expect(changes).to_contain_text(f"debian-6.12: {FAILING} fail -> pass")
