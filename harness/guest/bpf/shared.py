"""BPF objects loaded once per boot, in the agent, and inherited by every case process.

Opening, relocating and verifying an object costs 30-50 ms a case under TCG; a suite whose
cases all use one object (the sockmap pair matrix: 512 cases a kernel) pays it every case,
since each case runs in a process of its own. A case module that marks itself

    pytestmark = pytest.mark.bpf_shared("sockmap_redir")

gets the object loaded by the agent before its first case's process is forked, and its
fixture takes it with `shared_object(name)`: the agent's object (its file descriptors,
inherited by the fork) where the agent holds it, else one loaded by the case process for
itself (closed with it), e.g. under plain pytest, or when the agent's load failed (the
case then meets the failure itself, as its own error).

What a case does to a shared object stays for the next case: its maps' entries, programs
attached to maps. A case that uses one therefore puts it in a known state first (sets or
deletes the entries it reads, detaches what it attaches) and undoes its own changes after.
The agent takes its isolation baseline after loading, so the object's programs and maps
are not counted as a case's leak.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from .objects import BpfObject, object_path

#: name -> the agent's loaded object (inherited by the case processes it forks)
_LOADED: dict[str, BpfObject] = {}
#: the objects whose load failed in the agent (each case then loads its own and meets the
#: failure itself, as its own error: the agent does not try again)
_FAILED: set[str] = set()


def preload(names: Iterable[str]) -> bool:
    """In the agent, before forking a case: load the named objects not tried yet; whether
    any load was tried (the isolation baseline is then taken again)."""
    tried = False
    for name in names:
        if name in _LOADED or name in _FAILED:
            continue
        tried = True
        try:
            _LOADED[name] = BpfObject(object_path(name))
        except (OSError, ValueError, KeyError):
            _FAILED.add(name)
    return tried


@contextlib.contextmanager
def shared_object(name: str) -> Iterator[BpfObject]:
    """bpf/NAME.bpf.c's object: the agent's (not closed here: it outlives the case) or,
    where the agent holds none, one loaded for this process and closed at exit."""
    obj = _LOADED.get(name)
    if obj is not None:
        yield obj
        return
    with BpfObject(object_path(name)) as own:
        yield own


def close_all() -> None:
    """In the agent, at shutdown: release the shared objects."""
    while _LOADED:
        _LOADED.popitem()[1].close()


__all__ = ["close_all", "preload", "shared_object"]
