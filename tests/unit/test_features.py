"""Expectations: the feature table applied to a kernel's version, config and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.matrix.features import (
    Feature,
    expect,
    expectations,
    first_supported,
    load_features,
    read_config,
)
from harness.matrix.kernels import default_kernels, load_matrix, overrides

TCX = Feature("tcx", (6, 6), ("CONFIG_BPF_SYSCALL", "CONFIG_NET_XGRESS"), "ref")


def test_table_of_the_repository_loads_and_has_every_probe() -> None:
    from harness.guest.probes import FEATURES

    table = load_features()
    assert set(FEATURES) <= set(table)
    assert table["tcx"].since == (6, 6) and "CONFIG_NET_XGRESS" in table["tcx"].kconfig


def test_new_enough_and_configured_is_expected() -> None:
    e = expect(TCX, (6, 12), {"CONFIG_BPF_SYSCALL": "y", "CONFIG_NET_XGRESS": "y"})
    assert (e.expected, e.state) == (True, "expected")
    assert "since 6.6" in e.reason and "CONFIG_NET_XGRESS=y" in e.reason


def test_unknown_config_goes_by_version() -> None:
    e = expect(TCX, (7, 3), None)
    assert (e.expected, e.state) == (True, "expected")
    assert "config unknown" in e.reason


def test_configured_out_names_the_symbol() -> None:
    e = expect(TCX, (6, 12), {"CONFIG_BPF_SYSCALL": "y", "CONFIG_NET_XGRESS": "n"})
    assert (e.expected, e.state) == (False, "configured-out")
    assert "CONFIG_NET_XGRESS" in e.reason


def test_too_old() -> None:
    e = expect(TCX, (6, 1), {"CONFIG_BPF_SYSCALL": "y"})
    assert (e.expected, e.state) == (False, "too-old")
    assert e.reason == "tcx arrived in 6.6, this kernel is 6.1"


def test_override_wins_with_its_reason() -> None:
    e = expect(TCX, (6, 1), None, {"expected": True, "why": "backported"})
    assert (e.expected, e.state) == (True, "override")
    assert "backported" in e.reason


def test_overrides_of_unknown_features_are_refused() -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        expectations({"tcx": TCX}, (6, 12), None, {"nosuch": {"expected": True}})


def test_read_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_D=\"x\"\n")
    assert read_config(cfg) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "m",
                                "CONFIG_D": '"x"'}
    assert read_config(None) is None and read_config(tmp_path / "nope") is None


def test_matrix_overrides(tmp_path: Path) -> None:
    m = tmp_path / "m.toml"
    m.write_text('[[kernel]]\nspec = "debian:6.1"\n[kernel.expect]\n'
                 'tcx = { expected = true, why = "backport" }\n\n'
                 '[[kernel]]\nspec = "debian:6.12"\n\n[ci]\nkernels = ["debian:6.1"]\n')
    assert overrides(m) == {"debian:6.1": {"tcx": {"expected": True, "why": "backport"}}}
    assert default_kernels(str(m)) == ["debian:6.1", "debian:6.12"]
    assert default_kernels("ci", m) == ["debian:6.1"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[kernel]]\nspec = "x"\n[kernel.expect]\ntcx = true\n')
    with pytest.raises(ConfigError, match="expected = true"):
        load_matrix(bad)


def test_first_supported_is_the_lowest_release() -> None:
    probes = {"a": {"tcx": {"supported": True}}, "b": {"tcx": {"supported": True}},
              "c": {"tcx": {"supported": False}}}
    releases = {"a": "7.3.4+deb13-amd64", "b": "6.12.117+deb13-amd64", "c": "6.1.0-57"}
    assert first_supported(probes, releases, "tcx") == "6.12.117+deb13-amd64"
    assert first_supported(probes, releases, "netkit") == ""


def test_every_probe_resolves_to_a_function() -> None:
    """The registry names modules and functions as strings (imported on first use): a typo
    would only show in a guest, so each is resolved here."""
    from harness.guest.probes import FEATURES, probe_function

    for feature in FEATURES:
        assert callable(probe_function(feature)), feature
