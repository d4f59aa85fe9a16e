"""What the guest reads, read through a caching 9p mount.

virtme-ng gives the guest the host's root over 9p with no caching (`cache=none`): every
stat, open and directory lookup is a round trip to QEMU, ~2.4 ms under TCG (measured on
debian:6.12: 1000 stats of one file took 2.4 s). Starting Python and importing pytest and
the harness is thousands of them, so a guest spent most of its boot waiting on lookups.

So the VM gets a second, read-only 9p export of the host's root (`MOUNT_TAG`), which the
guest mounts with `cache=loose` (attributes, directory entries and pages cached in the
guest; the same stat: 0.035 ms) and bind-mounts over the folders the agent reads: the
checkout, the Python environment, the compiled BPF objects. Paths stay what they are on
the host (node ids, tracebacks and `__file__` agree with the host's), and nothing else of
the guest changes (virtme's writable overlays on /etc, /usr, /tmp... stay).

What `cache=loose` gives up is coherence: the guest does not see a host file change after
it first read it. These folders do not change during a run (the host compiles bytecode
and BPF objects before the boot), so a run is unaffected; a file edited on the host while
a VM runs is seen by the next boot.

The bootstrap is a shell line run by `vng --exec`: if the mount fails, it says so on the
console and the agent starts on the uncached root (slower, same results). It also gives
the guest a tmpfs for temporary files (`GUEST_TMP`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

from ...paths import PROJECT_ROOT
from ...protocol import EXEC_AT_ENV

MOUNT_TAG = "kmxcache"
#: where the guest mounts the cached export (the bind mounts come from here)
GUEST_MOUNT = "/run/kmatrix-cache"
#: temporary files of the agent and the cases (pytest's output capture makes several per
#: case): a tmpfs, where virtme-ng's /tmp is an overlay whose lower layer is the host's
#: /tmp over uncached 9p (every new name is a lookup there first)
GUEST_TMP = "/run/kmatrix-tmp"
#: 9p mount data: cached; msize as virtme-ng's own root mount
MOUNT_DATA = "trans=virtio,version=9p2000.L,msize=524288,cache=loose,access=any"
#: the same as mount(8) options: read-only
MOUNT_OPTIONS = f"ro,{MOUNT_DATA}"
#: prefixes of a system Python: bind its library folders, not the whole prefix (binding
#: /usr would hide virtme-ng's writable overlay there)
_SYSTEM_PREFIXES = ("/usr", "/usr/local", "/")


def qemu_opts() -> list[str]:
    """QEMU options for the read-only export of the host's root (remapped device ids,
    as virtme-ng's own export, so inode numbers of different host filesystems differ)."""
    return ["-fsdev", "local,id=kmxcachefs,path=/,security_model=none,readonly=on,"
                      "multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=kmxcachefs,mount_tag={MOUNT_TAG}"]


def python_dirs() -> list[Path]:
    """The folders this Python imports from: the venv and the interpreter's installation,
    or the library folders of a system interpreter."""
    out: list[Path] = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        if prefix not in _SYSTEM_PREFIXES:
            out.append(Path(prefix))
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if key in paths:
            out.append(Path(paths[key]))
    return out


def outermost(dirs: Iterable[Path]) -> list[Path]:
    """`dirs` without those inside another of them, existing ones only, sorted."""
    real = sorted({Path(d).resolve() for d in dirs if Path(d).is_dir()})
    out: list[Path] = []
    for d in real:
        if not any(d.is_relative_to(parent) for parent in out):
            out.append(d)
    return out


def cached_dirs(extra: Iterable[Path] = ()) -> list[Path]:
    """The folders the guest reads through the cached mount: the checkout, the Python
    environment and `extra` (the BPF object set, case folders outside the checkout)."""
    return outermost([PROJECT_ROOT, *python_dirs(), *extra])


def mount_line(dirs: Sequence[Path]) -> str:
    """The shell commands that mount the cached export and bind `dirs` from it over their
    own paths (a folder missing in the guest made first, where its parent is writable)."""
    binds = " && ".join(
        f"{{ [ -d {shlex.quote(str(d))} ] || mkdir -p {shlex.quote(str(d))}; }} && "
        f"mount --bind {shlex.quote(GUEST_MOUNT + str(d))} {shlex.quote(str(d))}"
        for d in dirs)
    mount = (f"mkdir -p {GUEST_MOUNT} && "
             f"mount -t 9p -o {MOUNT_OPTIONS} {MOUNT_TAG} {GUEST_MOUNT}")
    return f"{mount} && {binds}" if binds else mount


def mount_spec(dirs: Sequence[Path], keep: Sequence[Path] = ()) -> dict[str, object]:
    """What mount_line does, as data for the guest's own mount(2) calls (a snapshotted
    guest's "attach", harness.guest.preload: no shell and no mount(8) to start under
    TCG): the cached export read-only at GUEST_MOUNT, `dirs` bound from it; `keep`:
    folders inside `dirs` that stay the root image's (the Python environment in a
    checkout: read from the image's ext4, not over 9p)."""
    return {"source": MOUNT_TAG, "at": GUEST_MOUNT, "fstype": "9p", "data": MOUNT_DATA,
            "readonly": True, "binds": [str(d) for d in dirs], "keep": [str(d) for d in keep]}


def bootstrap(dirs: Sequence[Path], command: Sequence[str], *, cached: bool = True) -> str:
    """The guest's shell line: when it started (EXEC_AT_ENV: the guest's uptime, for the
    boot's breakdown), a tmpfs for temporary files (TMPDIR), the cached export with `dirs`
    bound from it over their own paths (unless not `cached`: a snapshotted guest mounts it
    later, harness.guest.preload), then exec `command`. A failed mount is reported, not
    fatal."""
    started = f"read -r {EXEC_AT_ENV} _ < /proc/uptime; export {EXEC_AT_ENV}"  # no fork
    tmp = (f"mkdir -p {GUEST_TMP} && mount -t tmpfs -o mode=1777 kmatrix-tmp {GUEST_TMP} "
           f"&& export TMPDIR={GUEST_TMP}")
    if not cached:
        return (f"{started}; {{ {tmp}; }}; cd -- \"$PWD\" 2>/dev/null; "
                f"exec {shlex.join(command)}")
    warn = ("echo 'kmatrix: cached 9p mount failed; the agent reads the uncached root' >&2")
    # re-enter the working folder by name: the shell's cwd is the folder under the bind
    return (f"{started}; {{ {tmp}; }}; {{ {mount_line(dirs)}; }} || {warn}; "
            f"cd -- \"$PWD\" 2>/dev/null; exec {shlex.join(command)}")


def boot_script(line: str, cache: Path) -> Path:
    """`line` (the guest's shell line) as a script under `cache`, named by its content, for
    `vng --exec "sh SCRIPT"`: virtme-ng passes --exec on the kernel command line (base64),
    whose limit is 2048 bytes on x86, and with a few long paths (the checkout, the Python
    installation, the BPF objects, each twice) the line itself would overflow it: a Debian
    kernel then panics before its first console line ("strlen: detected buffer overflow").
    The guest reads the script through virtme-ng's root (the host's, over 9p)."""
    return cached_script(line + "\n", cache)


def cached_script(text: str, cache: Path, *, prefix: str = "", mode: int = 0o644) -> Path:
    """`text` as a file under `cache`/boot named by its content (`prefix` first), with
    `mode`; written whole, then renamed: a concurrent reader sees all or none."""
    folder = cache / "boot"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}{hashlib.sha256(text.encode()).hexdigest()[:24]}.sh"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        tmp.replace(path)
    return path
