"""Deadlines and unique names: waiting with a timeout instead of sleeping, names that do not
collide between the processes sharing one guest."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_counter = itertools.count()


def unique_name(prefix: str, limit: int = 15) -> str:
    """A name unique among this guest's processes, at most `limit` chars (IFNAMSIZ-1)."""
    name = f"{prefix}{os.getpid() % 100000:x}x{next(_counter)}"
    if len(name) > limit:
        raise ValueError(f"name {name!r} longer than {limit} chars; use a shorter prefix")
    return name


def wait_until(predicate: Callable[[], T], *, timeout: float = 5.0, interval: float = 0.005,
               what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy and return that; TimeoutError
    naming `what` once `timeout` seconds have passed. The poll interval backs off to 0.1 s.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, 0.1)
