"""The GitLab CI pipeline (.gitlab-ci.yml) of a `CiPlan`.

- `kmatrix-shard`: one job per shard (`parallel: N`, CI_NODE_INDEX/CI_NODE_TOTAL), in a
  Debian 12 image set up by scripts/bootstrap; the kernel cache per shard (KMATRIX_CACHE
  points inside the project: GitLab caches only paths there), keyed by the specs, the
  shard and images/matrix.toml, saved even when cases failed; the shard's results as
  artifacts, whatever the outcome.
- `kmatrix-merge`: after every shard (also when some failed), runs `kmatrix merge` and
  publishes the merged junit.xml as the pipeline's test report, the merged folder
  (matrix.html included) as artifacts; it fails when the merge does (failing cases, a
  missing shard, a kernel that did not boot).
"""

from __future__ import annotations

from typing import Any

from .plan import CiPlan

#: the kernel cache inside the project folder, where GitLab can cache it
CACHE_DIR = ".cache/kmatrix"


def gitlab_pipeline(plan: CiPlan) -> dict[str, Any]:
    sharded = plan.shards > 1
    index, total = ("$CI_NODE_INDEX", "$CI_NODE_TOTAL") if sharded else ("1", "1")
    shard: dict[str, Any] = {"stage": "test"}
    if sharded:
        shard["parallel"] = plan.shards
    shard.update({
        "timeout": f"{plan.shard_timeout_min} minutes",
        "cache": {"key": {"files": ["images/matrix.toml"],
                          "prefix": f"{plan.cache_prefix}-shard-{index}-of-{total}"},
                  "paths": [f"{CACHE_DIR}/kernels/"], "when": "always"},
        "script": [*plan.setup, plan.run_command(index, total)],
        "artifacts": {"when": "always", "name": f"kmatrix-shard-{index}",
                      "paths": [f"{plan.shard_dir(index)}/"], "expire_in": "1 week"},
    })
    merge = {
        "stage": "report",
        "needs": [{"job": "kmatrix-shard", "artifacts": True}],
        "when": "always",
        "script": [*plan.merge_setup, plan.merge_command()],
        "artifacts": {"when": "always", "name": "kmatrix-results",
                      "expose_as": "kmatrix results", "paths": [f"{plan.merged}/"],
                      "reports": {"junit": f"{plan.merged}/junit.xml"},
                      "expire_in": "30 days"},
    }
    return {
        "stages": ["test", "report"],
        "default": {"image": plan.image},
        "variables": {"DEBIAN_FRONTEND": "noninteractive",
                      "KMATRIX_CACHE": f"$CI_PROJECT_DIR/{CACHE_DIR}"},
        "kmatrix-shard": shard,
        "kmatrix-merge": merge,
    }
