"""Host-side tests of harness.bpf.compile and of harness.guest.bpf's C-facing definitions.

No kernel is needed: the object cache is exercised with clang-19 on tiny sources in a
temporary cache, and the ctypes layouts and UAPI constants of harness.guest.bpf are compared with
what the C compiler sees in <bpf/libbpf.h>, <bpf/bpf.h> and <linux/bpf.h> (and the enums
of the cached vmlinux.h when there is one).
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from enum import IntEnum, IntFlag
from pathlib import Path
from typing import Any

import pytest
from c_facts import CFacts

from harness.bpf import compile as bpfobj
from harness.errors import CommandError, MissingToolError, UserError
from harness.guest import bpf as lb
from harness.guest.bpf import structs

HAVE_CLANG = shutil.which(bpfobj.CLANG) is not None
HAVE_GCC = shutil.which("gcc") is not None and Path("/usr/include/bpf/libbpf.h").is_file()

MINI_SOURCE = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("tc")
int mini(struct __sk_buff *skb) { return 0; }
"""

FAKE_VMLINUX = """\
#ifndef __VMLINUX_H__
#define __VMLINUX_H__
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef unsigned short __u16;
typedef unsigned char __u8;
typedef int __s32;
typedef long long __s64;
typedef short __s16;
typedef signed char __s8;
typedef __u32 __wsum;
typedef __u16 __be16;
typedef __u32 __be32;
struct __sk_buff { __u32 len; };
enum bpf_map_type { BPF_MAP_TYPE_ARRAY = 2 };
#endif
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty KMATRIX_CACHE with a fake recorded vmlinux.h, and a bpf/ dir."""
    root = tmp_path / "cache"
    monkeypatch.setenv("KMATRIX_CACHE", str(root))
    header = root / "vmlinux-h" / "1.0-1" / bpfobj.VMLINUX_REL
    header.parent.mkdir(parents=True)
    header.write_text(FAKE_VMLINUX)
    (root / "vmlinux-h" / "current.json").write_text(
        json.dumps({"package": bpfobj.VMLINUX_PACKAGE, "version": "1.0-1"}))
    src = tmp_path / "bpf"
    src.mkdir()
    (src / "mini.bpf.c").write_text(MINI_SOURCE)
    return root


def _header() -> bpfobj.VmlinuxHeader:
    return bpfobj.vmlinux_h(fetch=False)


# --------------------------------------------------------------------------- bpfobj


def test_sources_named_by_stem(tmp_path: Path) -> None:
    (tmp_path / "a_b.bpf.c").write_text("")
    (tmp_path / "not_bpf.c").write_text("")
    assert list(bpfobj.sources(tmp_path)) == ["a_b"]


def test_repo_sources_exist() -> None:
    names = set(bpfobj.sources())
    assert {"tcx_chain", "probe_tc", "probe_sockmap", "xsk_redirect", "probe_iter",
            "probe_sock_destroy"} <= names


def test_recorded_vmlinux_header(cache: Path) -> None:
    header = _header()
    assert header.version == "1.0-1"
    assert header.path.read_text() == FAKE_VMLINUX
    assert header.include_dir == header.path.parent


def test_no_recorded_header_is_a_user_error(cache: Path) -> None:
    (cache / "vmlinux-h" / "current.json").unlink()
    with pytest.raises(UserError) as exc:
        bpfobj.vmlinux_h(fetch=False)
    assert "build_all" in exc.value.hint


def test_candidate_version_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.acquire import apt

    out = ("Package: linux-bpf-dev\nVersion: 7.3.4-1~bpo13+1\nSHA256: ab12\n"
           "Description: x\n")

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert argv[1:] == ["show", "--no-all-versions", "linux-bpf-dev"]
        return subprocess.CompletedProcess(argv, 0, out, None)

    monkeypatch.setattr(apt, "run", fake_run)
    monkeypatch.setattr(apt, "which", lambda tool: tool)
    bpfobj._candidate_version.cache_clear()
    try:
        assert bpfobj._candidate_version() == "7.3.4-1~bpo13+1"
    finally:
        bpfobj._candidate_version.cache_clear()


