"""Expectations: what each kernel of the matrix should support (images/features.toml).

A kernel's expectation for a feature comes from its version and, where known, its config:

- `expected`        version >= since, and every Kconfig symbol is y/m (or the config is
                    unknown): a refusal by the kernel is a FAILURE of the gated cases;
- `configured-out`  new enough, but the config lacks a symbol: a skip naming it;
- `too-old`         older than the feature: a skip with the probe's errno;
- `unknown`         the kernel's version is unknown (an image without a release): a skip;
- `override`        images/matrix.toml says otherwise for this kernel, with a reason.

Pure logic over plain data (unit-tested in tests/unit/test_features.py); the host sends the
result to the guest agent, whose plugin applies it (harness/guest/gating.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import PROJECT_ROOT
from ..protocol import Expectation

FEATURES_FILE = PROJECT_ROOT / "images" / "features.toml"

KVersion = tuple[int, int]


@dataclass(frozen=True)
class Feature:
    """One row of images/features.toml."""

    name: str
    #: first mainline release with it (None: not merged upstream)
    since: KVersion | None
    #: Kconfig symbols it needs (y or m)
    kconfig: tuple[str, ...]
    #: where it came from (commit or document)
    ref: str
    #: what a tester must know about it
    note: str = ""

    @property
    def since_text(self) -> str:
        return "not upstream" if self.since is None else f"{self.since[0]}.{self.since[1]}"


def parse_version(text: str) -> KVersion:
    m = re.match(r"\s*v?(\d+)\.(\d+)", text)
    if not m:
        raise ConfigError(f"not a kernel version: {text!r}", hint="write MAJOR.MINOR")
    return int(m.group(1)), int(m.group(2))


def load_features(path: Path = FEATURES_FILE) -> dict[str, Feature]:
    """Every feature of the table, by name."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the feature table {path}: {exc}") from exc
    out: dict[str, Feature] = {}
    for name, entry in data.get("feature", {}).items():
        try:
            since = None if entry["since"] == "none" else parse_version(str(entry["since"]))
            out[name] = Feature(name, since,
                                tuple(entry.get("kconfig", ())), str(entry.get("ref", "")),
                                str(entry.get("note", "")))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: feature {name}: bad entry ({exc})",
                              hint="each needs since = \"X.Y\", kconfig = [...], ref") from exc
    return out


def read_config(path: Path | None) -> dict[str, str] | None:
    """Symbol -> value of a .config (`# CONFIG_X is not set` is `n`); None when unknown."""
    if path is None or not path.is_file():
        return None
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
        elif m := re.match(r"# (CONFIG_\w+) is not set", line):
            values[m.group(1)] = "n"
    return values


def expect(feature: Feature, version: KVersion | None, config: Mapping[str, str] | None,
           override: Mapping[str, Any] | None = None) -> Expectation:
    """The expectation of one kernel (its series and config) for `feature`."""
    if override is not None:
        wanted = bool(override.get("expected", True))
        why = str(override.get("why", "")) or "no reason given"
        return Expectation(feature.name, wanted, "override",
                           f"{'expected' if wanted else 'not expected'} by the matrix: {why}")
    if feature.since is None:
        return Expectation(feature.name, False, "not-upstream",
                           f"{feature.name} is not merged upstream (images/features.toml)")
    if version is None:
        return Expectation(feature.name, False, "unknown",
                           f"kernel version unknown (feature since {feature.since_text})")
    vtext = f"{version[0]}.{version[1]}"
    if version < feature.since:
        return Expectation(feature.name, False, "too-old",
                           f"{feature.name} arrived in {feature.since_text}, this kernel is "
                           f"{vtext}")
    if config is not None:
        missing = [s for s in feature.kconfig if config.get(s, "n") not in ("y", "m")]
        if missing:
            return Expectation(feature.name, False, "configured-out",
                               f"configured out: {', '.join(missing)} not set in this "
                               f"kernel's config ({feature.name} needs it; since "
                               f"{feature.since_text})")
        where = f"{', '.join(s + '=' + config[s] for s in feature.kconfig)} in its config"
    else:
        where = "config unknown"
    return Expectation(feature.name, True, "expected",
                       f"{feature.name} since {feature.since_text}, kernel {vtext}, {where}")


def expectations(features: Mapping[str, Feature], version: KVersion | None,
                 config: Mapping[str, str] | None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None,
                 ) -> dict[str, Expectation]:
    """Every feature's expectation for one kernel."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(features))
    if unknown:
        raise ConfigError(f"matrix overrides name unknown features: {', '.join(unknown)}",
                          hint=f"known: {', '.join(sorted(features))}")
    return {name: expect(f, version, config, overrides.get(name))
            for name, f in features.items()}


def first_supported(probes_by_kernel: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    releases: Mapping[str, str], feature: str) -> str:
    """The lowest kernel release of the run whose probe said yes ("" when none): the
    report's "first kernel where it works" column."""
    yes = [releases.get(label, "") for label, probes in probes_by_kernel.items()
           if probes.get(feature, {}).get("supported")]
    yes = [r for r in yes if r]

    def key(release: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", release)[:3])

    return min(yes, key=key) if yes else ""
