"""The default kernel matrix, declared in images/matrix.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import ConfigError
from ..paths import PROJECT_ROOT

MATRIX_FILE = PROJECT_ROOT / "images" / "matrix.toml"


def default_kernels(which: str = "default", path: Path = MATRIX_FILE) -> list[str]:
    """Kernel specs of the default matrix ("default") or of the CI matrix ("ci")."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the kernel matrix {path}: {exc}") from exc
    if which == "ci":
        specs = data.get("ci", {}).get("kernels", [])
    else:
        specs = [entry["spec"] for entry in data.get("kernel", [])]
    if not specs or not all(isinstance(s, str) for s in specs):
        raise ConfigError(f"{path}: no kernel specs for the '{which}' matrix")
    return list(specs)
