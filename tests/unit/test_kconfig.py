"""acquire.kconfig: fragment format, merge by version, verification and its explanations."""

from __future__ import annotations

import pytest

from harness.acquire import kconfig as k
from harness.errors import ConfigError

# An excerpt of a real .config that `make allnoconfig` + all fragments + `olddefconfig`
# produced for Debian's linux-source-6.12 (6.12.117).
SAVED_612 = """\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.12.117 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14+deb12u1) 12.2.0"
CONFIG_PAHOLE_VERSION=124
CONFIG_LOCALVERSION="-kmatrix"
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_BPF=y
CONFIG_BPF_SYSCALL=y
CONFIG_BPF_JIT=y
CONFIG_NET=y
CONFIG_NET_XGRESS=y
CONFIG_NETKIT=y
CONFIG_XDP_SOCKETS=y
CONFIG_DEBUG_INFO=y
CONFIG_DEBUG_INFO_BTF=y
# CONFIG_MODULES is not set
"""


def frag(text: str, name: str = "t") -> k.Fragment:
    return k.parse_fragment(text, name)


def test_parse_values_comments_and_directives() -> None:
    f = frag(
        "# kmatrix: summary test fragment\n"
        "# kmatrix: min-version 6.7\n"
        "# kmatrix: requires bpf-core\n"
        "# kmatrix: optional CONFIG_B\n"
        "# kmatrix: since 6.9 CONFIG_C\n"
        "# a plain comment\n"
        "CONFIG_A=y   # why a\n"
        'CONFIG_S="-kmatrix # not a comment"  # why s\n'
        "CONFIG_B=m\n"
        "# CONFIG_C is not set  # why c\n"
        "CONFIG_N=128 # a number\n"
    )
    assert f.summary == "test fragment"
    assert f.min_version == (6, 7)
    assert f.requires == ("bpf-core",)
    opts = {o.name: o for o in f.options}
    assert opts["CONFIG_A"].value == "y" and opts["CONFIG_A"].why == "why a"
    assert opts["CONFIG_S"].value == '"-kmatrix # not a comment"'
    assert opts["CONFIG_S"].why == "why s"
    assert opts["CONFIG_B"].optional and opts["CONFIG_B"].why == ""
    assert opts["CONFIG_C"].value == "n" and opts["CONFIG_C"].since == (6, 9)
    assert opts["CONFIG_C"].render() == "# CONFIG_C is not set"
    assert opts["CONFIG_N"].value == "128"
    assert opts["CONFIG_A"].line == 7


