"""Mirror a set of local files into a folder on the target over SFTP, sending only what
changed.

"Changed" compares the target's files themselves (not a manifest that could lie): a file
whose size or modification time (whole seconds) differs from the local one is sent again.
A file is written under a temporary name, given the local modification time, then renamed
over the old one, so an interrupted sync leaves either the old file or the new one (and
the next sync sends what is still different), and an agent that imports while another
run syncs never reads half a file. Files under the managed folders that are not in the
set are deleted, with the folders that end up empty; nothing else is touched.
"""

from __future__ import annotations

import posixpath
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

_TMP_SUFFIX = ".kmatrix-part"


@dataclass
class SyncStats:
    sent: list[str] = field(default_factory=list)
    bytes: int = 0
    unchanged: int = 0
    deleted: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"{len(self.sent)} files sent ({self.bytes / 1024:.0f} KiB), "
                f"{self.unchanged} unchanged, {len(self.deleted)} deleted in "
                f"{self.seconds:.1f}s")


@dataclass
class _Listing:
    #: path under the root -> (size, mtime in whole seconds)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)


def _list(sftp: paramiko.SFTPClient, root: str, top: str, into: _Listing) -> None:
    """What `root/top` holds on the target, recursively (bytecode caches skipped)."""
    try:
        entries = sftp.listdir_attr(posixpath.join(root, top))
    except FileNotFoundError:
        return
    into.dirs.add(top)
    for entry in entries:
        rel = posixpath.join(top, entry.filename)
        mode = entry.st_mode or 0
        if stat.S_ISDIR(mode):
            if entry.filename != "__pycache__":
                _list(sftp, root, rel, into)
        else:
            into.files[rel] = (entry.st_size or 0, entry.st_mtime or 0)


def makedirs(sftp: paramiko.SFTPClient, path: str, known: set[str] | None = None) -> None:
    """mkdir -p on the target (`known`: folders that exist, updated)."""
    known = known if known is not None else set()
    missing: list[str] = []
    while path not in ("", "/") and path not in known:
        try:
            sftp.stat(path)
            break
        except FileNotFoundError:
            missing.append(path)
            path = posixpath.dirname(path)
    for folder in reversed(missing):
        try:
            sftp.mkdir(folder)
        except OSError:  # made meanwhile (another worker syncing the same cache)
            sftp.stat(folder)
        known.add(folder)


def _send(sftp: paramiko.SFTPClient, local: Path, remote: str, mtime: int) -> None:
    tmp = remote + _TMP_SUFFIX
    sftp.put(str(local), tmp, confirm=False)  # the next sync compares sizes anyway
    sftp.utime(tmp, (mtime, mtime))
    try:
        sftp.posix_rename(tmp, remote)
    except OSError:  # a server without the posix-rename extension (a real error recurs)
        try:
            sftp.remove(remote)
        except FileNotFoundError:
            pass
        sftp.rename(tmp, remote)


def sync(sftp: paramiko.SFTPClient, root: str, files: Mapping[str, Path],
         managed: Iterable[str]) -> SyncStats:
    """Make `root` on the target hold `files` ({path under root: local file}, paths under
    the `managed` top folders); what else those folders hold is deleted."""
    t0 = time.monotonic()
    stats = SyncStats()
    have = _Listing()
    tops = list(managed)
    for top in tops:
        _list(sftp, root, top, have)
    known = {posixpath.join(root, d) for d in have.dirs}
    makedirs(sftp, root, known)
    for rel, local in sorted(files.items()):
        if rel.split("/", 1)[0] not in tops:
            raise ValueError(f"{rel}: not under a managed folder ({', '.join(tops)})")
        st = local.stat()
        mtime = int(st.st_mtime)
        if have.files.pop(rel, None) == (st.st_size, mtime):
            stats.unchanged += 1
            continue
        remote = posixpath.join(root, rel)
        makedirs(sftp, posixpath.dirname(remote), known)
        _send(sftp, local, remote, mtime)
        stats.sent.append(rel)
        stats.bytes += st.st_size
    for rel in sorted(have.files):  # left over: not in the set any more
        sftp.remove(posixpath.join(root, rel))
        stats.deleted.append(rel)
    wanted = {posixpath.dirname(rel) for rel in files}
    wanted |= {d for rel in list(wanted) for d in _parents(rel)}
    for folder in sorted(have.dirs - wanted - set(tops), key=len, reverse=True):
        try:
            sftp.rmdir(posixpath.join(root, folder))
        except OSError:  # not empty (a bytecode cache the agent's Python wrote): leave it
            pass
    stats.seconds = time.monotonic() - t0
    return stats


def _parents(rel: str) -> Iterable[str]:
    while rel:
        yield rel
        rel = posixpath.dirname(rel)
