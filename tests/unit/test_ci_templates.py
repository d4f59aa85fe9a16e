"""`kmatrix ci github|gitlab`: the generated workflows pass their linters (actionlint;
GitLab's CI JSON schema through check-jsonschema's vendored copy, offline), run the
shards and the merge as planned, and examples/ci/ is what the generator writes today."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ci import DEFAULT_PATHS, ci_plan, render
from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "ci"


def _tool(name: str) -> str:
    """A linter from the venv (a dev dependency) or PATH; skip, saying how to get it."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: pip install -e .[dev]")
    return path


def actionlint(workflow_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint on the text, placed where GitHub reads workflows."""
    path = tmp_path / ".github" / "workflows" / "kmatrix.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(workflow_text)
    return subprocess.run([_tool("actionlint"), "-no-color", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=120)


def schema_check(schema: str, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of its vendored schemas (no network)."""
    path = tmp_path / "pipeline.yml"
    path.write_text(text)
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("shards", [1, 3, 5])
def test_github_workflow_passes_actionlint(shards: int, tmp_path: Path) -> None:
    text = render("github", ci_plan(shards))
    result = actionlint(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = schema_check("vendor.github-workflows", text, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_actionlint_does_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = render("github", ci_plan()).replace("runs-on:", "runs-onn:", 1)
    assert actionlint(broken, tmp_path).returncode != 0


@pytest.mark.parametrize("shards", [1, 3, 5])
def test_gitlab_pipeline_passes_the_gitlab_ci_schema(shards: int, tmp_path: Path) -> None:
    result = schema_check("vendor.gitlab-ci", render("gitlab", ci_plan(shards)), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_does_catch_a_broken_pipeline(tmp_path: Path) -> None:
    broken = render("gitlab", ci_plan()).replace("  script:", "  scriptt:", 1)
    assert schema_check("vendor.gitlab-ci", broken, tmp_path).returncode != 0


def test_github_jobs_shards_cache_and_merge() -> None:
    plan = ci_plan(4)
    data: dict[str, Any] = yaml.safe_load(render("github", plan))
    shard, merge = data["jobs"]["shard"], data["jobs"]["merge"]
    assert shard["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    runs = [s.get("run", "") for s in shard["steps"]]
    assert '.venv/bin/kmatrix run --shard "$SHARD/4" --results-dir "results/shard-$SHARD"' in runs
    restore = next(s for s in shard["steps"] if s.get("id") == "kernels")
    assert restore["with"]["path"] == "~/.cache/kmatrix/kernels"
    for spec in plan.specs:
        assert spec.replace(":", "-") in restore["with"]["key"]
    assert "hashFiles('images/matrix.toml', 'kconfigs/**')" in restore["with"]["key"]
    upload = next(s for s in shard["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "${{ !cancelled() }}"
    assert merge["needs"] == "shard" and merge["if"] == "${{ !cancelled() }}"
    merge_runs = "\n".join(s.get("run", "") for s in merge["steps"])
    assert ".venv/bin/kmatrix merge results/shard-* -o results/merged" in merge_runs
    assert '>> "$GITHUB_STEP_SUMMARY"' in merge_runs
    uploaded = [s["with"]["path"] for s in merge["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploaded == ["results/merged"]


def test_gitlab_jobs_shards_cache_and_junit_report() -> None:
    data: dict[str, Any] = yaml.safe_load(render("gitlab", ci_plan(3, "ci")))
    shard, merge = data["kmatrix-shard"], data["kmatrix-merge"]
    assert shard["parallel"] == 3
    assert shard["script"][-1] == ('.venv/bin/kmatrix run --shard "$CI_NODE_INDEX/$CI_NODE_TOTAL"'
                                   ' --results-dir "results/shard-$CI_NODE_INDEX" --matrix ci')
    assert shard["cache"]["paths"] == [".cache/kmatrix/kernels/"]
    assert data["variables"]["KMATRIX_CACHE"] == "$CI_PROJECT_DIR/.cache/kmatrix"
    assert shard["artifacts"]["when"] == "always"
    assert merge["when"] == "always"
    assert merge["script"][-1] == ".venv/bin/kmatrix merge results/shard-* -o results/merged"
    assert merge["artifacts"]["reports"]["junit"] == "results/merged/junit.xml"


def test_examples_are_what_the_generator_writes() -> None:
    for engine, path in DEFAULT_PATHS.items():
        committed = (EXAMPLES / path).read_text()
        assert committed == render(engine, ci_plan()), (
            f"examples/ci/{path} is stale: run `kmatrix ci {engine} -o examples/ci/{path}`")


def test_ci_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "wf.yml"
    assert main(["ci", "github", "--shards", "2", "-o", str(out)]) == 0
    assert out.read_text() == render("github", ci_plan(2))
    capsys.readouterr()
    assert main(["ci", "gitlab"]) == 0
    assert capsys.readouterr().out == render("gitlab", ci_plan())
    assert main(["ci", "gitlab", "--shards", "0"]) == 4
