"""The guest library's resources are context managers that close on exit."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """Mixin: `with resource:` closes it at the end of the block (subclasses give
    `close()`, which must be safe to call twice)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
