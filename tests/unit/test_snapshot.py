"""Snapshots of a ready guest: the QEMU wrapper's command-line rewrite, the root image's
content and key, the QMP save against a fake monitor, the snapshot store."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.targets.qemu import rootdisk, snapshot, wrapper

#: virtme-ng 1.42's kernel command line for `--root-disk` with a modular kernel
#: (`vng --dry-run`), the part the wrapper changes
VIRTME_142 = (
    'virtme_console=ttyS0 root=/dev/vda rootwait quiet loglevel=1 init=/bin/sh -- -c "mount '
    '-t tmpfs run /run; mount -t devtmpfs devtmpfs /dev; mkdir -p /run/virtme/guesttools; '
    '/bin/mount -n -t 9p -o ro,version=9p2000.L,trans=virtio,access=any,msize=524288 '
    'virtme.guesttools /run/virtme/guesttools; mount --bind /dev/null /etc/fstab; mkdir -p '
    '/run/virtme/modules; /bin/mount -n -t 9p -o ro,version=9p2000.L,trans=virtio,'
    'access=any,msize=524288 virtme.modules /run/virtme/modules; exec '
    '/run/virtme/guesttools/bin/virtme-ng-init"')


def test_rewrite_takes_tools_and_modules_from_disks() -> None:
    out = wrapper.rewrite(VIRTME_142, "/usr/lib/kmatrix/virtme-guest", True)
    assert "-t 9p" not in out
    assert "mount --bind /usr/lib/kmatrix/virtme-guest /run/virtme/guesttools;" in out
    assert "mount -t ext4 -o ro /dev/vdb /run/virtme/modules;" in out
    assert out.endswith('exec /run/virtme/guesttools/bin/virtme-ng-init"')


def test_rewrite_for_a_kernel_without_modules() -> None:
    line = VIRTME_142.replace(
        "mkdir -p /run/virtme/modules; /bin/mount -n -t 9p -o ro,version=9p2000.L,"
        "trans=virtio,access=any,msize=524288 virtme.modules /run/virtme/modules; ", "")
    out = wrapper.rewrite(line, "/tools", False)
    assert "-t 9p" not in out and "mount --bind /tools /run/virtme/guesttools" in out


def test_rewrite_refuses_an_unknown_layout() -> None:
    with pytest.raises(wrapper.LayoutError, match="guest tools"):
        wrapper.rewrite("root=/dev/vda init=/sbin/init", "/tools", False)
    other = VIRTME_142.replace("exec ", "/bin/mount -n -t 9p -o ro virtme.busybox "
                               "/run/virtme/busybox; exec ")
    with pytest.raises(wrapper.LayoutError, match="still mount a 9p export"):
        wrapper.rewrite(other, "/tools", True)
    # the modules virtme-ng found and the image kmatrix made go together
    with pytest.raises(wrapper.LayoutError, match="found none"):
        wrapper.rewrite(VIRTME_142, "/tools", False)


def test_kernel_modules_beside_or_around_the_image(tmp_path: Path) -> None:
    old = tmp_path / "old"  # bookworm: boot/vmlinuz-R, lib/modules/R
    (old / "boot").mkdir(parents=True)
    (old / "lib" / "modules" / "6.1.0-1").mkdir(parents=True)
    assert rootdisk.kernel_modules(old / "boot" / "vmlinuz-6.1.0-1", "6.1.0-1") == \
        old / "lib" / "modules" / "6.1.0-1"
    new = tmp_path / "new" / "usr" / "lib" / "modules" / "7.3.4"  # trixie: the image inside
    new.mkdir(parents=True)
    (new / "modules.dep").write_text("")
    assert rootdisk.kernel_modules(new / "vmlinuz", "7.3.4") == new
    assert rootdisk.kernel_modules(tmp_path / "bzImage", "7.3.4") is None
    assert rootdisk.kernel_modules(new / "vmlinuz", None) is None


def test_qemu_argv() -> None:
    env = {wrapper.TOOLS_ENV: "/t", wrapper.MODULES_ENV: "", wrapper.QMP_ENV: "/x/qmp.sock"}
    assert wrapper.qemu_argv(["--version"], env) == ["--version"]  # virtme-ng's queries
    line = VIRTME_142.replace(
        "mkdir -p /run/virtme/modules; /bin/mount -n -t 9p -o ro,version=9p2000.L,"
        "trans=virtio,access=any,msize=524288 virtme.modules /run/virtme/modules; ", "")
    out = wrapper.qemu_argv(["-m", "1G", "-append", line], env)
    assert out[:3] == ["-m", "1G", "-append"] and "-t 9p" not in out[3]
    assert out[4:] == ["-qmp", "unix:/x/qmp.sock,server=on,wait=off"]
    out = wrapper.qemu_argv(["-append", line], {**env, wrapper.INCOMING_ENV: "/s/state"})
    assert out[-2:] == ["-incoming", "file:/s/state"]
    out = wrapper.qemu_argv(["-append", VIRTME_142], {**env, wrapper.MODULES_ENV: "/c/m.img"})
    assert "mount -t ext4 -o ro /dev/vdb /run/virtme/modules" in out[1]
    assert out[2:6] == ["-drive", "if=none,id=kmxmods,file=/c/m.img,format=raw,readonly=on",
                        "-device", "virtio-blk-pci,drive=kmxmods"]


def _tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "pkg" / "__pycache__" / "mod.pyc").write_bytes(b"\0")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref\n")
    (src / "results").mkdir()
    (src / "results" / "junit.xml").write_text("<x/>")
    os.symlink("pkg/mod.py", src / "link.py")
    return src


def test_sources_exclude_what_the_guest_does_not_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("usr/share/doc", "usr/bin", "etc", "var/cache", "opt"):
        (root / d).mkdir(parents=True)
    srcs = rootdisk.sources(tmp_path / "tools", root=root, folders=[tmp_path / "proj"])
    by_guest = {s.guest: s for s in srcs}
    assert set(by_guest) == {"usr", "etc", "var", str((tmp_path / "proj").relative_to("/")),
                             rootdisk.GUEST_TOOLS}
    assert "share/doc" in by_guest["usr"].excluded and "cache" in by_guest["var"].excluded
    assert by_guest[str((tmp_path / "proj").relative_to("/"))].empty


def test_stage_links_files_and_leaves_the_checkout_out(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    (src / ".tox" / "ci" / "bin").mkdir(parents=True)  # the environment CI runs in
    (src / ".tox" / "ci" / "bin" / "python").write_text("#!")
    (src / ".tox" / "other").mkdir()  # another tox environment: not the one running
    (src / ".tox" / "other" / "python").write_text("#!")
    srcs = rootdisk.sources(tmp_path / "tools", root=tmp_path / "noroot",
                            python=[src / ".tox" / "ci", tmp_path / "env"],
                            files=[src / "pkg" / "mod.py"], folders=[src])
    srcs = [s for s in srcs if s.host != tmp_path / "tools"]
    (tmp_path / "env" / "lib" / "__pycache__").mkdir(parents=True)
    (tmp_path / "env" / "lib" / "a.py").write_text("a = 1\n")
    (tmp_path / "env" / "lib" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    os.symlink("lib/a.py", tmp_path / "env" / "link.py")
    srcs.append(rootdisk.Source(src / "pkg" / "mod.py", "boot/one.py"))
    into = tmp_path / "stage"
    rootdisk.stage(srcs, into)
    staged = into / src.relative_to("/")
    # the checkout: an empty folder, but for the environment inside it and the files named
    assert sorted(p.name for p in staged.iterdir()) == [".tox", "pkg"]
    assert sorted(p.name for p in (staged / "pkg").iterdir()) == ["mod.py"]
    assert os.path.samefile(staged / "pkg" / "mod.py", src / "pkg" / "mod.py")  # a link
    assert (staged / ".tox" / "ci" / "bin" / "python").read_text() == "#!"
    assert not (staged / ".tox" / "other").exists()
    env = into / (tmp_path / "env").relative_to("/")
    assert os.readlink(env / "link.py") == "lib/a.py"
    assert (env / "lib" / "__pycache__" / "a.pyc").exists()  # bytecode goes in
    assert (into / "boot" / "one.py").read_text() == "x = 1\n"
    assert all((into / d).is_dir() for d in rootdisk.MOUNT_POINTS)


def test_fingerprint_follows_the_content(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "p", excluded=frozenset({".git", "results"}))]
    key = rootdisk.fingerprint(srcs)
    assert rootdisk.content_size(srcs) == len("x = 1\n") + 1
    (src / ".git" / "HEAD").write_text("another ref\n")  # skipped: same image
    assert rootdisk.fingerprint(srcs) == key
    (src / "pkg" / "mod.py").write_text("x = 2\n")
    st = (src / "pkg" / "mod.py").stat()
    os.utime(src / "pkg" / "mod.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert rootdisk.fingerprint(srcs) != key


def test_a_shallow_source_is_hashed_by_its_folders(tmp_path: Path) -> None:
    """The system's folders: a file created, renamed or deleted in a folder (what dpkg and
    pip do) makes a new image; a file written over in place does not."""
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "usr", shallow=True)]
    key = rootdisk.fingerprint(srcs)
    st = (src / "pkg").stat()
    (src / "pkg" / "mod.py").write_text("x = 2\n")  # in place
    os.utime(src / "pkg", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert rootdisk.fingerprint(srcs) == key
    (src / "pkg" / "mod.py.dpkg-new").write_text("x = 3\n")
    os.rename(src / "pkg" / "mod.py.dpkg-new", src / "pkg" / "mod.py")
    os.utime(src / "pkg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert rootdisk.fingerprint(srcs) != key
    assert rootdisk.content_size(srcs) == len("x = 3\n") + 1 + len("<x/>") + len("ref\n")


def test_an_empty_folder_is_its_path_only(tmp_path: Path) -> None:
    """The checkout's folder in the image is where the guest binds it: what it holds (and
    its mtime, which each new file changes) makes no new image."""
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "p", empty=True)]
    key = rootdisk.fingerprint(srcs)
    assert rootdisk.content_size(srcs) == 0
    (src / "new.py").write_text("y = 1\n")
    assert rootdisk.fingerprint(srcs) == key
    assert rootdisk.fingerprint([rootdisk.Source(src, "q", empty=True)]) != key


@pytest.mark.skipif(shutil.which("mke2fs", path="/usr/sbin:/sbin:" + os.environ["PATH"])
                    is None, reason="mke2fs (e2fsprogs) is not installed")
def test_build_makes_an_ext4_image_once(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "work/proj", excluded=frozenset({".git", "results"}))]
    image = rootdisk.build(srcs, tmp_path / "images")
    assert image.name.startswith("root-") and image.exists()
    debugfs = shutil.which("debugfs", path="/usr/sbin:/sbin:" + os.environ["PATH"])
    if debugfs is not None:
        listing = subprocess.run([debugfs, "-R", "ls -l /work/proj/pkg", str(image)],
                                 capture_output=True, text=True, check=True).stdout
        assert "mod.py" in listing
    mtime = image.stat().st_mtime_ns
    rootdisk._KNOWN.clear()  # as a new process would: walked again, not rebuilt
    assert rootdisk.build(srcs, tmp_path / "images") == image
    assert image.stat().st_mtime_ns == mtime
    assert not list((tmp_path / "images").glob("stage-*"))
    modules = rootdisk.build(rootdisk.module_sources(src / "pkg"), tmp_path / "images",
                             kind="modules")  # content at its root
    assert modules.name.startswith("modules-")
    if debugfs is not None:
        listing = subprocess.run([debugfs, "-R", "ls -l /", str(modules)],
                                 capture_output=True, text=True, check=True).stdout
        assert "mod.py" in listing and "proc" not in listing


def _known_image(srcs: list[rootdisk.Source], folder: Path) -> Path:
    """An image file named by the sources' content, noted as their last (as a build does),
    and forgotten by this process (as by a new run)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rootdisk.fingerprint(srcs)
    image = folder / f"root-{key}.img"
    image.write_bytes(b"ext4")
    rootdisk._remember(folder, srcs, key)
    rootdisk._KNOWN.clear()
    return image


