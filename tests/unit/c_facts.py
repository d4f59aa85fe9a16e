"""What the C compiler says about kernel UAPI structs and constants, to hold the ctypes
mirrors of harness/guest against: a generated program prints sizeof/offsetof/values as
JSON (tests/unit/test_bpfobj.py, tests/unit/test_xsk_rings.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


class CFacts:
    """A C program under construction: `emit(key, expr)` adds one printed fact."""

    def __init__(self, headers: list[str]) -> None:
        self.keys: list[str] = []
        self.lines = ["#include <stdio.h>", "#include <stddef.h>",
                      *(f"#include <{h}>" for h in headers), "int main(void) {",
                      'printf("{\\n");']

    def emit(self, key: str, expr: str, *, if_defined: str | None = None) -> None:
        """Print `expr` (an integer expression) as `key`; only where the macro
        `if_defined` exists, when given."""
        self.keys.append(key)
        if if_defined:
            self.lines.append(f"#ifdef {if_defined}")
        self.lines.append(f'printf("\\"{key}\\": %lld,\\n", (long long)({expr}));')
        if if_defined:
            self.lines.append("#endif")

    def source(self) -> str:
        return "\n".join([*self.lines, 'printf("\\"end\\": 0}\\n");', "return 0; }"])

    def run(self, workdir: Path) -> dict[str, int]:
        """Compile with gcc in `workdir`, run, and return the facts."""
        (workdir / "facts.c").write_text(self.source())
        subprocess.run(["gcc", "-o", str(workdir / "facts"), str(workdir / "facts.c")],
                       check=True, capture_output=True, text=True)
        out = subprocess.run([str(workdir / "facts")], check=True, capture_output=True,
                             text=True)
        facts: dict[str, int] = json.loads(out.stdout)
        return facts
