"""Kernel specs: one syntax for `kmatrix run --kernel` and `pytest --kernel`.

- `debian:6.12`          newest Debian amd64 package of that series (acquire.debian)
- `debian-source:6.12`, a source tree, a tarball path/URL: built from source (acquire.build)
- a path to a kernel image (bzImage/vmlinuz), a built tree, or an extracted package folder
- `host`                 the running kernel, where its image is readable
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import KernelSpecError
from . import debian
from .kernel import Kernel, make_label

#: offset and value of the x86 boot protocol signature ("HdrS") in a bzImage
_X86_HDR_OFFSET = 0x202
_X86_HDR_MAGIC = b"HdrS"


def is_bootable_image(path: Path) -> bool:
    """True if `path` carries the x86 boot-protocol header that QEMU's -kernel needs."""
    try:
        with open(path, "rb") as fh:
            fh.seek(_X86_HDR_OFFSET)
            return fh.read(4) == _X86_HDR_MAGIC
    except OSError:
        return False


def _image_in_dir(path: Path) -> Path | None:
    for pattern in (
        "arch/x86/boot/bzImage",
        "usr/lib/modules/*/vmlinuz",
        "lib/modules/*/vmlinuz",
        "boot/vmlinuz-*",
        "vmlinuz",
        "bzImage",
    ):
        found = sorted(path.glob(pattern))
        if found:
            return found[-1]
    return None


def _from_path(spec: str) -> Kernel:
    path = Path(spec).expanduser()
    if not path.exists():
        raise KernelSpecError(
            f"kernel '{spec}': no such file or directory",
            hint="give debian:X.Y, host, a kernel image (bzImage/vmlinuz) or a kernel tree",
        )
    image = path
    if path.is_dir():
        found = _image_in_dir(path)
        if found is None:
            raise KernelSpecError(
                f"kernel '{spec}': a directory without a kernel image in it",
                hint="build the tree first, or point at arch/x86/boot/bzImage",
            )
        image = found
    if not is_bootable_image(image):
        raise KernelSpecError(
            f"kernel '{spec}': {image} is not a bootable x86 kernel image "
            "(no 'HdrS' boot-protocol header at 0x202)",
            hint="pass a bzImage/vmlinuz, not vmlinux or a compressed archive",
        )
    image = image.resolve()
    release = None
    if image.parent.parent.name == "modules":
        release = image.parent.name
    elif image.name.startswith("vmlinuz-"):
        release = image.name[len("vmlinuz-") :]
    _check_modules_visible(image, release)
    label = make_label(release or path.resolve().name)
    return Kernel(spec=spec, label=label, image=image, release=release, origin=f"image {image}",
                  config=config_beside(image, release))


def config_beside(image: Path, release: str | None) -> Path | None:
    """The .config of a kernel image found by path, where one sits next to it: a package
    layout's boot/config-REL, a cache entry's `config`, a built tree's .config."""
    candidates = [image.parent / "config"]
    if release:
        candidates += [image.parent / f"config-{release}",
                       image.parents[3] / "boot" / f"config-{release}"
                       if len(image.parents) > 3 else image.parent / "-"]
    if image.name == "bzImage" and len(image.parents) > 3:
        candidates.append(image.parents[3] / ".config")  # TREE/arch/x86/boot/bzImage
    return next((c for c in candidates if c.is_file()), None)


#: host folders the guest does not see as they are: virtme-ng gives it private tmpfs there
_GUEST_PRIVATE = (Path("/tmp"), Path("/var/tmp"))


def _check_modules_visible(image: Path, release: str | None) -> None:
    """Modules beside an image are read by the guest over 9p; under /tmp or /var/tmp the
    guest sees an empty tmpfs instead and every module load fails. Say so up front."""
    if release is None:
        return
    root = image.parent
    mods = [root] if (root / "kernel").is_dir() else []
    mods += [d for d in (root.parent / "lib/modules" / release,) if d.is_dir()]
    if mods and any(image.is_relative_to(p) for p in _GUEST_PRIVATE):
        raise KernelSpecError(
            f"kernel '{image}': its modules are under {image.parent.parent.parent}, which the "
            "guest sees as an empty tmpfs (virtme-ng overlays /tmp and /var/tmp)",
            hint="move the extracted kernel elsewhere (e.g. ~/kernels) or use debian:X.Y")


def _host() -> Kernel:
    release = os.uname().release
    image = Path("/boot") / f"vmlinuz-{release}"
    if not os.access(image, os.R_OK):
        raise KernelSpecError(
            f"kernel 'host': the running kernel's image {image} is not readable",
            hint="this host's kernel cannot be booted by kmatrix; use debian:X.Y or a path",
        )
    config = Path("/boot") / f"config-{release}"
    return Kernel(spec="host", label=make_label(f"host-{release}"), image=image,
                  release=release, origin=f"host kernel {release}",
                  config=config if config.is_file() else None)


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def absolute_spec(spec: str, cwd: Path) -> str:
    """A path spec made absolute against `cwd`; other specs unchanged. The CLI runs pytest
    from the project root, so `--kernel ./linux` must be anchored where the user typed it.
    A bare word that names nothing in `cwd` (a cache key such as `5766dd`) is not a path."""
    spec = spec.strip()
    if not spec or spec == "host" or _SCHEME.match(spec):
        return spec
    path_like = "/" in spec or spec.startswith((".", "~"))
    if not path_like and not (cwd / spec.split("@", 1)[0]).exists():
        return spec
    path = Path(spec).expanduser()
    return os.path.normpath(path if path.is_absolute() else cwd / path)


def resolve(spec: str) -> Kernel:
    """Turn a kernel spec into a bootable Kernel, fetching or building as needed."""
    spec = spec.strip()
    if not spec:
        raise KernelSpecError("empty kernel spec")
    if spec.startswith("debian:"):
        return debian.fetch(spec.split(":", 1)[1], spec)
    if spec == "host":
        return _host()
    from .build import builder, plan

    if plan.is_source_spec(spec):
        return builder.build(spec).kernel()
    if ":" in spec.split("/", 1)[0] and not Path(spec).exists():
        raise KernelSpecError(
            f"unknown kernel spec '{spec}'",
            hint="known forms: debian:X.Y, debian-source:X.Y, host, PATH",
        )
    return _from_path(spec)


def resolve_all(specs: list[str]) -> list[Kernel]:
    """Resolve every spec; labels made unique (a second `debian:6.12` is the same kernel)."""
    kernels: list[Kernel] = []
    seen: dict[str, Kernel] = {}
    for spec in specs:
        k = resolve(spec)
        if k.label in seen:
            if seen[k.label].image == k.image:
                continue
            n = 2
            while f"{k.label}-{n}" in seen:
                n += 1
            k = Kernel(k.spec, f"{k.label}-{n}", k.image, k.release, k.origin, k.version,
                       k.properties)
        seen[k.label] = k
        kernels.append(k)
    return kernels
