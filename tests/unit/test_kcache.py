"""acquire.build.cache and the cache logic of acquire.build, on a fake tree with a fake `make`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import pytest

from harness.acquire.build import builder as kbuild
from harness.acquire.build import cache as kcache
from harness.acquire.build import make, plan, toolchain
from harness.acquire.kconfig import merged as kconfig_merge
from harness.errors import ConfigError

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 6\nSUBLEVEL = 30\nEXTRAVERSION =\nNAME = Fake\n"


def make_tree(root: Path) -> Path:
    """A fake kernel tree (Makefile, Kconfig, scripts/kconfig): enough for kbuild's logic."""
    (root / "scripts" / "kconfig").mkdir(parents=True)
    (root / "net").mkdir()
    (root / "Makefile").write_text(MAKEFILE)
    (root / "Kconfig").write_text('mainmenu "fake"\n')
    (root / "net" / "core.c").write_text("int x;\n")
    return root


FAKE_TOOLCHAIN = toolchain.Toolchain("gcc (Debian 12.2.0-14) 12.2.0", "v1.24", "x86_64", None)


def add_entry(cache: Path, key: str, dirkey: str = "d1", age_days: float = 0.0,
              spec: str = "debian-source:6.12") -> Path:
    entry = kcache.images_dir(cache) / key
    entry.mkdir(parents=True)
    (entry / "bzImage").write_bytes(b"\0" * 5000)
    meta = {"key": key, "spec": spec, "release": "6.12.117-kmatrix", "dirkey": dirkey,
            "fragments": ["base", "netkit"], "created": time.time() - age_days * 86400}
    (entry / kcache.META).write_text(json.dumps(meta))
    (kcache.objs_dir(cache) / dirkey).mkdir(parents=True, exist_ok=True)
    return entry


def test_list_lookup_and_format(tmp_path: Path) -> None:
    add_entry(tmp_path, "aaa111")
    add_entry(tmp_path, "bbb222", dirkey="d2")
    (kcache.images_dir(tmp_path) / "broken").mkdir()  # no meta.json: not listed
    items = list(kcache.entries(tmp_path))
    assert [e.key for e in items] == ["aaa111", "bbb222"]
    assert items[0].size >= 5000 and items[0].release == "6.12.117-kmatrix"
    hit = kcache.lookup("aaa111", tmp_path)
    assert hit is not None and hit.image == kcache.images_dir(tmp_path) / "aaa111" / "bzImage"
    assert kcache.lookup("nope", tmp_path) is None
    table = kcache.format_list(items, tmp_path)
    assert "aaa111" in table and "debian-source:6.12" in table and "netkit" in table
    assert "KiB" in table
    assert "no built kernels" in kcache.format_list([], tmp_path)


def test_prune_by_key_age_and_all(tmp_path: Path) -> None:
    add_entry(tmp_path, "aaa111", dirkey="d1")
    add_entry(tmp_path, "bbb222", dirkey="d2", age_days=10)
    add_entry(tmp_path, "ccc333", dirkey="d1")
    dry = kcache.prune(tmp_path, keys=["aaa"], dry_run=True)
    assert dry.removed == (kcache.images_dir(tmp_path) / "aaa111",)
    assert (kcache.images_dir(tmp_path) / "aaa111").is_dir()

    res = kcache.prune(tmp_path, older_than_days=5)
    names = {p.name for p in res.removed}
    assert names == {"bbb222", "d2"}  # d1 is still used by the kept kernels
    assert res.freed > 0
    assert [e.key for e in kcache.entries(tmp_path)] == ["aaa111", "ccc333"]

    kcache.prune(tmp_path, keys=["aaa111"], objs=False)
    assert (kcache.objs_dir(tmp_path) / "d1").is_dir()
    kcache.prune(tmp_path)
    assert list(kcache.entries(tmp_path)) == []
    assert not any(kcache.objs_dir(tmp_path).iterdir())


def test_human_size() -> None:
    assert kcache.human_size(10) == "10 B"
    assert kcache.human_size(3 * 1024 * 1024) == "3.0 MiB"


# --- kbuild with a fake make ----------------------------------------------------------------


