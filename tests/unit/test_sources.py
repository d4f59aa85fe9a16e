"""acquire.sources: spec parsing, identities of fake trees, tarballs by path and by URL."""

from __future__ import annotations

import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from harness.acquire import sources
from harness.errors import ConfigError, KernelSpecError

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 6\nSUBLEVEL = 30\nEXTRAVERSION =\nNAME = Fake\n"


def make_tree(root: Path, makefile: str = MAKEFILE) -> Path:
    """A fake kernel tree: enough for spec detection and version/identity logic."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Makefile").write_text(makefile)
    (root / "Kconfig").write_text('mainmenu "fake"\n')
    (root / "scripts" / "kconfig").mkdir(parents=True)
    (root / "net").mkdir()
    (root / "net" / "core.c").write_text("int x;\n")
    return root


def make_tarball(dest: Path, top: str = "linux-6.6.30") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("Makefile", MAKEFILE), ("Kconfig", 'mainmenu "fake"\n'),
                           ("scripts/kconfig/conf.c", "int main;\n")):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest.write_bytes(buf.getvalue())
    return dest


# --- specs -----------------------------------------------------------------------------


def test_parse_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    tree = make_tree(tmp_path / "linux")
    tarball = make_tarball(tmp_path / "linux-6.6.30.tar.gz")
    monkeypatch.chdir(tmp_path)

    s = sources.parse_source_spec("debian-source:6.12")
    assert s == sources.SourceSpec("debian-source:6.12", "debian-source", "6.12")
    s = sources.parse_source_spec("./linux")
    assert s is not None and s.kind == "tree" and s.location == str(tree)
    s = sources.parse_source_spec(str(tarball))
    assert s is not None and s.kind == "tarball"
    s = sources.parse_source_spec("kernel.org:6.6.30")
    assert s is not None and s.kind == "url"
    assert s.location == "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.30.tar.xz"
    for other in ("debian:6.12", "host", "/boot/vmlinuz-6.1", "./nonexistent", "6.12"):
        assert sources.parse_source_spec(other) is None, other
        assert not sources.is_source_spec(other)
    assert sources.is_source_spec("./linux")


def test_bad_specs() -> None:
    with pytest.raises(KernelSpecError, match=r"debian-source:MAJOR\.MINOR"):
        sources.parse_source_spec("debian-source:latest")
    with pytest.raises(KernelSpecError, match="not a kernel version"):
        sources.parse_source_spec("kernel.org:six")
    assert sources.is_source_spec("debian-source:latest")  # meant as one: resolving explains


def test_mirror_rewrites_kernel_org_urls_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.MIRROR_ENV, "http://mirror.local/kernel/")
    url = "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.30.tar.xz"
    assert sources.apply_mirror(url) == "http://mirror.local/kernel/linux/kernel/v6.x/linux-6.6.30.tar.xz"
    assert sources.apply_mirror("https://example.org/x.tar.xz") == "https://example.org/x.tar.xz"
    assert sources.apply_mirror(url, mirror="") == url
    s = sources.parse_source_spec("kernel.org:6.1", mirror="http://m")
    assert s is not None and s.location == "http://m/linux/kernel/v6.x/linux-6.1.tar.xz"


# --- identities ------------------------------------------------------------------------


def test_makefile_version(tmp_path: Path) -> None:
    assert sources.makefile_version(make_tree(tmp_path / "a")) == "6.6.30"
    rc = MAKEFILE.replace("SUBLEVEL = 30", "SUBLEVEL = 0").replace("EXTRAVERSION =",
                                                                   "EXTRAVERSION = -rc3")
    assert sources.makefile_version(make_tree(tmp_path / "b", rc)) == "6.6.0-rc3"
    (tmp_path / "c").mkdir()
    with pytest.raises(KernelSpecError):
        sources.makefile_version(tmp_path / "c")


def git(tree: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_identity_commit_plus_dirty_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "linux")
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-qm", "base")
    clean = sources.tree_identity(tree)
    assert clean.stable.startswith("git-") and clean.dirty == "" and clean.full == clean.stable
    assert clean.kernelversion == "6.6.30"

    (tree / "net" / "core.c").write_text("int x = 1;\n")
    edited = sources.tree_identity(tree)
    assert edited.stable == clean.stable and edited.dirty and edited.full != clean.full
    assert "(dirty)" in edited.origin

    (tree / "net" / "new.c").write_text("int y;\n")  # untracked files count too
    untracked = sources.tree_identity(tree)
    assert untracked.dirty != edited.dirty
    assert sources.tree_identity(tree) == untracked  # stable when nothing changes


def test_plain_folder_identity_follows_file_changes(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "linux")
    a = sources.tree_identity(tree)
    assert a.stable.startswith("tree-") and a.dirty
    (tree / "net" / "core.c").write_text("int x = 2; /* longer */\n")
    b = sources.tree_identity(tree)
    assert b.stable == a.stable and b.dirty != a.dirty


def test_configured_tree_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "linux")
    (tree / ".config").write_text("CONFIG_A=y\n")
    with pytest.raises(ConfigError, match="configured or built in place") as exc:
        sources.prepare(sources.SourceSpec("x", "tree", str(tree)), tmp_path / "cache")
    assert "mrproper" in exc.value.hint


# --- tarballs --------------------------------------------------------------------------


def test_tarball_path_is_unpacked_once(tmp_path: Path) -> None:
    tarball = make_tarball(tmp_path / "linux-6.6.30.tar.gz")
    spec = sources.parse_source_spec(str(tarball))
    assert spec is not None
    ident = sources.identify(spec, tmp_path / "cache")
    assert ident.stable == "sha256-" + sources.sha256_file(tarball)[:24]
    assert ident.kernelversion == "6.6.30"
    tree = sources.prepare(spec, tmp_path / "cache")
    assert tree.path.name == "linux-6.6.30" and (tree.path / "Makefile").is_file()
    assert tree.path.is_relative_to(tmp_path / "cache" / "kernels" / "src")
    (tree.path / "marker").write_text("kept")
    again = sources.prepare(spec, tmp_path / "cache")
    assert again.path == tree.path and (again.path / "marker").is_file()


def test_tarball_without_a_kernel_inside(tmp_path: Path) -> None:
    bad = tmp_path / "linux-1.0.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    spec = sources.SourceSpec(str(bad), "tarball", str(bad))
    with pytest.raises(KernelSpecError, match="expected one kernel source folder"):
        sources.prepare(spec, tmp_path / "cache")


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        _Handler.requests.append(self.path)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A kernel.org-shaped mirror on 127.0.0.1 serving a tiny tarball; yields (base URL, root)."""
    root = tmp_path / "www"
    pub = root / "pub" / "linux" / "kernel" / "v6.x"
    pub.mkdir(parents=True)
    make_tarball(pub / "linux-6.6.30.tar.xz")  # gzip inside: tar -xf does not mind

    def handler(*args: object, **kwargs: object) -> _Handler:
        return _Handler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pub", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_kernel_org_url_through_local_mirror(
    mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _root = mirror
    cache = tmp_path / "cache"
    monkeypatch.setenv(sources.MIRROR_ENV, base)
    spec = sources.parse_source_spec(
        "https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-6.6.30.tar.xz")
    assert spec is not None and spec.location.startswith("http://127.0.0.1:")
    tree = sources.prepare(spec, cache)
    assert tree.identity.kernelversion == "6.6.30"
    assert sources.makefile_version(tree.path) == "6.6.30"
    assert _Handler.requests == ["/pub/linux/kernel/v6.x/linux-6.6.30.tar.xz"]
    # the short form names the same file: no second download, same identity
    short = sources.parse_source_spec("kernel.org:6.6.30")
    assert short is not None
    assert sources.identify(short, cache) == tree.identity
    assert len(_Handler.requests) == 1