def test_a_run_starts_on_the_last_image_while_the_content_is_walked(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "work/proj", excluded=frozenset({".git"}))]
    image = _known_image(srcs, tmp_path / "images")
    first = rootdisk.image_for(srcs, tmp_path / "images")
    assert first.image == image and not first.confirmed
    assert first.confirm() and first.confirmed
    # confirmed: the rest of this process (a restart) takes it without a walk
    again = rootdisk.image_for(srcs, tmp_path / "images")
    assert again.image == image and again.confirmed


def test_a_changed_content_makes_the_last_image_stale(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "work/proj", excluded=frozenset({".git"}))]
    image = _known_image(srcs, tmp_path / "images")
    (src / "pkg" / "new.py").write_text("y = 1\n")  # a new file: a new image
    cand = rootdisk.image_for(srcs, tmp_path / "images")
    assert cand.image == image and not cand.confirm()
    assert not cand.confirmed  # not taken for this process either
    assert rootdisk.image_for(srcs, tmp_path / "images").image == image


def test_a_changed_first_stage_never_starts_on_the_last_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the guest runs before the image is confirmed (single files: the first stage's
    modules, the boot script) is checked at once: changed, the image is made first."""
    src = _tree(tmp_path)
    stage = tmp_path / "preload.py"
    stage.write_text("STAGE = 1\n")
    srcs = [rootdisk.Source(src, "work/proj"), rootdisk.Source(stage, "work/preload.py")]
    image = _known_image(srcs, tmp_path / "images")
    assert not rootdisk.image_for(srcs, tmp_path / "images").confirmed
    rootdisk._KNOWN.clear()
    stage.write_text("STAGE = 22\n")
    built: list[str] = []
    monkeypatch.setattr(rootdisk, "_make", lambda s, f, img, key, kind: built.append(key))
    cand = rootdisk.image_for(srcs, tmp_path / "images")
    assert cand.confirmed and cand.image != image
    assert built == [rootdisk.fingerprint(srcs)]


def test_other_sources_do_not_take_anothers_image(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _known_image([rootdisk.Source(src, "work/proj")], tmp_path / "images")
    other = [rootdisk.Source(src, "work/other")]
    assert rootdisk.describe(other) not in rootdisk._last(tmp_path / "images")


def test_the_last_images_are_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for n in range(rootdisk.LAST_KEEP + 4):
        rootdisk._remember(folder, [rootdisk.Source(tmp_path / str(n), "x")], f"k{n}")
    last = rootdisk._last(folder)
    assert len(last) == rootdisk.LAST_KEEP
    assert last[rootdisk.describe([rootdisk.Source(tmp_path / "19", "x")])]["key"] == "k19"
    (folder / rootdisk.LAST).write_text("not json")  # a damaged file: nothing known
    assert rootdisk._last(folder) == {}


@pytest.mark.skipif(shutil.which("mke2fs", path="/usr/sbin:/sbin:" + os.environ["PATH"])
                    is None, reason="mke2fs (e2fsprogs) is not installed")
def test_a_stale_candidate_is_rebuilt_from_what_its_walk_found(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "work/proj", excluded=frozenset({".git"}))]
    stale = _known_image(srcs, tmp_path / "images")
    (src / "pkg" / "new.py").write_text("y = 1\n")
    cand = rootdisk.image_for(srcs, tmp_path / "images")
    assert not cand.confirm()
    fresh = cand.rebuild()
    assert fresh != stale and fresh.name == f"root-{rootdisk.fingerprint(srcs)}.img"
    assert cand.confirmed and cand.image == fresh
    rootdisk._KNOWN.clear()  # the next run starts on the new image
    assert rootdisk.image_for(srcs, tmp_path / "images").image == fresh


class FakeQmp(threading.Thread):
    """A QMP monitor on a unix socket: the greeting, then answers from `script`."""

    def __init__(self, path: Path, statuses: list[str]) -> None:
        super().__init__(daemon=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.statuses = statuses
        self.commands: list[dict[str, Any]] = []

    def run(self) -> None:
        conn, _ = self.server.accept()
        f = conn.makefile("rwb")

        def send(msg: dict[str, Any]) -> None:
            f.write(json.dumps(msg).encode() + b"\n")
            f.flush()

        send({"QMP": {"version": {}, "capabilities": []}})
        for line in f:
            req = json.loads(line)
            self.commands.append(req)
            name = req["execute"]
            if name == "migrate":  # QEMU writes the file named by the URI
                Path(req["arguments"]["uri"].removeprefix("file:")).write_bytes(b"RAM")
                send({"event": "MIGRATION", "data": {"status": "setup"}})
            if name == "query-migrate":
                status = self.statuses.pop(0)
                send({"return": {"status": status, "ram": {"transferred": 3},
                                 **({"error-desc": "no space"} if status == "failed"
                                    else {})}})
            else:
                send({"return": {}})
        conn.close()


def test_save_over_qmp(tmp_path: Path) -> None:
    fake = FakeQmp(tmp_path / "qmp.sock", ["active", "completed"])
    fake.start()
    state = tmp_path / "state"
    info = snapshot.save(str(tmp_path / "qmp.sock"), state)
    assert info["status"] == "completed" and state.read_bytes() == b"RAM"
    names = [c["execute"] for c in fake.commands]
    assert names == ["qmp_capabilities", "migrate", "query-migrate", "query-migrate", "cont"]
    assert not list(tmp_path.glob("state.*.tmp"))


def test_failed_save_leaves_no_state(tmp_path: Path) -> None:
    FakeQmp(tmp_path / "qmp.sock", ["failed"]).start()
    state = tmp_path / "state"
    with pytest.raises(snapshot.QmpError, match="no space"):
        snapshot.save(str(tmp_path / "qmp.sock"), state)
    assert not state.exists() and not list(tmp_path.glob("state.*"))


def test_no_monitor(tmp_path: Path) -> None:
    with pytest.raises(snapshot.QmpError, match="no QMP socket"):
        snapshot.Qmp(str(tmp_path / "none.sock"), timeout=0.2)


def test_store(tmp_path: Path) -> None:
    key = snapshot.key(["root-abc.img", "kernel", "vng", "-r"])
    assert key == snapshot.key(["root-abc.img", "kernel", "vng", "-r"])
    assert key != snapshot.key(["root-abd.img", "kernel", "vng", "-r"])
    st = snapshot.stored(tmp_path, key)
    assert not st.exists()
    (st.folder / "state.999999999.tmp").write_bytes(b"half")  # its writer was killed
    (st.folder / f"state.{os.getpid()}.tmp").write_bytes(b"busy")  # a live writer's
    snapshot.stored(tmp_path, key)
    assert [p.name for p in st.folder.glob("*.tmp")] == [f"state.{os.getpid()}.tmp"]
    (st.folder / f"state.{os.getpid()}.tmp").unlink()
    st.state.write_bytes(b"RAM")
    st.write_meta({"op": "hello", "release": "6.12"}, {"seconds": 1.0})
    assert st.exists() and st.hello() == {"op": "hello", "release": "6.12"}
    for i in range(snapshot.KEEP + 2):  # the least recently used go
        snapshot.stored(tmp_path, f"k{i}")
        time.sleep(0.01)
    kept = {p.name for p in (tmp_path / "snapshots").iterdir()}
    assert len(kept) == snapshot.KEEP and key not in kept and f"k{snapshot.KEEP + 1}" in kept
    st.drop()
    assert not st.folder.exists()


def test_fingerprint_ignores_bytecode_caches(tmp_path: Path) -> None:
    """The host's Python writes __pycache__ files as it imports (during a run, too): they
    must not make a new image, nor the new mtime of the folder a new __pycache__ is in."""
    src = _tree(tmp_path)
    srcs = [rootdisk.Source(src, "p")]
    key = rootdisk.fingerprint(srcs)
    (src / "pkg" / "__pycache__" / "other.cpython-311.pyc").write_bytes(b"\0\0")
    assert rootdisk.fingerprint(srcs) == key
    st = (src / "pkg").stat()
    os.utime(src / "pkg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert rootdisk.fingerprint(srcs) == key
    (src / "pkg" / "new.py").write_text("")
    assert rootdisk.fingerprint(srcs) != key


@pytest.mark.parametrize(("lines", "modules", "why"), [
    (["CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_EXT4_FS=y"], False, None),
    (["CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=m", "CONFIG_EXT4_FS=m"], True, None),
    (["CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=m", "CONFIG_EXT4_FS=y"], False,
     "CONFIG_VIRTIO_BLK=m .* no module folder"),
    (["CONFIG_VIRTIO_PCI=y", "# CONFIG_VIRTIO_BLK is not set", "CONFIG_EXT4_FS=y"], True,
     "CONFIG_VIRTIO_BLK=n"),
    (["CONFIG_VIRTIO_PCI=y", "CONFIG_VIRTIO_BLK=y"], False, "CONFIG_EXT4_FS=n"),
])
def test_a_kernel_boots_from_the_image_when_its_config_has_the_disk_and_ext4(
        tmp_path: Path, lines: list[str], modules: bool, why: str | None) -> None:
    config = tmp_path / "config"
    config.write_text("\n".join(lines) + "\n")
    if shutil.which("mke2fs", path="/usr/sbin:/sbin:" + os.environ["PATH"]) is None:
        pytest.skip("mke2fs (e2fsprogs) is not installed")
    got = rootdisk.unfit(config, modules)
    if why is None:
        assert got is None
    else:
        assert got is not None and re.search(why, got), got


def test_a_kernel_without_a_known_config_boots_on_the_9p_root(tmp_path: Path) -> None:
    assert "not known" in str(rootdisk.unfit(None, True))
    assert "not known" in str(rootdisk.unfit(tmp_path / "none", True))
