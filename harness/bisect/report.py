"""The end of a bisect, for people: the first bad commit with the case's failure on it and
its pass on the parent, then one row per step (commit, verdict, runs, build seconds,
boot+run seconds). Written as RESULTS/summary.md and summary.json, and printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import BadIf, BisectConfig
from .driver import BisectOutcome
from .records import StepRecord

#: lines of the failure text shown (the whole text is in the step's run folder)
FAILURE_LINES = 40


def _runs_text(step: StepRecord) -> str:
    return " ".join(r.status.symbol for r in step.runs) or "-"


def _commit_line(step: StepRecord | None, commit: str, subject: str) -> str:
    if step is None:
        return f"{commit[:12]} {subject}: not tested"
    return (f"{commit[:12]} {step.subject or subject}: {step.verdict} "
            f"({step.reason}; runs: {_runs_text(step)})")


def failure_text(step: StepRecord) -> str:
    run = step.failing_run()
    if run is None:
        return step.build.message if step.build and not step.build.ok else step.reason
    text = "\n".join(part for part in (run.message, run.details) if part).strip()
    lines = text.splitlines()
    if len(lines) > FAILURE_LINES:
        lines = [*lines[:FAILURE_LINES], f"... ({len(lines) - FAILURE_LINES} more lines in "
                                         f"{run.results_dir})"]
    return "\n".join(lines)


def step_table(steps: list[StepRecord]) -> str:
    """A Markdown table of the steps in the order they ran."""
    rows = ["| # | commit | phase | verdict | runs | build s | boot+run s | subject / why |",
            "|---|---|---|---|---|---|---|---|"]
    for n, s in enumerate(steps, 1):
        build = "-" if s.build is None else (
            f"{s.build_seconds:.0f}" + (" (cached)" if s.build.cached else "")
            + ("" if s.build.ok else " (failed)"))
        note = s.subject if s.verdict in ("good", "bad") else f"{s.subject} ({s.reason})"
        note = note.replace("|", "\\|").replace("\n", " ")[:100]
        rows.append(f"| {n} | {s.commit[:12]} | {s.phase} | {s.verdict} | {_runs_text(s)} | "
                    f"{build} | {s.run_seconds:.0f} | {note} |")
    return "\n".join(rows)


def format_summary(config: BisectConfig, outcome: BisectOutcome) -> str:
    subjects = outcome.subjects
    lines = [f"# kmatrix bisect: {config.case}", "",
             f"tree {config.tree}, {config.runs} run(s) per step, bad if "
             f"{'any run fails' if config.bad_if is BadIf.ANY else 'half the runs fail'}, "
             f"a skipped case counts as {config.skip_as}; "
             f"{len(outcome.steps)} steps in {outcome.seconds / 60:.1f} min", ""]
    if outcome.first_bad is None:
        lines += ["No first bad commit: only commits that could not be tested (skipped) are "
                  "left. It is one of:", ""]
        lines += [f"- {c[:12]} {subjects.get(c, '')}".rstrip() for c in outcome.candidates]
    else:
        bad = outcome.step(outcome.first_bad)
        lines += [f"**first bad commit: {outcome.first_bad} "
                  f"{subjects.get(outcome.first_bad, bad.subject if bad else '')}**", ""]
        if bad is not None:
            lines += [f"on it: {_commit_line(bad, outcome.first_bad, '')}", "", "```",
                      failure_text(bad), "```", ""]
        if outcome.parent:
            parent = outcome.step(outcome.parent)
            lines += [f"its parent: "
                      f"{_commit_line(parent, outcome.parent, subjects.get(outcome.parent, ''))}",
                      ""]
        if not outcome.confirmed:
            lines += ["**not confirmed**: the steps do not show the first bad commit failing "
                      "and its parent passing (a flaky case? try --runs N; an untested "
                      "endpoint? leave out --no-confirm)", ""]
    lines += ["## Steps", "", step_table(outcome.steps), "",
              f"Per step: {config.results_dir}/steps/COMMIT/ (step.json, run-N/ with "
              f"results.json and the console log, run-N.log); git's log: bisect-log.txt.", ""]
    return "\n".join(lines)


def summary_json(config: BisectConfig, outcome: BisectOutcome) -> dict[str, Any]:
    return {
        "case": config.case, "tree": str(config.tree), "runs": config.runs,
        "bad_if": str(config.bad_if), "skip_as": str(config.skip_as),
        "first_bad": outcome.first_bad, "parent": outcome.parent,
        "candidates": outcome.candidates, "confirmed": outcome.confirmed,
        "seconds": round(outcome.seconds, 1),
        "steps": [s.to_json() for s in outcome.steps],
    }


def write_summary(config: BisectConfig, outcome: BisectOutcome) -> Path:
    """summary.md and summary.json in the results folder; the Markdown path."""
    text = format_summary(config, outcome)
    path = config.results_dir / "summary.md"
    path.write_text(text)
    (config.results_dir / "summary.json").write_text(
        json.dumps(summary_json(config, outcome), indent=2) + "\n")
    return path
