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
2. The host answers "attach": the shell line that mounts the host's cached 9p export and
   binds the checkout, the case folders and the BPF objects from it
   (harness.targets.qemu.guestfs), the agent's environment and working folder. This runs
   the line, and the agent goes on in this same process (harness.guest.agent), reading
   today's checkout: its imports, its pytest session and the collection are done after
   each restore.

Until the checkout is mounted nothing else of it can be imported: what runs here is the
standard library, the libraries of PRELOAD and the two modules above.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import traceback

from ..protocol import Message
from .channel import Channel, open_channel

#: what is imported before the save: pytest, the parts of pyroute2 the helpers and cases
#: use, ctypes (libbpf). (pytest's default plugins are imported by its session: naming
#: them would take pytest's private modules)
PRELOAD = ("pytest", "pyroute2", "pyroute2.netlink.exceptions",
           "pyroute2.netlink.generic", "pyroute2.netlink.rtnl.ifinfmsg", "ctypes",
           "ctypes.util", "subprocess", "threading", "socket", "select", "struct",
           "resource", "json", "random", "uuid")

#: the checkout's files this stage imports (the root image holds them; relative to it)
IMAGE_FILES = ("harness/__init__.py", "harness/protocol.py", "harness/guest/__init__.py",
               "harness/guest/channel.py", "harness/guest/preload.py")


class AttachError(Exception):
    """The checkout could not be mounted in the guest."""


def preload() -> None:
    """Import PRELOAD."""
    for name in PRELOAD:
        importlib.import_module(name)


def attach(msg: Message) -> None:
    """Mount what the host's "attach" names, take its environment and working folder."""
    proc = subprocess.run(["/bin/sh", "-c", str(msg["mount"])], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise AttachError(f"mounting the checkout failed ({proc.returncode}): "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
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
            from . import agent

            return agent.serve(channel, t_attach)
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
