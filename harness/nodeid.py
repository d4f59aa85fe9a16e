"""The kernel label in host node ids: the one parser of `test_x[a-debian-6.12]`.

On the host every case is parametrized over the kernels, the kernel's label being the last
id component: `cases/t.py::test_x[debian-6.12]`, `cases/t.py::test_x[a-debian-6.12]`. The
guest knows the case without it (`test_x`, `test_x[a]`).
"""

from __future__ import annotations

from collections.abc import Iterable


def kernel_label_of(nodeid: str, labels: Iterable[str]) -> str | None:
    """The kernel label `nodeid` ends with (`...[x-debian-6.12]`), if any of `labels`."""
    for label in labels:
        if nodeid.endswith((f"[{label}]", f"-{label}]")):
            return label
    return None


def without_kernel(name: str, label: str) -> str:
    """`test_x[a-debian-6.12]` -> `test_x[a]`; `test_x[debian-6.12]` -> `test_x`; works on
    names and on whole node ids. ValueError if `label` is not the last id component."""
    if name.endswith(f"[{label}]"):
        return name[: -len(label) - 2]
    if name.endswith(f"-{label}]"):
        return name[: -len(label) - 2] + "]"
    raise ValueError(f"{name}: kernel id {label} is not the last id component")


def case_id(nodeid: str, label: str) -> str:
    """`nodeid` without its kernel, or unchanged when it has none (report rows)."""
    try:
        return without_kernel(nodeid, label)
    except ValueError:
        return nodeid
