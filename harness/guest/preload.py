"""The first stage of a snapshotted guest's agent: the interpreter and the libraries, ready
to be saved, before the checkout is there.

A snapshot (harness.targets.qemu.snapshot) keeps a guest's memory: whatever the agent had
imported when it was saved is what every restore runs. Were the checkout imported before
the save, each edited case or helper would need a new snapshot (a boot and a save), and
the root image that QEMU can save a guest with (no 9p mounted) would have to hold the
checkout, so a new image too. So the guest is saved one step earlier:

1. This module (with the few it imports: the protocol and the channel, which the root image
   holds at their checkout paths) runs from the root image. It imports the libraries the
   agent and the cases use (pytest, pyroute2, ctypes... all in the root
   image, which changes only when they do) and says "preloaded". The host saves the guest
   then (a first boot) or has restored it here.
2. The host answers "attach": the host's cached 9p export to mount and the checkout, the
   case folders and the BPF objects to bind from it (harness.targets.qemu.guestfs), the
   agent's environment and working folder. This mounts them (mount(2): no process), and
   the agent goes on in this same process (harness.guest.agent), reading today's
   checkout: its imports, its pytest session and the collection are done after
   each restore.

Until the checkout is mounted nothing else of it can be imported: what runs here is the
standard library, the libraries of PRELOAD and the two modules above.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import time
import traceback
from typing import Any

from ..protocol import Message
from .channel import Channel, open_channel

#: what is imported before the save: pytest, the parts of pyroute2 the helpers and cases
#: use, ctypes (libbpf). (pytest's default plugins are imported by its session: naming
#: them would take pytest's private modules)
PRELOAD = ("pytest", "pyroute2", "pyroute2.netlink.exceptions",
           "pyroute2.netlink.generic", "pyroute2.netlink.rtnl.ifinfmsg", "ctypes",
           "ctypes.util", "subprocess", "threading", "socket", "select", "struct",
           "resource", "json", "random", "uuid", "faulthandler", "mmap")

#: the checkout's files this stage imports (the root image holds them; relative to it)
IMAGE_FILES = ("harness/__init__.py", "harness/protocol.py", "harness/guest/__init__.py",
               "harness/guest/channel.py", "harness/guest/preload.py")


class AttachError(Exception):
    """The checkout could not be mounted in the guest."""


def preload() -> None:
    """Import PRELOAD."""
    for name in PRELOAD:
        importlib.import_module(name)


#: mount(2) flags
MS_RDONLY = 1
MS_BIND = 4096


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2), as mount(8) would call it (no process to start: ~0.1 s each under TCG)."""
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                  flags, data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise AttachError(f"mounting the checkout failed: mount {source} on {target}"
                          f"{f' ({fstype}, {data})' if fstype else ' (bind)'}: "
                          f"{os.strerror(err)}")


#: where the folders that stay the image's are held while the checkout is bound over them
KEPT = "/run/kmatrix-kept"


def mount(spec: dict[str, Any]) -> None:
    """The export `spec` names (harness.targets.qemu.guestfs.mount_spec) at its place, and
    its folders bound from it over their own paths (made first where they are missing);
    its "keep" folders (inside those) bound back from the root image over them."""
    at = str(spec["at"])
    kept = [(folder, f"{KEPT}/{n}") for n, folder in enumerate(spec.get("keep", []))]
    try:
        for folder, held in kept:  # the image's, before the checkout hides them
            os.makedirs(held, exist_ok=True)
            _mount(folder, held, None, MS_BIND, None)
        os.makedirs(at, exist_ok=True)
        _mount(str(spec["source"]), at, str(spec["fstype"]),
               MS_RDONLY if spec.get("readonly") else 0, str(spec["data"]))
        for folder in spec.get("binds", []):
            os.makedirs(folder, exist_ok=True)
            _mount(at + folder, folder, None, MS_BIND, None)
        for folder, held in kept:
            _mount(held, folder, None, MS_BIND, None)
    except OSError as exc:
        raise AttachError(f"mounting the checkout failed: {exc}") from exc


def attach(msg: Message) -> None:
    """Mount what the host's "attach" names, take its environment and working folder."""
    mount(dict(msg["mount"]))
    os.environ.update({str(k): str(v) for k, v in dict(msg.get("env", {})).items()})
    os.chdir(str(msg["cwd"]))
    # folders this process looked at before the mount (sys.path's checkout entries): their
    # cached listings are the image's
    importlib.invalidate_caches()


def serve(channel: Channel) -> int:
    t0 = time.monotonic()
    preload()
    channel.send({"op": "preloaded", "preload_s": time.monotonic() - t0,
                  "python": sys.version.split()[0]})
    for msg in channel.messages():
        op = msg.get("op")
        if op == "shutdown":
            return 0
        if op == "attach":
            t_attach = time.monotonic()
            attach(msg)
            mounted = time.monotonic()
            from . import agent

            return agent.serve(channel, t_attach, mount_s=mounted - t_attach)
    return 0


def main() -> int:
    channel = open_channel()
    try:
        return serve(channel)
    except BaseException as exc:
        channel.send({"op": "fatal", "error": "".join(traceback.format_exception(exc))})
        raise


if __name__ == "__main__":
    sys.exit(main())
