"""Debian package selection and version ordering, without apt (saved names and stanzas)."""

import subprocess

import pytest
from debian.debian_support import Version

from harness.acquire import apt, debian

NAMES = [
    "linux-image-6.1.0-55-amd64", "linux-image-6.1.0-56-amd64", "linux-image-6.1.0-56-cloud-amd64",
    "linux-image-6.1.0-56-amd64-dbg", "linux-image-6.1.0-56-rt-amd64",
    "linux-image-6.12-amd64", "linux-image-6.12.115+deb12-amd64",
    "linux-image-6.12.117+deb12-amd64", "linux-image-6.12.117+deb12-amd64-unsigned",
    "linux-image-7.3.4+deb13-amd64", "linux-image-amd64",
]


def test_series_picks_only_that_series() -> None:
    assert debian.image_package_names("6.1", NAMES) == [
        "linux-image-6.1.0-55-amd64", "linux-image-6.1.0-56-amd64"]
    assert debian.image_package_names("6.12", NAMES) == [
        "linux-image-6.12.115+deb12-amd64", "linux-image-6.12.117+deb12-amd64"]
    assert debian.image_package_names("7.3", NAMES) == ["linux-image-7.3.4+deb13-amd64"]
    assert debian.image_package_names("5.99", NAMES) == []


def test_available_series() -> None:
    assert debian.available_series(NAMES) == ["6.1", "6.12", "7.3"]


def test_stanzas_and_depends() -> None:
    text = ("Package: linux-image-7.3.4+deb13-amd64\nVersion: 7.3.4-1~bpo13+1\n"
            "Depends: linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), "
            "linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)\nDescription: x\n\n"
            "Package: other\nVersion: 1\n")
    pkgs = apt.parse_stanzas(text)
    assert pkgs[0].depends == ("linux-binary-7.3.4+deb13-amd64",
                               "linux-modules-7.3.4+deb13-amd64")
    assert pkgs[1] == apt.Package("other", "1", ())


@pytest.mark.parametrize("a,b", [
    ("6.12.117-1~deb12u1", "6.12.115-1~deb12u1"), ("7.3.4-1", "7.3.4-1~bpo13+1"),
    ("1.0", "1.0~rc1"), ("2:1.0", "1:9.9"), ("6.1.192-10", "6.1.192-2"), ("1.0.0", "1.0"),
    ("1.0+", "1.0a"),
])
def test_newest_orders_like_dpkg(a: str, b: str) -> None:
    """apt.newest (python-debian's Version) agrees with dpkg --compare-versions."""
    assert apt.newest([apt.Package("p", b, ()), apt.Package("p", a, ())]).version == a
    assert Version(a) > Version(b)
    if subprocess.run(["which", "dpkg"], capture_output=True).returncode == 0:
        assert subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
