"""The QEMU that virtme-ng starts for a snapshotted VM (`vng --qemu`): the real QEMU with a
QMP socket, the guest tools taken from the root image, the kernel's modules from an image
of their own, and, to restore, the saved state.

Run as a script (standard library only: it starts on every boot). virtme-ng's guest runs its
init (virtme-ng-init) from a 9p export of its guest tools and, for a modular kernel, reads
the modules from another; while either is mounted QEMU refuses to save the VM. On the
kernel command line virtme-ng builds, the two 9p mounts are replaced: the guest tools by a
bind mount of their copy in the root image, the modules by their image (a second virtio-blk
disk, /dev/vdb: QEMU's devices are probed in command-line order, virtme-ng's root disk
first) (harness.targets.qemu.rootdisk), so the guest mounts no 9p export.
If the command line does not have the mounts this expects, the wrapper says so and exits 1
(the boot fails with that message; nothing is saved from a guest it could not check).

Environment: KMATRIX_QEMU (the real binary), KMATRIX_QMP (the QMP socket QEMU listens on),
KMATRIX_GUEST_TOOLS (their guest path in the root image), KMATRIX_MODULES_DISK (the modules'
image; empty for a kernel without modules), KMATRIX_INCOMING (a state file to restore,
else unset).
"""

from __future__ import annotations

import os
import re
import sys

QEMU_ENV = "KMATRIX_QEMU"
QMP_ENV = "KMATRIX_QMP"
TOOLS_ENV = "KMATRIX_GUEST_TOOLS"
MODULES_ENV = "KMATRIX_MODULES_DISK"
#: the guest's device of the modules' image (the second virtio-blk disk)
MODULES_DEV = "/dev/vdb"
INCOMING_ENV = "KMATRIX_INCOMING"

#: virtme-ng's mount of an export `tag` on `where` (its hostfs_mount_cmd, 9p flavour)
_MOUNT = r"/bin/mount -n -t 9p -o \S+ {tag} {where}"


class LayoutError(Exception):
    """virtme-ng's command line is not the one this wrapper knows how to change."""


def rewrite(cmdline: str, tools: str, modules: bool) -> str:
    """The kernel command line with the guest tools bound from the root image and the
    modules (when the kernel has `modules`) mounted from their disk, instead of 9p."""
    out, n = re.subn(_MOUNT.format(tag=r"virtme\.guesttools", where="/run/virtme/guesttools"),
                     f"mount --bind {tools} /run/virtme/guesttools", cmdline)
    if n != 1:
        raise LayoutError("virtme-ng's 9p mount of its guest tools is not on the kernel "
                          "command line")
    out, n = re.subn(_MOUNT.format(tag=r"virtme\.modules", where="/run/virtme/modules"),
                     f"mount -t ext4 -o ro {MODULES_DEV} /run/virtme/modules", out)
    if n != int(modules):  # never a guest without the modules virtme-ng found
        raise LayoutError("virtme-ng exports the kernel's modules but kmatrix found none"
                          if n else "kmatrix has a modules image but virtme-ng exports no "
                          "modules for this kernel")
    if " -t 9p " in out:
        raise LayoutError("the guest would still mount a 9p export (QEMU cannot save it): "
                          + out)
    return out


def qemu_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    """The real QEMU's arguments for virtme-ng's `argv` (queries such as --version pass
    through unchanged)."""
    if "-append" not in argv:
        return argv
    out = list(argv)
    i = out.index("-append")
    modules = env.get(MODULES_ENV, "")
    out[i + 1] = rewrite(out[i + 1], env[TOOLS_ENV], bool(modules))
    if modules:  # after virtme-ng's root disk: the guest's second virtio-blk disk
        out += ["-drive", f"if=none,id=kmxmods,file={modules},format=raw,readonly=on",
                "-device", "virtio-blk-pci,drive=kmxmods"]
    out += ["-qmp", f"unix:{env[QMP_ENV]},server=on,wait=off"]
    if env.get(INCOMING_ENV):
        out += ["-incoming", f"file:{env[INCOMING_ENV]}"]
    return out


def main() -> int:
    env = dict(os.environ)
    try:
        argv = qemu_argv(sys.argv[1:], env)
    except (LayoutError, KeyError) as exc:
        print(f"kmatrix: cannot snapshot this VM: {exc}", file=sys.stderr)
        return 1
    qemu = env[QEMU_ENV]
    os.execv(qemu, [qemu, *argv])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
