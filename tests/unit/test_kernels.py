"""Kernel spec errors: clear, typed, fast; bootable-image detection."""

from pathlib import Path

import pytest

from harness.acquire import spec as kernels
from harness.acquire.spec import is_bootable_image, resolve
from harness.errors import KernelSpecError


def fake_bzimage(path: Path) -> Path:
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    path.write_bytes(bytes(data))
    return path


def test_nonexistent_path() -> None:
    with pytest.raises(KernelSpecError, match="no such file"):
        resolve("/nonexistent")


def test_not_a_kernel(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_text("not a kernel\n")
    with pytest.raises(KernelSpecError, match="not a bootable x86 kernel image"):
        resolve(str(bogus))


def test_bad_series() -> None:
    with pytest.raises(KernelSpecError, match="bad Debian kernel series"):
        resolve("debian:latest")


def test_unknown_scheme() -> None:
    with pytest.raises(KernelSpecError, match="unknown kernel spec"):
        resolve("fedora:40")


def test_image_and_tree(tmp_path: Path) -> None:
    img = fake_bzimage(tmp_path / "bzImage")
    assert is_bootable_image(img)
    k = resolve(str(img))
    assert k.image == img.resolve() and k.label == "bzImage"
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    fake_bzimage(tree / "arch/x86/boot/bzImage")
    assert resolve(str(tree)).image == (tree / "arch/x86/boot/bzImage").resolve()


def test_extracted_7x_layout(tmp_path: Path) -> None:
    mod = tmp_path / "usr/lib/modules/7.3.4+deb13-amd64"
    mod.mkdir(parents=True)
    fake_bzimage(mod / "vmlinuz")
    k = resolve(str(tmp_path))
    assert k.release == "7.3.4+deb13-amd64" and k.label == "7.3.4+deb13-amd64"


def test_modules_under_tmp_are_refused(tmp_path: Path) -> None:
    """The guest sees /tmp as an empty tmpfs: a modular kernel there could load nothing."""
    mod = tmp_path / "usr/lib/modules/7.3.4+deb13-amd64"
    (mod / "kernel").mkdir(parents=True)
    fake_bzimage(mod / "vmlinuz")
    with pytest.raises(KernelSpecError, match="empty tmpfs"):
        resolve(str(tmp_path))


@pytest.mark.parametrize(("spec", "want"), [
    ("debian:6.12", "debian:6.12"),
    ("debian-source:6.12@-netkit", "debian-source:6.12@-netkit"),
    ("https://cdn.kernel.org/linux-6.12.tar.xz", "https://cdn.kernel.org/linux-6.12.tar.xz"),
    ("host", "host"),
    ("./linux", "CWD/linux"),
    ("linux@-netkit", "CWD/linux@-netkit"),  # a bare word naming a folder here is a path
    ("5766dd", "5766dd"),  # one naming nothing here is not (a cache key for config-check)
    ("../src/bzImage", "PARENT/src/bzImage"),
    ("/boot/vmlinuz", "/boot/vmlinuz"),
])
def test_absolute_spec(spec: str, want: str, tmp_path: Path) -> None:
    cwd = tmp_path / "dev"
    (cwd / "linux").mkdir(parents=True)
    want = want.replace("CWD", str(cwd)).replace("PARENT", str(tmp_path))
    assert kernels.absolute_spec(spec, cwd) == want


def test_cli_anchors_kernel_specs_and_leaves_pytest_args_alone(tmp_path: Path) -> None:
    from harness import cli
    from harness.cli import run

    (tmp_path / "my_cases.py").write_text("")
    args, rest = cli.build_parser().parse_known_args(
        ["run", "--kernel", "./linux", "--kernel", "debian:7.3", "-k", "my_cases.py",
         "--durations", "10", "my_cases.py::test_x"])
    run.anchor_kernel_specs(args, tmp_path)
    assert args.kernel == [str(tmp_path / "linux"), "debian:7.3"]
    argv = run.pytest_argv(args, rest, args.kernel)
    # pytest gets the user's arguments as typed (it runs where they were typed)
    assert argv[-5:] == ["-k", "my_cases.py", "--durations", "10", "my_cases.py::test_x"]
    assert "--cases-by-default" in argv


def test_auto_jobs() -> None:
    from harness.cli.run import auto_jobs

    assert auto_jobs(3, cores=2) == 3  # one VM more than cores: the cases wait often
    assert auto_jobs(5, cores=2) == 3
    assert auto_jobs(2, cores=8) == 2
    assert auto_jobs(1, cores=2) == 0
    assert auto_jobs(3, cores=1) == 0
