"""Bisect a kernel regression of one case: `kmatrix bisect` drives `git bisect run` over a
kernel tree, each step building the commit git checked out and running the case on it.

Its own package, not part of `acquire`: a step spans every stage (build the kernel, boot
it, run the case, read its verdict), and the search itself is git's.

- `config`   what every step needs to know (saved as RESULTS/bisect.json for the steps)
- `verdict`  run outcomes -> a step's verdict (good, bad, skip) and git's exit code for it
- `records`  what a step saved: STEP/step.json per commit, read back for the report
- `step`     the command `git bisect run` runs: build at HEAD, run the case N times
- `git`      the tree's git: refuse a dirty tree, start/good/bad, reset, read the log
- `driver`   the whole bisect: start, `git bisect run`, confirm the answer, always reset
- `report`   the first bad commit, its failure, the parent's pass, a per-step table
"""
