"""A function run in a forked child, for tests of what spans processes (the agent and a
case process): the child's exit status says whether it returned."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable


def run_forked(fn: Callable[[], object]) -> int:
    """`fn()` in a forked child; its exit code: 0 when it returned, 1 when it raised (the
    traceback on the child's stderr)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
