"""matrix.html: the run as one self-contained page that people look at rather than read.

Kernels are columns, features (suites) are rows that expand to their cases; a cell is
coloured by its worst outcome and carries its counts; a click on a cell opens its evidence
(the kernel's probe answer and errno, the expectation it was held to, the failure text, the
dmesg slice, the console tail, what the case observed). Filters by outcome and by suite;
the features and cases whose verdicts differ between kernels come first.

Rendering: the run is embedded once as JSON (`<script type="application/json">`) and a
small vanilla script builds the table. Server-side rendering would put every case row of
every kernel, with its evidence, into the DOM up front (2000 cases x 10 kernels is 20 000
cells); from JSON the page builds the feature rows at load, a feature's case rows only
when it is expanded (or a filter needs them) and the evidence of the one cell clicked, so
it stays quick at that size, and each text is in the file once.

Safety: case output is untrusted text. It goes into the page only as JSON data (with `<`,
`>` and `&` escaped, so nothing can close the script element) and into the DOM only with
`textContent`/`append(string)`, never as HTML. No network: inline CSS and script, and a
Content-Security-Policy that forbids every fetch.

Deterministic: the page is a function of the `RunResults` alone (no clock, no file read),
so a merged sharded run writes the same page as the unsharded one.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ...nodeid import case_id
from ..diff import CaseChange, ProbeChange, RunDiff
from ..model import CaseResult, KernelInfo, RunResults, Status

#: where the harness's texts (harness/pytest_plugin/{verdict,items}.py,
#: harness/results/phases.py) start a new kind of evidence inside `CaseResult.details`
EVIDENCE_MARKERS: tuple[tuple[str, str], ...] = (
    ("the kernel reported problems during this case:", "dmesg"),
    ("kernel messages after this case ended:", "dmesg after the case ended"),
    ("--- kernel report ---", "kernel report"),
    ("--- console tail", "console tail"),
    ("--- the case's output ---", "case output"),
)

#: the title of the text before the first marker, by outcome
_FIRST_SECTION = {"skip": "skip reason", "fail": "failure text", "crash": "failure text",
                  "error": "error text"}

#: kernel messages of the probes kept per kernel (the tail)
PROBE_DMESG_LINES = 60



def evidence_sections(details: str, status: str = "") -> list[tuple[str, str]]:
    """`details` cut where the harness starts a new kind of evidence: [(title, text)], the
    failure text (or skip reason) first, then dmesg, kernel report, console tail ..."""
    sections: list[tuple[str, str]] = []
    title = _FIRST_SECTION.get(status, "details")
    lines: list[str] = []
    for line in details.splitlines():
        hit = next((name for marker, name in EVIDENCE_MARKERS if line.startswith(marker)),
                   None)
        if hit is not None:
            if "\n".join(lines).strip():
                sections.append((title, "\n".join(lines).strip("\n")))
            title, lines = hit, []
        lines.append(line)
    if "\n".join(lines).strip():
        sections.append((title, "\n".join(lines).strip("\n")))
    return sections


def _result(c: CaseResult) -> dict[str, Any]:
    out: dict[str, Any] = {"s": c.status.symbol}
    if c.message:
        out["m"] = c.message
    if c.details and c.details.strip() != c.message.strip():
        out["e"] = [list(s) for s in evidence_sections(c.details, c.status.symbol)]
    if c.observed:
        out["o"] = c.observed
    if c.output:
        out["out"] = c.output
    if c.evidence:  # what the stack counted and dropped during the case
        from ...guest.evidence.model import render

        stack = render(c.evidence)
        if stack:
            out["st"] = stack
    out["d"] = round(c.duration, 3)
    if c.guest_duration:
        out["g"] = round(c.guest_duration, 3)
    return out


def _kernel(info: KernelInfo) -> dict[str, Any]:
    return {
        "label": info.label, "spec": info.spec, "origin": info.origin,
        "release": info.release, "package_version": info.package_version,
        "accel": info.accel, "accel_reason": info.accel_reason, "vcpus": info.vcpus,
        "memory": info.memory, "boots": info.boots, "boot_error": info.boot_error,
        "probes": info.probes, "expect": info.expect,
        "probe_dmesg": info.probe_dmesg[-PROBE_DMESG_LINES:], "crosscheck": info.crosscheck,
    }


def _case_line(c: CaseChange) -> str:
    return f"{c.kernel}: {c.case} {c.transition}" + (f": {c.message}" if c.message else "")


def _probe_line(p: ProbeChange) -> str:
    return (f"{p.kernel}: {p.feature} {p.before or 'not probed'} -> {p.after or 'not probed'}"
            + (f" ({p.detail})" if p.detail else ""))


def changes_data(d: RunDiff) -> dict[str, Any]:
    """`kmatrix diff`'s findings (harness.results.diff) as the page's "changes" section:
    a heading -> one line per change, the empty headings left out."""
    sections: dict[str, list[str]] = {
        "new failures": [_case_line(c) for k in d.kernels for c in k.new_failures],
        "fixed": [_case_line(c) for k in d.kernels for c in k.fixed],
        "newly supported": [_probe_line(p) for k in d.kernels for p in k.newly_supported],
        "newly unsupported": [_probe_line(p) for k in d.kernels for p in k.newly_unsupported],
        "other probe changes": [_probe_line(p) for k in d.kernels for p in k.probes_changed],
        "other verdict changes": [_case_line(c) for k in d.kernels for c in k.changed],
        "cases added": [_case_line(c) for k in d.kernels for c in k.added],
        "cases removed": [_case_line(c) for k in d.kernels for c in k.removed],
    }
    versions = [f"{k.label}: {k.version_before or '-'} -> {k.version_after or '-'}"
                for k in d.kernels if k.version_before != k.version_after]
    if versions:
        sections = {"kernel versions": versions, **sections}
    return {"title": f"changes from {d.a} to {d.b}",
            "sections": {k: v for k, v in sections.items() if v}}


def page_data(results: RunResults, diff: RunDiff | None = None,
              title: str = "kmatrix matrix") -> dict[str, Any]:
    """What the page shows, as plain JSON data: kernels, features (suites) with their
    cases, one result per (case, kernel); differing features and cases first; with `diff`
    (this run as its run B), what changed since run A."""
    labels = list(results.kernels) + sorted(
        {c.kernel for c in results.cases} - set(results.kernels))
    cases: dict[tuple[str, str], dict[str, Any]] = {}
    for c in results.cases:
        cid = case_id(c.nodeid, c.kernel)
        row = cases.setdefault((c.feature, cid), {"id": cid, "suite": c.feature, "r": {}})
        row["r"][c.kernel] = _result(c)  # a case recorded twice: the last result wins
    for row in cases.values():
        row["differs"] = len({row["r"].get(lb, {}).get("s", "-") for lb in labels}) > 1
    suites: dict[str, list[dict[str, Any]]] = {}
    for row in cases.values():
        suites.setdefault(row["suite"], []).append(row)
    suite_rows = []
    for name, rows in suites.items():
        rows.sort(key=lambda r: (not r["differs"], r["id"]))
        suite_rows.append({"name": name, "differs": any(r["differs"] for r in rows),
                           "cases": rows})
    suite_rows.sort(key=lambda s: (not s["differs"], s["name"]))
    present = {c.status for c in results.cases}
    statuses = sorted(set(Status) | present, key=lambda s: -int(s))
    return {
        "title": title,
        "kernels": [_kernel(results.kernels.get(lb) or KernelInfo(lb)) for lb in labels],
        "statuses": [s.symbol for s in statuses],
        "suites": suite_rows,
        "changes": changes_data(diff) if diff is not None else None,
    }


def _script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: nothing in it can end the element or
    start a comment/CDATA, whatever the run's texts contain."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def html_matrix(results: RunResults, diff: RunDiff | None = None,
                title: str = "kmatrix matrix") -> str:
    """The whole page (one file: inline style and script, the run as JSON); with `diff`
    (`harness.results.diff.diff_runs(A, results)`), a section of what changed since A."""
    return _PAGE.format(title=html.escape(title), style=_STYLE, script=_SCRIPT,
                        data=_script_json(page_data(results, diff, title)))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p id="summary"></p>
<div id="filters" role="group" aria-label="filters">
<span id="outcomes"></span>
<label>feature <select id="suite-filter"><option value="">all</option></select></label>
<label><input type="checkbox" id="differs-only"> differences between kernels only</label>
<label>case <input type="search" id="search" placeholder="name contains"></label>
<button type="button" id="expand-all">expand all</button>
<button type="button" id="collapse-all">collapse all</button>
</div>
</header>
<section id="changes" hidden></section>
<main>
<div id="matrix-wrap"><table id="matrix"><thead></thead><tbody></tbody></table>
<p id="empty" hidden>No case matches the filters.</p></div>
<aside id="evidence" aria-live="polite" hidden></aside>
</main>
<noscript>This page needs JavaScript to draw the matrix; results.json, junit.xml and
matrix.md beside it hold the same data.</noscript>
<script type="application/json" id="kmx-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""

_STYLE = """
:root { --pass:#cdeccf; --fail:#f6c4c4; --crash:#e3b6f0; --error:#ffd8a8; --skip:#e6e8eb;
  --flaky:#fff0a8; --other:#d9e2ff; --border:#c6cbd1; font-family: system-ui, sans-serif; }
body { margin: 0; font-size: 14px; color: #1b1f24; }
header { padding: 8px 16px; border-bottom: 1px solid var(--border); background: #f6f8fa; }
h1 { font-size: 18px; margin: 4px 0; }
#summary { margin: 4px 0; }
#filters { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: center; }
#outcomes label { margin-right: 8px; padding: 1px 6px; border-radius: 4px; }
main { display: flex; align-items: flex-start; }
#matrix-wrap { flex: 1 1 auto; overflow: auto; max-height: calc(100vh - 110px); }
table { border-collapse: collapse; margin: 8px 16px; }
th, td { border: 1px solid var(--border); padding: 0; vertical-align: top; }
thead th { position: sticky; top: 0; background: #fff; z-index: 1; }
th.kernel button { font-weight: 600; }
th.kernel small { display: block; font-weight: normal; color: #57606a; }
td.name, th.name { text-align: left; padding: 3px 8px; min-width: 260px; max-width: 520px; }
tr.suite td.name { font-weight: 600; }
tr.case td.name { padding-left: 28px; font-family: ui-monospace, monospace; font-size: 12px;
  word-break: break-all; }
.differs { font-size: 11px; color: #9a3412; font-weight: 600; margin-left: 6px; }
td button, th button { display: block; width: 100%; border: 0; background: transparent;
  padding: 3px 8px; text-align: left; font: inherit; cursor: pointer; color: inherit; }
td.cell button:hover, th button:hover { outline: 2px solid #0969da; }
button.toggle { display: inline; width: auto; padding: 0 4px 0 0; }
.chip { display: inline-block; margin-right: 6px; white-space: nowrap; }
.st-pass { background: var(--pass); } .st-fail { background: var(--fail); }
.st-crash { background: var(--crash); } .st-error { background: var(--error); }
.st-skip { background: var(--skip); } .st-flaky { background: var(--flaky); }
.st-other { background: var(--other); } .st-none { background: #fff; color: #8c959f; }
td.selected { outline: 3px solid #0969da; outline-offset: -3px; }
#evidence { flex: 0 0 44%; max-height: calc(100vh - 110px); overflow: auto;
  border-left: 1px solid var(--border); padding: 8px 16px; box-sizing: border-box; }
#evidence h2 { font-size: 16px; margin: 4px 0 8px; word-break: break-all; }
#evidence h3 { font-size: 13px; margin: 12px 0 4px; text-transform: uppercase;
  color: #57606a; }
#evidence pre { white-space: pre-wrap; word-break: break-word; background: #f6f8fa;
  border: 1px solid var(--border); padding: 6px; margin: 0; font-size: 12px;
  max-height: 420px; overflow: auto; }
#evidence .close { float: right; width: auto; }
#evidence ul { padding-left: 18px; margin: 4px 0; }
#evidence li button { display: inline; width: auto; padding: 0; text-decoration: underline;
  color: #0969da; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; word-break: break-word; }
#changes { margin: 8px 16px; padding: 4px 12px; border: 1px solid var(--border);
  background: #fffbe6; }
#changes h2 { font-size: 15px; margin: 4px 0; } #changes summary { cursor: pointer; }
"""

_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("kmx-data").textContent);
  const kernels = data.kernels;
  const known = new Set(["pass", "fail", "crash", "error", "skip", "flaky"]);
  const rank = new Map(data.statuses.map((s, i) => [s, data.statuses.length - i]));
  const state = { outcomes: new Set(data.statuses), suite: "", differsOnly: false,
                  search: "", expanded: new Set() };

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  const stClass = (s) => "st-" + (s === undefined ? "none" : known.has(s) ? s : "other");
  const worst = (list) => list.reduce((a, b) => ((rank.get(b) || 0) > (rank.get(a) || 0)
                                                  ? b : a), undefined);
  const firstLine = (t) => (t || "").split("\n").find((l) => l.trim()) || "";
  const shortName = (id) => (id.includes("::") ? id.slice(id.indexOf("::") + 2) : id);

  function countsOf(suite, label) {
    const counts = new Map();
    for (const c of suite.cases) {
      const r = c.r[label];
      if (r) counts.set(r.s, (counts.get(r.s) || 0) + 1);
    }
    return counts;
  }
  function caseVisible(c) {
    if (state.differsOnly && !c.differs) return false;
    if (state.search && !c.id.toLowerCase().includes(state.search)) return false;
    return kernels.some((k) => c.r[k.label] && state.outcomes.has(c.r[k.label].s));
  }
  const narrowed = () => state.differsOnly || state.search !== "" ||
    state.outcomes.size !== data.statuses.length;

  // --- the table ---------------------------------------------------------------------
  const thead = document.querySelector("#matrix thead");
  const tbody = document.querySelector("#matrix tbody");
  function drawHead() {
    const row = el("tr", {}, el("th", { class: "name", text: "feature / case" }));
    for (const k of kernels) {
      row.append(el("th", { class: "kernel", dataset: { kernel: k.label } },
        el("button", { type: "button", title: "kernel details", onclick: () => showKernel(k) },
          k.label, el("small", { text: k.release || (k.boot_error ? "did not boot" : "") }))));
    }
    thead.replaceChildren(row);
  }
  function suiteRow(suite, shown) {
    const isOpen = state.expanded.has(suite.name) || narrowed();
    const name = el("td", { class: "name" },
      el("button", { type: "button", class: "toggle", "aria-expanded": String(isOpen),
                     title: isOpen ? "collapse" : "expand", onclick: () => toggle(suite.name) },
         isOpen ? "\u25be" : "\u25b8"),
      suite.name, " ", el("small", { text: `(${shown}/${suite.cases.length} cases)` }),
      suite.differs ? el("span", { class: "differs", text: "differs" }) : null);
    const row = el("tr", { class: "suite", dataset: { suite: suite.name } }, name);
    for (const k of kernels) {
      const counts = countsOf(suite, k.label);
      const cell = el("td", { class: "cell " + stClass(worst([...counts.keys()])),
                              dataset: { suite: suite.name, kernel: k.label } });
      const button = el("button", { type: "button", onclick: () => select(cell,
        () => showSuite(suite, k)) });
      if (counts.size === 0) button.append("-");
      for (const s of data.statuses) {
        if (!counts.get(s)) continue;
        button.append(el("span", { class: "chip", text: `${counts.get(s)} ${s}` }));
      }
      cell.append(button);
      row.append(cell);
    }
    return row;
  }
  function caseRow(c) {
    const name = el("td", { class: "name", title: c.id },
      shortName(c.id),
      c.differs ? el("span", { class: "differs", text: "differs" }) : null);
    const row = el("tr", { class: "case", dataset: { case: c.id } }, name);
    for (const k of kernels) {
      const r = c.r[k.label];
      const cell = el("td", { class: "cell " + stClass(r && r.s),
                              dataset: { case: c.id, kernel: k.label, status: r ? r.s : "" } });
      const button = el("button", { type: "button", title: r ? firstLine(r.m) : "not run",
        onclick: () => select(cell, () => showCase(c, k)) }, r ? r.s : "-");
      if (r && r.o) button.append(el("small", { text: " \u00b7 " + r.o }));
      cell.append(button);
      row.append(cell);
    }
    return row;
  }
  function draw() {
    const frag = document.createDocumentFragment();
    let any = false;
    for (const suite of data.suites) {
      if (state.suite && suite.name !== state.suite) continue;
      const visible = suite.cases.filter(caseVisible);
      if (visible.length === 0 && narrowed()) continue;
      any = true;
      frag.append(suiteRow(suite, visible.length));
      if (state.expanded.has(suite.name) || narrowed()) {
        for (const c of visible) frag.append(caseRow(c));
      }
    }
    tbody.replaceChildren(frag);
    document.getElementById("empty").hidden = any;
  }
  function toggle(name) {
    if (state.expanded.has(name)) state.expanded.delete(name); else state.expanded.add(name);
    draw();
  }
  function select(cell, show) {
    for (const old of document.querySelectorAll("td.selected")) old.classList.remove("selected");
    cell.classList.add("selected");
    show();
  }

  // --- evidence ----------------------------------------------------------------------
  const panel = document.getElementById("evidence");
  function open(title, status, ...blocks) {
    const close = el("button", { type: "button", class: "close",
                                 onclick: () => { panel.hidden = true; } }, "close");
    const head = el("h2", {}, title);
    if (status) head.append(" ", el("span", { class: "chip " + stClass(status), text: status }));
    panel.replaceChildren(close, head, ...blocks.flat(3).filter(Boolean));
    panel.hidden = false;
    panel.scrollTop = 0;
  }
  const block = (title, text) => (
    text ? [el("h3", { text: title }), el("pre", { text: String(text) })] : []);
  function facts(pairs) {
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of pairs) {
      if (v === "" || v === undefined || v === null) continue;
      dl.append(el("dt", { text: k }), el("dd", { text: String(v) }));
    }
    return dl;
  }
  function probeState(p) {
    return p.status || (p.supported ? "supported" : "unsupported");
  }
  function probeBlocks(k, names) {
    const out = [];
    for (const name of names) {
      const p = k.probes[name];
      const x = k.expect[name];
      if (!p && !x) continue;
      out.push(el("h3", { text: `probe ${name}` }));
      out.push(facts([
        ["answer", p ? probeState(p) : "not probed"],
        ["expected", x ? `${x.expected ? "yes" : "no"} (${x.state || "?"})` : "no expectation"],
        ["why", x ? x.reason : ""]]));
      if (p && p.detail) out.push(el("pre", { text: String(p.detail) }));
    }
    return out;
  }
  function probesNamed(k, suiteName, texts) {
    const names = new Set();
    if (suiteName in k.probes || suiteName in k.expect) names.add(suiteName);
    for (const t of texts) {
      for (const m of (t || "").matchAll(/probe ([A-Za-z0-9_]+)/g)) {
        if (m[1] in k.probes || m[1] in k.expect) names.add(m[1]);
      }
    }
    return [...names];
  }
  function showCase(c, k) {
    const r = c.r[k.label];
    if (!r) {
      open(`${c.id} on ${k.label}`, null, el("p", { text: "not run on this kernel" }));
      return;
    }
    const sections = r.e || [];
    const texts = [r.m, ...sections.map((s) => s[1])];
    open(`${c.id} on ${k.label}`, r.s,
      facts([["feature", c.suite], ["kernel", `${k.label} ${k.release || ""}`],
             ["host s", r.d], ["guest s", r.g], ["observed", r.o]]),
      block("message", r.m),
      probeBlocks(k, probesNamed(k, c.suite, texts)),
      sections.map((s) => block(s[0], s[1])),
      block("observed behaviour", r.o),
      block("the stack saw (counters, drop reasons)", r.st),
      block("output", r.out),
      k.boot_error ? block("kernel boot error", k.boot_error) : []);
  }
  function showSuite(suite, k) {
    const counts = countsOf(suite, k.label);
    const notPassing = suite.cases.filter((c) => c.r[k.label] && c.r[k.label].s !== "pass");
    // one entry per (outcome, first line of the message): 49 skips for one probe answer
    // read as one line with their cases, not as 49 lines
    const groups = new Map();
    for (const c of notPassing) {
      const r = c.r[k.label];
      const key = r.s + "\u0000" + firstLine(r.m);
      if (!groups.has(key)) groups.set(key, { s: r.s, m: firstLine(r.m), cases: [] });
      groups.get(key).cases.push(c);
    }
    const ordered = [...groups.values()].sort(
      (a, b) => (rank.get(b.s) || 0) - (rank.get(a.s) || 0));
    const list = el("ul", {});
    for (const g of ordered) {
      const item = el("li", {}, el("span", { class: "chip " + stClass(g.s),
                                             text: `${g.cases.length} ${g.s}` }),
                      g.m || "(no message)", el("br"));
      g.cases.slice(0, 300).forEach((c, i) => {
        if (i) item.append(", ");
        item.append(el("button", { type: "button", onclick: () => showCase(c, k) },
                       shortName(c.id)));
      });
      if (g.cases.length > 300) item.append(`, and ${g.cases.length - 300} more`);
      list.append(item);
    }
    const texts = notPassing.map((c) => c.r[k.label].m);
    open(`${suite.name} on ${k.label}`, worst([...counts.keys()]),
      facts([...data.statuses.filter((s) => counts.get(s)).map((s) => [s, counts.get(s)]),
             ["kernel", `${k.label} ${k.release || ""}`]]),
      probeBlocks(k, probesNamed(k, suite.name, texts)),
      notPassing.length ? [el("h3", { text: `not passing (${notPassing.length})` }), list] : [],
      k.boot_error ? block("kernel boot error", k.boot_error) : []);
  }
  function showKernel(k) {
    const rows = Object.keys(k.probes).concat(
      Object.keys(k.expect).filter((n) => !(n in k.probes)));
    const check = k.crosscheck || {};
    open(`kernel ${k.label}`, null,
      facts([["spec", k.spec], ["release", k.release], ["origin", k.origin],
             ["package version", k.package_version], ["accelerator", k.accel],
             ["why", k.accel_reason], ["vCPUs", k.vcpus || ""], ["memory", k.memory],
             ["boots", Object.entries(k.boots || {}).map(([b, s]) => `${b}: ${s}s`).join(", ")]]),
      block("boot error", k.boot_error),
      probeBlocks(k, [...new Set(rows)].sort()),
      block("probes vs bpftool", (check.disagreements || []).join("\n") ||
            (check.ran === false ? check.detail : "")),
      block("kernel messages while probing", (k.probe_dmesg || []).join("\n")));
  }

  // --- filters, summary, changes -------------------------------------------------------
  function drawFilters() {
    const totals = new Map();
    for (const s of data.suites) for (const c of s.cases) for (const r of Object.values(c.r)) {
      totals.set(r.s, (totals.get(r.s) || 0) + 1);
    }
    const outcomes = document.getElementById("outcomes");
    for (const s of data.statuses) {
      if (!totals.get(s)) continue;
      const box = el("input", { type: "checkbox", checked: "", dataset: { status: s },
        onchange: (ev) => {
          if (ev.target.checked) state.outcomes.add(s); else state.outcomes.delete(s);
          draw();
        } });
      outcomes.append(el("label", { class: stClass(s) }, box, ` ${s} (${totals.get(s)})`));
    }
    const cases = data.suites.reduce((n, s) => n + s.cases.length, 0);
    const differ = data.suites.reduce((n, s) => n + s.cases.filter((c) => c.differs).length, 0);
    document.getElementById("summary").textContent =
      `${kernels.length} kernels, ${data.suites.length} features, ${cases} cases ` +
      `(${differ} with verdicts that differ between kernels); results: ` +
      data.statuses.filter((s) => totals.get(s)).map((s) => `${totals.get(s)} ${s}`).join(", ");
    const select = document.getElementById("suite-filter");
    for (const s of data.suites) select.append(el("option", { value: s.name, text: s.name }));
    select.addEventListener("change", () => { state.suite = select.value; draw(); });
    document.getElementById("differs-only").addEventListener("change", (ev) => {
      state.differsOnly = ev.target.checked; draw(); });
    document.getElementById("search").addEventListener("input", (ev) => {
      state.search = ev.target.value.trim().toLowerCase(); draw(); });
    document.getElementById("expand-all").addEventListener("click", () => {
      for (const s of data.suites) state.expanded.add(s.name); draw(); });
    document.getElementById("collapse-all").addEventListener("click", () => {
      state.expanded.clear(); draw(); });
  }
  function drawChanges() {
    if (!data.changes) return;
    const box = document.getElementById("changes");
    box.append(el("h2", { text: data.changes.title }));
    const sections = Object.entries(data.changes.sections);
    if (sections.length === 0) box.append(el("p", { text: "no differences" }));
    for (const [title, lines] of sections) {
      const part = el("details", {}, el("summary", { text: `${title} (${lines.length})` }));
      if (title === "new failures" || title === "fixed") part.open = true;
      const list = el("ul", {});
      for (const line of lines.slice(0, 300)) list.append(el("li", { text: line }));
      if (lines.length > 300) list.append(el("li", { text: `... and ${lines.length - 300} more` }));
      part.append(list);
      box.append(part);
    }
    box.hidden = false;
  }
  drawFilters();
  drawChanges();
  drawHead();
  draw();
  document.body.dataset.ready = "1";
})();
"""