def test_unreachable_url_says_how_to_set_a_mirror(tmp_path: Path) -> None:
    spec = sources.SourceSpec("u", "url", "http://127.0.0.1:9/linux-6.6.tar.xz")
    with pytest.raises(KernelSpecError, match="cannot download") as exc:
        sources.identify(spec, tmp_path / "cache")
    assert sources.MIRROR_ENV in exc.value.hint
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_debian_resolution_is_remembered_until_apt_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake_resolve(series: str) -> tuple[str, str, str]:
        calls.append(series)
        return f"linux-source-{series}", "6.12.117-1~deb12u1", "ab" * 32

    lists = tmp_path / "lists"
    lists.mkdir()
    monkeypatch.setattr(sources, "_apt_resolve", fake_resolve)
    monkeypatch.setattr(sources, "APT_STATE_PATHS", (lists,))
    cache = tmp_path / "cache"
    ident = sources.debian_identity("6.12", cache)
    assert ident.kernelversion == "6.12.117" and ident.stable.startswith("deb-6.12.117-1~deb12u1-")
    assert ident.origin == "Debian linux-source-6.12 6.12.117-1~deb12u1"
    assert sources.debian_identity("6.12", cache) == ident
    assert calls == ["6.12"]
    (lists / "new_Packages").write_text("")  # apt-get update: ask apt again
    os.utime(lists, ns=(1, 1))
    sources.debian_identity("6.12", cache)
    assert calls == ["6.12", "6.12"]