def test_hash_covers_every_input(cache: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src_dir = tmp_path / "bpf"
    src = src_dir / "mini.bpf.c"
    header = _header()
    base = bpfobj.object_hash(src, header, "clang 19.1.7", src_dir)
    assert base == bpfobj.object_hash(src, header, "clang 19.1.7", src_dir)
    assert base != bpfobj.object_hash(src, header, "clang 19.1.8", src_dir)

    src.write_text(MINI_SOURCE + "\n")
    changed_src = bpfobj.object_hash(src, header, "clang 19.1.7", src_dir)
    assert changed_src != base

    (src_dir / "common.h").write_text("#define X 1\n")
    changed_hdr = bpfobj.object_hash(src, header, "clang 19.1.7", src_dir)
    assert changed_hdr != changed_src

    header.path.write_text(FAKE_VMLINUX + "\n")
    changed_vmlinux = bpfobj.object_hash(src, header, "clang 19.1.7", src_dir)
    assert changed_vmlinux != changed_hdr

    monkeypatch.setattr(bpfobj, "CFLAGS", (*bpfobj.CFLAGS, "-DX"))
    assert bpfobj.object_hash(src, header, "clang 19.1.7", src_dir) != changed_vmlinux


@pytest.mark.skipif(not HAVE_CLANG, reason="clang-19 not installed")
def test_build_once_then_cached(cache: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    src_dir = tmp_path / "bpf"
    obj = bpfobj.build("mini", bpf_dir=src_dir)
    assert obj.parent.parent == cache / "bpf"
    assert obj.name == "mini.bpf.o"
    assert obj.read_bytes()[:4] == b"\x7fELF"
    manifest = json.loads(obj.with_suffix(".json").read_text())
    assert manifest["vmlinux_h"]["version"] == "1.0-1"
    assert manifest["flags"] == list(bpfobj.CFLAGS)

    def no_compile(*_: object) -> None:
        raise AssertionError("recompiled a cached object")

    monkeypatch.setattr(bpfobj, "_compile", no_compile)
    assert bpfobj.build("mini", bpf_dir=src_dir) == obj


@pytest.mark.skipif(not HAVE_CLANG, reason="clang-19 not installed")
def test_build_all_uses_recorded_header_when_candidate_cached(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpfobj, "_candidate_version", lambda: "1.0-1")
    built = bpfobj.build_all(bpf_dir=tmp_path / "bpf")
    assert list(built) == ["mini"]
    assert built["mini"].is_file()


@pytest.mark.skipif(not HAVE_CLANG, reason="clang-19 not installed")
def test_compile_error_carries_compiler_output(cache: Path, tmp_path: Path) -> None:
    src_dir = tmp_path / "bpf"
    (src_dir / "broken.bpf.c").write_text("int f(void) { return undefined_symbol; }\n")
    with pytest.raises(CommandError) as exc:
        bpfobj.build("broken", bpf_dir=src_dir)
    assert "undefined_symbol" in exc.value.output
    assert not list((cache / "bpf").glob("*/broken.bpf.o"))
    assert not list((cache / "bpf").glob("*/.broken*"))


def test_missing_clang(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpfobj, "CLANG", "clang-does-not-exist-19")
    with pytest.raises(MissingToolError) as exc:
        bpfobj.build("mini", bpf_dir=tmp_path / "bpf")
    assert "clang-does-not-exist-19" in str(exc.value)
    assert exc.value.hint


def test_unknown_object(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        bpfobj.build("nope", bpf_dir=tmp_path / "bpf")
    assert "mini" in exc.value.hint


@pytest.mark.skipif(not HAVE_CLANG, reason="clang-19 not installed")
def test_object_set_gathers_objects_by_name(cache: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The guest reads one folder of NAME.bpf.o; the same inputs give the same folder."""
    monkeypatch.setattr(bpfobj, "_candidate_version", lambda: "1.0-1")
    folder = bpfobj.object_set(tmp_path / "bpf")
    assert (folder / "mini.bpf.o").read_bytes()[:4] == b"\x7fELF"
    assert (folder / "mini.bpf.o").samefile(bpfobj.build("mini", bpf_dir=tmp_path / "bpf"))
    assert bpfobj.object_set(tmp_path / "bpf") == folder
    (tmp_path / "bpf" / "mini.bpf.c").write_text(MINI_SOURCE + "// edited\n")
    assert bpfobj.object_set(tmp_path / "bpf") != folder


def test_guest_object_path_names_the_folder(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.bpf.o").write_bytes(b"\x7fELF")
    monkeypatch.setenv("KMATRIX_BPF_OBJECTS", str(tmp_path))
    assert lb.object_path("a") == tmp_path / "a.bpf.o"
    with pytest.raises(FileNotFoundError, match="known: a"):
        lb.object_path("b")
    monkeypatch.delenv("KMATRIX_BPF_OBJECTS")
    with pytest.raises(RuntimeError, match="KMATRIX_BPF_OBJECTS"):
        lb.object_path("a")


# --------------------------------------------------------------------------- libbpf.py


def test_libbpf_version() -> None:
    assert lb.version() >= lb.MIN_VERSION
    assert lb.has("bpf_program__attach_tcx")


def test_flag_and_errno_names() -> None:
    assert lb.flags_str(lb.BPF_F_BEFORE | lb.BPF_F_LINK) == "BPF_F_BEFORE|BPF_F_LINK"
    assert lb.flags_str(0) == "0"
    assert lb.errno_name(95) == "EOPNOTSUPP"
    assert lb.errno_name(22) == "EINVAL"
    assert lb.attach_name(46) == "BPF_TCX_INGRESS"


def test_to_buffer() -> None:
    assert lb.to_buffer(0x0102, 4, "k").raw == b"\x02\x01\x00\x00"
    assert lb.to_buffer(b"abcd", 4, "k").raw == b"abcd"
    assert lb.to_buffer(ctypes.c_uint32(7), 4, "k").raw == b"\x07\x00\x00\x00"
    with pytest.raises(ValueError):
        lb.to_buffer(b"abc", 4, "k")


#: ctypes struct -> the C type it mirrors
STRUCTS: dict[type[ctypes.Structure], str] = {
    structs.TcxOpts: "struct bpf_tcx_opts",
    structs.ProgAttachOpts: "struct bpf_prog_attach_opts",
    structs.ProgDetachOpts: "struct bpf_prog_detach_opts",
    structs.ProgQueryOpts: "struct bpf_prog_query_opts",
    structs.LinkCreateOpts: "struct bpf_link_create_opts",
    structs.LinkUpdateOpts: "struct bpf_link_update_opts",
    structs.MapCreateOpts: "struct bpf_map_create_opts",
    structs.IterAttachOpts: "struct bpf_iter_attach_opts",
    structs.TestRunOpts: "struct bpf_test_run_opts",
    structs.TcHookOpts: "struct bpf_tc_hook",
    structs.TcOpts: "struct bpf_tc_opts",
    structs.BpfProgInfo: "struct bpf_prog_info",
    structs.BpfMapInfo: "struct bpf_map_info",
    structs.BpfLinkInfo: "struct bpf_link_info",
}
#: structs whose ctypes version covers only a prefix of the C one (no size check)
PREFIX_ONLY = {structs.BpfProgInfo, structs.BpfLinkInfo}
#: extra (ctypes path, C member) pairs inside unions
NESTED: list[tuple[type[ctypes.Structure], str, str]] = [
    (structs.LinkCreateOpts, "tcx", "relative_fd"), (structs.LinkCreateOpts, "tcx", "relative_id"),
    (structs.LinkCreateOpts, "tcx", "expected_revision"),
    (structs.LinkCreateOpts, "netkit", "expected_revision"),
    (structs.BpfLinkInfo, "tcx", "ifindex"), (structs.BpfLinkInfo, "tcx", "attach_type"),
    (structs.BpfLinkInfo, "netkit", "ifindex"),
]

ENUMS: list[tuple[type[IntEnum] | type[IntFlag], str]] = [
    (lb.ProgType, "BPF_PROG_TYPE_"), (lb.MapType, "BPF_MAP_TYPE_"), (lb.AttachType, "BPF_"),
    (lb.LinkType, "BPF_LINK_TYPE_"), (lb.AttachFlags, "BPF_F_"), (lb.TcxAction, "TCX_"),
    (lb.NetkitAction, "NETKIT_"), (lb.TcAttachPoint, "BPF_TC_"), (lb.UpdateFlags, "BPF_"),
]


def _c_probe_program() -> CFacts:
    facts = CFacts(["linux/bpf.h", "linux/if_link.h", "bpf/bpf.h", "bpf/libbpf.h"])
    for cls, ctype in STRUCTS.items():
        facts.emit(f"sizeof {cls.__name__}", f"sizeof({ctype})")
        fields: list[tuple[str, Any]] = cls._fields_  # type: ignore[assignment]
        for fname, *_ in fields:
            if fname in ("u", "_align"):
                continue
            facts.emit(f"{cls.__name__}.{fname}", f"offsetof({ctype}, {fname})")
    for cls, member, sub in NESTED:
        facts.emit(f"{cls.__name__}.{member}.{sub}",
                   f"offsetof({STRUCTS[cls]}, {member}.{sub})")
    for enum, prefix in ENUMS:
        for item in enum:
            facts.emit(f"{enum.__name__}.{item.name}", f"{prefix}{item.name}")
    return facts


@pytest.fixture(scope="module")
def c_facts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    if not HAVE_GCC:
        pytest.skip("gcc or libbpf-dev headers missing")
    yield _c_probe_program().run(tmp_path_factory.mktemp("cfacts"))


@pytest.mark.parametrize("cls", list(STRUCTS), ids=lambda c: c.__name__)
def test_struct_layout_matches_c(cls: type[ctypes.Structure], c_facts: dict[str, int]) -> None:
    for fname, *_ in cls._fields_:
        if fname in ("u", "_align"):
            continue
        assert getattr(cls, fname).offset == c_facts[f"{cls.__name__}.{fname}"], fname
    if cls not in PREFIX_ONLY:  # the kernel accepts a prefix of bpf_{prog,link}_info
        assert ctypes.sizeof(cls) == c_facts[f"sizeof {cls.__name__}"]


def test_union_members_match_c(c_facts: dict[str, int]) -> None:
    for cls, member, sub in NESTED:
        union_offset = cls.u.offset
        inner = getattr(type(getattr(cls(), member)), sub).offset
        assert union_offset + inner == c_facts[f"{cls.__name__}.{member}.{sub}"], (
            cls.__name__, member, sub)


@pytest.mark.parametrize("enum", [e for e, _ in ENUMS], ids=lambda e: e.__name__)
def test_constants_match_uapi(enum: type[IntEnum], c_facts: dict[str, int]) -> None:
    for item in enum:
        assert int(item) == c_facts[f"{enum.__name__}.{item.name}"], item


def _cached_vmlinux_h() -> Path | None:
    try:
        return bpfobj.vmlinux_h(fetch=False).path
    except UserError:
        return None


@pytest.mark.skipif(_cached_vmlinux_h() is None, reason="no vmlinux.h in the kmatrix cache")
@pytest.mark.parametrize("enum,prefix", ENUMS, ids=[e.__name__ for e, _ in ENUMS])
def test_constants_match_vmlinux_h(enum: type[IntEnum], prefix: str) -> None:
    """Enum values as the newest kernel's BTF has them (macros are not in vmlinux.h)."""
    path = _cached_vmlinux_h()
    assert path is not None
    text = path.read_text()
    seen = 0
    for item in enum:
        m = re.search(rf"\b{prefix}{item.name} = (-?\d+),", text)
        if m:
            seen += 1
            assert int(m.group(1)) == int(item), item
    if enum not in (lb.AttachFlags, lb.TcAttachPoint, lb.UpdateFlags):
        assert seen == len(enum), f"{enum.__name__}: only {seen} of {len(enum)} in vmlinux.h"


def test_opts_sz_is_struct_size() -> None:
    for cls in (structs.TcxOpts, structs.LinkCreateOpts, structs.ProgQueryOpts, structs.TcHookOpts):
        assert cls().sz == ctypes.sizeof(cls)
