"""The GitHub Actions workflow of a `CiPlan`.

- `shard`: a job per shard (a matrix over 1..N, not fail-fast), in a Debian 12 container
  set up by scripts/bootstrap; the kernel cache restored before the run and saved after
  it, even when cases failed (actions/cache/restore + save: the combined action saves
  only on success); the shard's results folder uploaded as artifact `shard-I`, whatever
  the run's outcome.
- `merge`: after every shard (also when some failed, not when cancelled), downloads the
  shard artifacts, runs `kmatrix merge`, appends the merged matrix.md to the job summary,
  uploads the merged folder (junit.xml, matrix.md, matrix.html, results.json, console
  logs) as artifact `kmatrix-results`, and fails when the merge does (failing cases, a
  missing shard, a kernel that did not boot) or when a shard job failed.
"""

from __future__ import annotations

from typing import Any

from .plan import CACHE_KEY_FILES, KERNEL_CACHE, CiPlan

CHECKOUT = "actions/checkout@v5"
CACHE_RESTORE = "actions/cache/restore@v5"
CACHE_SAVE = "actions/cache/save@v5"
UPLOAD = "actions/upload-artifact@v6"
DOWNLOAD = "actions/download-artifact@v7"
RUNNER = "ubuntu-latest"
#: steps that must run after a failed step (results are results), not after a cancel
NOT_CANCELLED = "${{ !cancelled() }}"


def _run(name: str, script: list[str] | tuple[str, ...] | str, **extra: Any) -> dict[str, Any]:
    text = script if isinstance(script, str) else "\n".join(script)
    return {"name": name, **extra, "run": text}


def github_workflow(plan: CiPlan) -> dict[str, Any]:
    shard_expr = "${{ matrix.shard }}"
    hash_files = ", ".join(f"'{f}'" for f in CACHE_KEY_FILES)
    shard_prefix = f"{plan.cache_prefix}-shard-{shard_expr}-of-{plan.shards}-"
    shard_job = {
        "name": f"kmatrix shard {shard_expr}/{plan.shards}",
        "runs-on": RUNNER,
        "container": plan.image,
        "timeout-minutes": plan.shard_timeout_min,
        "strategy": {"fail-fast": False,
                     "matrix": {"shard": list(range(1, plan.shards + 1))}},
        "env": {"SHARD": shard_expr},
        "steps": [
            {"uses": CHECKOUT},
            {"name": "restore the kernel cache", "id": "kernels", "uses": CACHE_RESTORE,
             "with": {"path": KERNEL_CACHE,
                      "key": f"{shard_prefix}${{{{ hashFiles({hash_files}) }}}}",
                      "restore-keys": f"{shard_prefix}\n{plan.cache_prefix}-"}},
            _run("set up (scripts/bootstrap)", plan.setup),
            _run("run the shard", plan.run_command("$SHARD", str(plan.shards))),
            {"name": "save the kernel cache", "uses": CACHE_SAVE,
             "if": "${{ !cancelled() && steps.kernels.outputs.cache-hit != 'true' }}",
             "with": {"path": KERNEL_CACHE,
                      "key": "${{ steps.kernels.outputs.cache-primary-key }}"}},
            {"name": "upload the shard's results", "if": NOT_CANCELLED, "uses": UPLOAD,
             "with": {"name": f"shard-{shard_expr}", "path": plan.shard_dir(shard_expr),
                      "if-no-files-found": "error"}},
        ],
    }
    merged = plan.merged
    merge_job = {
        "name": "kmatrix merge",
        "needs": "shard",
        "if": NOT_CANCELLED,
        "runs-on": RUNNER,
        "container": plan.image,
        "steps": [
            {"uses": CHECKOUT},
            _run("set up (Python and kmatrix only)", plan.merge_setup),
            {"name": "download the shards' results", "uses": DOWNLOAD,
             "with": {"pattern": "shard-*", "path": plan.results}},
            _run("merge the shards", plan.merge_command()),
            _run("job summary: the merged matrix", [
                f"if [ -f {merged}/matrix.md ]; then",
                f'  cat {merged}/matrix.md >> "$GITHUB_STEP_SUMMARY"',
                "fi"], **{"if": NOT_CANCELLED}),
            {"name": "upload the merged results", "if": NOT_CANCELLED, "uses": UPLOAD,
             "with": {"name": "kmatrix-results", "path": merged,
                      "if-no-files-found": "warn"}},
            _run("fail when a shard failed", [
                'echo "::error::a shard job failed: see its log and the merged results"',
                "exit 1"], **{"if": "${{ needs.shard.result != 'success' }}"}),
        ],
    }
    return {
        "name": "kmatrix",
        "on": {"push": None, "pull_request": None, "workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "env": {"DEBIAN_FRONTEND": "noninteractive"},
        "defaults": {"run": {"shell": "bash"}},
        "jobs": {"shard": shard_job, "merge": merge_job},
    }
