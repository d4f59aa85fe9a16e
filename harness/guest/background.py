"""Work started in a thread now and waited for later."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def start(fn: Callable[[], T], name: str) -> Callable[[], T]:
    """Run `fn` in a new thread; the returned function waits for it and returns what it
    returned, or raises what it raised, in the caller's thread."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=body, name=name)
    thread.start()

    def wait() -> T:
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["result"]  # type: ignore[return-value]

    return wait