@pytest.mark.parametrize(
    "text, needle",
    [
        ("CONFIG_A y\n", "t:1: not a Kconfig line"),
        ("CONFIG_A=y\n# kmatrix: frobnicate\n", "t:2: unknown directive"),
        ("# kmatrix: min-version six\n", "not a kernel version"),
        ("# kmatrix: optional CONFIG_X\nCONFIG_A=y\n", "names CONFIG_X"),
        ("# kmatrix: optional A\n", "not a CONFIG_ symbol"),
        ("# kmatrix: since 6.6\n", "needs a version and at least one symbol"),
    ],
)
def test_parse_errors_name_the_line(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        frag(text)


def test_versions() -> None:
    assert k.parse_version("6.12.117-1~deb12u1") == (6, 12)
    assert k.parse_version("v6.7-rc1") == (6, 7)
    assert k.dotconfig_version(SAVED_612) == (6, 12)
    assert k.dotconfig_version("CONFIG_A=y\n") is None


# --- the shipped fragments ---------------------------------------------------------------


def test_shipped_fragments_parse_and_every_option_says_why() -> None:
    frags = k.available_fragments()
    assert {"base", "bpf-core", "tc", "netkit", "xdp", "sockmap", "iter", "arena", "netns",
            "debug"} <= set(frags)
    for f in frags.values():
        assert f.summary, f"{f.name} has no summary"
        for o in f.options:
            assert o.why, f"{f.name}:{o.line} {o.name} has no why-comment"


def test_resolve_all_puts_base_and_requirements_first_and_skips_opt_in() -> None:
    names = [f.name for f in k.resolve_fragments(None)]
    assert names[0] == "base"
    assert "debug" not in names
    assert names.index("bpf-core") < names.index("netkit")
    assert [f.name for f in k.resolve_fragments(["netkit"])] == ["base", "bpf-core", "netkit"]
    assert "debug" in [f.name for f in k.resolve_fragments(["all", "debug"])]


def test_resolve_unknown_fragment() -> None:
    with pytest.raises(ConfigError, match="unknown config fragment 'nope'") as exc:
        k.resolve_fragments(["nope"])
    assert "netkit" in exc.value.hint


def test_netkit_on_61_is_recorded_not_failed() -> None:
    merged = k.merge(k.resolve_fragments(None), (6, 1))
    assert "CONFIG_NETKIT" not in merged.options
    assert "CONFIG_NET_XGRESS" not in merged.options
    assert any(s.startswith("netkit: not in this version") for s in merged.skipped)
    assert "tc: CONFIG_NET_XGRESS=y only requested from 6.6 on (tree is 6.1)" in merged.skipped
    assert "netkit" not in merged.fragments
    on612 = k.merge(k.resolve_fragments(None), (6, 12))
    assert on612.options["CONFIG_NETKIT"].value == "y"
    assert all("CONFIG_MODULES=y only requested up to 6.9" in s for s in on612.skipped)
    assert on612.conflicts == ()


# --- merge ---------------------------------------------------------------------------------


def test_merge_later_wins_conflicts_reported_required_stays_required() -> None:
    a = frag("CONFIG_A=y # a\nCONFIG_B=y # b\n", "a")
    b = frag("# kmatrix: optional CONFIG_B\nCONFIG_A=n # off\nCONFIG_B=y # b\n", "b")
    merged = k.merge([a, b], (6, 12))
    assert merged.options["CONFIG_A"].value == "n"
    assert merged.conflicts == ("CONFIG_A: a sets y, b sets n (using n)",)
    assert not merged.options["CONFIG_B"].optional


def test_digest_ignores_order_but_not_values() -> None:
    a = frag("CONFIG_A=y # a\n", "a")
    b = frag("CONFIG_B=y # b\n", "b")
    c = frag("CONFIG_B=n # b\n", "c")
    assert k.merge([a, b], (6, 12)).digest() == k.merge([b, a], (6, 12)).digest()
    assert k.merge([a, b], (6, 12)).digest() != k.merge([a, c], (6, 12)).digest()


def test_apply_to_dotconfig_replaces_old_values() -> None:
    merged = k.merge([frag("CONFIG_A=y # a\n# CONFIG_B is not set # b\n")], (6, 12))
    out = k.apply_to_dotconfig("# CONFIG_A is not set\nCONFIG_B=y\nCONFIG_C=y\n", merged)
    values = k.parse_dotconfig(out)
    assert values == {"CONFIG_C": "y", "CONFIG_A": "y", "CONFIG_B": "n"}
    assert out.count("CONFIG_A") == 1


# --- expressions and the Kconfig tree ------------------------------------------------------


@pytest.mark.parametrize(
    "expr, want",
    [
        ("A", 2), ("M", 1), ("!A", 0), ("N", 0), ("A && M", 1), ("N || M", 1),
        ("!(A && N)", 2), ("PAHOLE_VERSION >= 116", 2), ("PAHOLE_VERSION >= 125", 0),
        ('S = "x"', 2), ('S != "x"', 0), ("A && (N || PAHOLE_VERSION > 100)", 2),
        ("UNKNOWN", 0), ("A = y", 2), ("M = m", 2),
    ],
)
def test_eval_expr(expr: str, want: int) -> None:
    values = {"A": "y", "M": "m", "N": "n", "PAHOLE_VERSION": "124", "S": '"x"'}
    assert k.eval_expr(expr, values) == want


def test_eval_expr_rejects_garbage() -> None:
    with pytest.raises(ConfigError):
        k.eval_expr("(A && B", {})


FAKE_TREE = {
    "Kconfig": """\
mainmenu "fake"
source "net/Kconfig"
source "arch/$(SRCARCH)/Kconfig"
menu "Debugging"
	depends on DEBUG_KERNEL

config DEBUG_KERNEL
	bool "Kernel debugging"

config DEBUG_INFO_BTF
	bool "Generate BTF"
	depends on BPF_SYSCALL
	depends on PAHOLE_VERSION >= 116
	help
\t  Lots of help text that mentions config NOT_A_SYMBOL
\t  and depends on NOTHING.

endmenu
config PAHOLE_VERSION
	int
""",
    "net/Kconfig": """\
menuconfig NET
	bool "Networking support"

if NET
config NET_XGRESS
	bool
	select NET_INGRESS

config NET_SCH_INGRESS
	tristate "Ingress qdisc" # a trailing comment
	select NET_XGRESS
endif # NET

config BPF_SYSCALL
	bool "bpf() syscall"
""",
    "arch/x86/Kconfig": """\
config X86_ONLY
	def_bool y
	select NET_XGRESS if NET
""",
}


def test_kconfigdb_reads_blocks_sources_and_selects() -> None:
    db = k.KconfigDb.from_text(FAKE_TREE)
    btf = db.symbols["DEBUG_INFO_BTF"]
    assert btf.depends == ["DEBUG_KERNEL", "BPF_SYSCALL", "PAHOLE_VERSION >= 116"]
    assert btf.has_prompt
    assert "NOT_A_SYMBOL" not in db.symbols and "NOTHING" not in db.symbols
    xg = db.symbols["NET_XGRESS"]
    assert xg.depends == ["NET"] and not xg.has_prompt
    assert xg.selected_by == ["NET_SCH_INGRESS", "X86_ONLY if NET"]
    assert db.symbols["X86_ONLY"].defined_at == ["arch/x86/Kconfig:1"]


def test_check_names_unknown_symbol_and_fails() -> None:
    merged = k.merge([frag("CONFIG_NETKIT=y # nk\nCONFIG_DOES_NOT_EXIST=y # bogus\n")],
                     (6, 12))
    check = k.check_config(merged, k.parse_dotconfig(SAVED_612), k.KconfigDb.from_text(FAKE_TREE))
    assert not check.ok
    assert [m.option.name for m in check.failures] == ["CONFIG_DOES_NOT_EXIST"]
    text = check.format()
    assert "CONFIG_DOES_NOT_EXIST: wanted y, got n" in text
    assert "unknown in this version" in text
    assert check.as_dict()["misses"][0]["symbol"] == "CONFIG_DOES_NOT_EXIST"  # type: ignore[index]


def test_check_explains_unmet_dependency_and_optional_does_not_fail() -> None:
    merged = k.merge(
        [frag("# kmatrix: optional CONFIG_DEBUG_INFO_BTF\nCONFIG_DEBUG_INFO_BTF=y # btf\n")],
        (6, 12),
    )
    final = {"CONFIG_DEBUG_KERNEL": "y", "CONFIG_BPF_SYSCALL": "y",
             "CONFIG_PAHOLE_VERSION": "0"}
    check = k.check_config(merged, final, k.KconfigDb.from_text(FAKE_TREE))
    assert check.ok and len(check.misses) == 1
    reason = check.misses[0].reason
    assert reason.startswith("unmet dependency: depends on PAHOLE_VERSION >= 116")
    assert "PAHOLE_VERSION=0" in reason


def test_check_explains_promptless_and_forced_on() -> None:
    db = k.KconfigDb.from_text(FAKE_TREE)
    merged = k.merge([frag("CONFIG_NET_XGRESS=y # tcx\n")], (6, 12))
    check = k.check_config(merged, {"CONFIG_NET": "y"}, db)
    assert "has no prompt" in check.misses[0].reason
    assert "NET_SCH_INGRESS" in check.misses[0].reason
    merged = k.merge([frag("# CONFIG_NET_XGRESS is not set # off\n")], (6, 12))
    check = k.check_config(merged, {"CONFIG_NET": "y", "CONFIG_NET_SCH_INGRESS": "y",
                                    "CONFIG_NET_XGRESS": "y"}, db)
    assert check.misses[0].reason == "forced on: selected by NET_SCH_INGRESS"


def test_requested_n_is_satisfied_by_absence() -> None:
    merged = k.merge([frag("# CONFIG_MODULES is not set # none\n# CONFIG_X is not set # x\n")],
                     (6, 12))
    check = k.check_config(merged, k.parse_dotconfig(SAVED_612))
    assert check.ok and not check.misses


def test_saved_612_config_satisfies_acceptance_symbols() -> None:
    values = k.parse_dotconfig(SAVED_612)
    for sym in ("CONFIG_NETKIT", "CONFIG_DEBUG_INFO_BTF", "CONFIG_XDP_SOCKETS"):
        assert values[sym] == "y"
    assert values["CONFIG_LOCALVERSION"] == '"-kmatrix"'
    assert values["CONFIG_MODULES"] == "n"


def test_leave_fragments_out() -> None:
    names = [f.name for f in k.resolve_fragments(["-netkit"])]
    assert "netkit" not in names and "xdp" in names and names[0] == "base"
    assert [f.name for f in k.resolve_fragments(["netkit", "tc", "-tc"])] == [
        "base", "bpf-core", "netkit"]
    with pytest.raises(ConfigError, match="base fragment cannot be left out"):
        k.resolve_fragments(["-base"])
    with pytest.raises(ConfigError, match="cannot leave out bpf-core: fragment"):
        k.resolve_fragments(["-bpf-core"])
    with pytest.raises(ConfigError, match="unknown fragment 'nope'"):
        k.resolve_fragments(["-nope"])


def test_until_and_modules_follow_the_610_kconfig_change() -> None:
    f = frag("# kmatrix: until 6.9 CONFIG_M\nCONFIG_M=y # old kernels\n")
    assert f.options[0].until == (6, 9)
    assert "CONFIG_M" in k.merge([f], (6, 9)).options
    skipped = k.merge([f], (6, 10))
    assert "CONFIG_M" not in skipped.options
    assert skipped.skipped == ("t: CONFIG_M=y only requested up to 6.9 (tree is 6.10)",)
    old = k.merge(k.resolve_fragments(None), (6, 1))
    new = k.merge(k.resolve_fragments(None), (6, 12))
    assert old.options["CONFIG_MODULES"].value == "y"
    assert new.options["CONFIG_MODULES"].value == "n"
    assert old.conflicts == () and new.conflicts == ()