class FakeMake:
    """Stands in for `make`: allnoconfig/olddefconfig/bzImage on a fake tree."""

    #: symbols the fake Kconfig does not know: olddefconfig drops them
    unknown: ClassVar[set[str]] = {"CONFIG_DOES_NOT_EXIST"}

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run_make(self, argv: list[str], env: dict[str, str], log: Path, what: str, obj: Path,
                 expected: int = 0, timeout: float = 0) -> str:
        self.calls.append(what)
        assert argv[:3] == ["nice", "-n", "10"] and any(a.startswith("O=") for a in argv)
        assert env["CCACHE_NOHASHDIR"] == "true"
        config = obj / ".config"
        if what == "allnoconfig":
            config.write_text("#\n# Linux/x86 6.6.30 Kernel Configuration\n#\n"
                              "# CONFIG_NETKIT is not set\nCONFIG_64BIT=y\n")
        elif what == "olddefconfig":
            kept = [ln for ln in config.read_text().splitlines()
                    if kconfig_merge.line_symbol(ln) not in self.unknown]
            config.write_text("\n".join(kept) + "\n")
        else:
            image = obj / "arch" / "x86" / "boot" / "bzImage"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(b"kernel" + str(len(self.calls)).encode())
            (obj / "kernel.o").write_bytes(b"")
        with log.open("a") as f:
            f.write(f"fake {what}\n")
        return ""

    @staticmethod
    def run(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[str]:
        assert "kernelrelease" in argv
        return subprocess.CompletedProcess(argv, 0, "6.6.30-kmatrix\n")


@pytest.fixture
def fake_make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMake:
    fake = FakeMake()
    monkeypatch.setenv("KMATRIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(plan, "detect_toolchain", lambda: FAKE_TOOLCHAIN)
    monkeypatch.setattr(kbuild, "check_build_tools", lambda merged, tc: None)
    monkeypatch.setattr(kbuild, "run_make", fake.run_make)
    monkeypatch.setattr(make, "run_make", fake.run_make)
    monkeypatch.setattr(kbuild, "run", fake.run)
    return fake


def test_build_then_cache_hit_then_incremental(tmp_path: Path, fake_make: FakeMake) -> None:
    tree = make_tree(tmp_path / "linux")
    spec = str(tree)
    first = kbuild.build(spec, ["netkit", "xdp"])
    assert not first.cached
    assert fake_make.calls == ["allnoconfig", "olddefconfig", "make bzImage"]
    assert first.entry.release == "6.6.30-kmatrix"
    assert first.entry.image.read_bytes() == b"kernel3"
    meta = first.entry.meta
    assert meta["fragments"] == ["base", "bpf-core", "xdp"]  # netkit is 6.7+
    assert any(x.startswith("netkit: not in this version") for x in meta["check"]["skipped"])
    k = first.kernel()
    assert k.spec == spec and k.image == first.entry.image and k.version == first.entry.key
    assert "netkit: not in this version" in k.properties["config.skipped"]
    assert "-no-" in k.label

    again = kbuild.build(spec, ["xdp", "netkit"])
    assert again.cached and again.entry.key == first.entry.key
    assert len(fake_make.calls) == 3  # no make at all on a hit

    other = kbuild.build(spec, ["xdp"])  # netkit does not apply to 6.6: same request
    assert other.cached

    (tree / "net" / "core.c").write_text("int x = 42; /* edited */\n")
    edited = kbuild.build(spec, ["netkit", "xdp"])
    assert not edited.cached
    assert edited.entry.key != first.entry.key
    assert edited.plan.dirkey == first.plan.dirkey  # same O= folder: incremental
    assert fake_make.calls[3:] == ["make bzImage"]  # config unchanged: not redone
    assert (kcache.images_dir() / first.entry.key).is_dir()  # old entry kept

    names = [e.key for e in kcache.entries()]
    assert sorted(names) == sorted([first.entry.key, edited.entry.key])


def test_missing_symbol_fails_naming_it(tmp_path: Path, fake_make: FakeMake) -> None:
    tree = make_tree(tmp_path / "linux")
    bogus = tmp_path / "bogus.config"
    bogus.write_text("CONFIG_DOES_NOT_EXIST=y  # a typo the check must catch\n")
    with pytest.raises(ConfigError, match="CONFIG_DOES_NOT_EXIST") as exc:
        kbuild.build(str(tree), [str(bogus)])
    assert "unknown in this version" in str(exc.value)
    assert "make bzImage" not in fake_make.calls
    assert list(kcache.entries()) == []

    optional = tmp_path / "optional.config"
    optional.write_text("# kmatrix: optional CONFIG_DOES_NOT_EXIST\n"
                        "CONFIG_DOES_NOT_EXIST=y  # nice to have\n")
    res = kbuild.build(str(tree), [str(optional)])
    assert res.check["ok"] and res.check["misses"][0]["symbol"] == "CONFIG_DOES_NOT_EXIST"


def test_different_fragments_different_keys(tmp_path: Path, fake_make: FakeMake) -> None:
    tree = make_tree(tmp_path / "linux")
    a = plan.plan_build(str(tree), ["xdp"])
    b = plan.plan_build(str(tree), ["tc"])
    assert a.key != b.key
    assert a.dirkey == b.dirkey  # one O= folder per source: config changes are incremental
    assert plan.plan_build(str(tree), ["xdp"]).key == a.key
    kbuild.build(str(tree), ["xdp"])
    kbuild.build(str(tree), ["tc"])
    assert fake_make.calls == ["allnoconfig", "olddefconfig", "make bzImage"] * 2
    assert kbuild.build(str(tree), ["xdp"]).cached


def test_not_a_source_spec(fake_make: FakeMake) -> None:
    assert kbuild.resolve_built_kernel("debian:7.3") is None
    assert kbuild.resolve_built_kernel("host") is None
    assert not plan.is_source_spec("debian:6.12")
    assert plan.is_source_spec("debian-source:6.12")


def test_check_dotconfig_reads_gzip(tmp_path: Path) -> None:
    import gzip

    saved = ("# Linux/x86 6.12.117 Kernel Configuration\n"
             "CONFIG_BPF_SYSCALL=y\nCONFIG_NETKIT=y\n# CONFIG_MODULES is not set\n")
    path = tmp_path / "config.gz"
    path.write_bytes(gzip.compress(saved.encode()))
    text = kbuild.load_dotconfig(path)
    check = kbuild.check_dotconfig(text, ["netkit"])
    ok = {o.name for o in check.satisfied}
    assert "CONFIG_NETKIT" in ok
    assert not check.ok  # the excerpt lacks most of base: every miss is named
    assert all(m.option.name.startswith("CONFIG_") for m in check.failures)


def test_fragment_suffix_on_specs(tmp_path: Path, fake_make: FakeMake) -> None:
    tree = make_tree(tmp_path / "linux")
    assert plan.split_spec("debian-source:6.12@-netkit") == ("debian-source:6.12", ["-netkit"])
    assert plan.split_spec(f"{tree}@xdp,tc") == (str(tree), ["xdp", "tc"])
    assert plan.split_spec("debian:6.12@x") == ("debian:6.12@x", None)
    assert plan.is_source_spec("debian-source:7.3@all,-arena")
    plain = plan.plan_build(str(tree), ["-xdp"])
    assert plan.plan_build(f"{tree}@-xdp", None).key == plain.key
    assert "xdp" not in plain.merged.fragments
    assert plain.label.endswith("-no-xdp")


def test_interrupted_build_products_are_forgotten(tmp_path: Path) -> None:
    """A build killed outright may leave a half-written object newer than its source;
    the next build removes what the killed one wrote, and only that."""
    import os

    obj = tmp_path / "objs"
    (obj / "net" / "core").mkdir(parents=True)
    old = obj / "net" / "core" / "old.o"
    old.write_bytes(b"complete")
    os.utime(old, (time.time() - 100, time.time() - 100))
    marker = obj / kbuild.BUILDING_MARKER
    marker.write_text("1\n")
    os.utime(marker, (time.time() - 50, time.time() - 50))
    half = obj / "net" / "core" / "dev.o"
    half.write_bytes(b"trunc")
    keep = obj / "net" / "core" / ".dev.o.cmd"
    keep.write_text("cmd")
    removed = kbuild.forget_interrupted_build(obj)
    assert removed == [half]
    assert old.exists() and keep.exists() and not marker.exists()
    assert kbuild.forget_interrupted_build(obj) == []


def test_commands_run_in_their_own_group_and_die_with_it(tmp_path: Path) -> None:
    """A timed-out (or interrupted) command is killed with everything it started."""
    from harness.command import run

    pidfile = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
