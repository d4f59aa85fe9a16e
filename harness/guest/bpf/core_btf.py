"""A minimal kernel BTF for CO-RE relocations, made once per boot.

Every object here includes vmlinux.h, whose structs carry preserve_access_index: each
context access is a CO-RE relocation, and libbpf resolves them against the kernel's BTF,
parsing all of /sys/kernel/btf/vmlinux (~5 MB, ~100k types) at every object load: 140 ms
of a 300 ms load under TCG (measured on debian:6.12), in every case.

`bpftool gen min_core_btf` (BTFGen, made for this) writes the subset of the running
kernel's BTF that the objects' relocations need (8 KB for all of bpf/). libbpf resolves
against it when given as `btf_custom_path`, with the same result as against the whole
BTF (the types come from the same kernel); objects that need the kernel's BTF for other
things (kfuncs, ksyms, attach by BTF id) still load it themselves.

The agent starts the generation in the background when it starts; a load that comes
before it is done, or where bpftool is missing or fails, simply uses the whole BTF.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from ..environment import bpf_objects_dir

log = logging.getLogger("kmatrix.core_btf")

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")


def _boot_key() -> str:
    """This boot of this kernel (a file made for another boot is never used)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return os.uname().release


def core_btf_path(objects: Path | None = None) -> Path:
    """Where the minimal BTF of the object set `objects` goes for this boot."""
    objects = objects or bpf_objects_dir()
    return Path(tempfile.gettempdir()) / f"kmatrix-core-btf-{_boot_key()}-{objects.name}.btf"


def ready(objects: Path | None = None) -> Path | None:
    """The minimal BTF if it has been made (None: use the kernel's whole BTF)."""
    path = core_btf_path(objects)
    return path if path.is_file() else None


def generate(objects: Path | None = None) -> Path | None:
    """Make the minimal BTF for every object of the set (no-op if it exists); None when
    bpftool or the kernel's BTF is missing or bpftool fails (said in the log)."""
    objects = objects or bpf_objects_dir()
    final = core_btf_path(objects)
    if final.is_file():
        return final
    bpftool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
    files = sorted(str(p) for p in objects.glob("*.bpf.o"))
    if bpftool is None or not VMLINUX_BTF.is_file() or not files:
        log.info("no minimal CO-RE BTF (bpftool: %s, %s: %s, objects: %d)", bpftool,
                 VMLINUX_BTF, VMLINUX_BTF.is_file(), len(files))
        return None
    tmp = final.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run([bpftool, "gen", "min_core_btf", str(VMLINUX_BTF), str(tmp),
                           *files], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        log.info("bpftool gen min_core_btf failed (%d): %s", proc.returncode,
                 (proc.stderr or proc.stdout).strip()[-500:])
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, final)
    return final


def generate_in_background(objects: Path | None = None) -> threading.Thread:
    """Start `generate` in a thread (the agent: it runs while the cases are collected)."""
    thread = threading.Thread(target=generate, args=(objects,), name="core-btf",
                              daemon=True)
    thread.start()
    return thread
