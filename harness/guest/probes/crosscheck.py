"""Our probes against `bpftool feature probe kernel -j`, where bpftool knows the feature.

bpftool answers "does this program/map type exist" by loading a trivial program or
creating a map; our probes do more (an attach type, real bytes, a destroyed socket), so a
type bpftool has with our probe saying no can be right (the type is older than what the
cases need) and is reported for a human to read; bpftool saying no where our probe said yes
would mean a broken probe. Runs in the background while the agent collects the cases.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

#: our feature -> (bpftool section, key)
BPFTOOL_KEYS: dict[str, tuple[str, str]] = {
    "arena": ("map_types", "have_arena_map_type"),
    "sockmap": ("map_types", "have_sockmap_map_type"),
    "sockhash": ("map_types", "have_sockhash_map_type"),
    "sk_msg": ("program_types", "have_sk_msg_prog_type"),
    "sk_skb": ("program_types", "have_sk_skb_prog_type"),
    "af_xdp": ("map_types", "have_xskmap_map_type"),
}


class BpftoolCrossCheck:
    """`bpftool feature probe` started now, compared with our probes when `result()` is
    asked for (waiting at most `timeout` seconds)."""

    def __init__(self) -> None:
        self.missing = ""
        self.proc: subprocess.Popen[str] | None = None
        tool = shutil.which("bpftool") or shutil.which("bpftool", path="/usr/sbin:/sbin")
        if tool is None:
            self.missing = "bpftool not found in the guest"
            return
        self.proc = subprocess.Popen([tool, "feature", "probe", "kernel", "-j"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)

    def result(self, probes: dict[str, dict[str, Any]], timeout: float = 120.0
               ) -> dict[str, Any]:
        """{"ran": bool, "detail": str, "disagreements": [...]}"""
        if self.proc is None:
            return {"ran": False, "detail": self.missing, "disagreements": []}
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"ran": False, "detail": f"bpftool feature probe took over {timeout:.0f}s",
                    "disagreements": []}
        try:
            data = json.loads(out)
        except ValueError:
            return {"ran": False, "detail": f"bpftool feature probe said: {out[:200]!r}",
                    "disagreements": []}
        return {"ran": True, "detail": "bpftool feature probe kernel -j",
                "disagreements": compare(probes, data)}


def compare(probes: dict[str, dict[str, Any]], bpftool: dict[str, Any]) -> list[str]:
    """Where bpftool and our probes disagree, one sentence each."""
    out = []
    for feature, (section, key) in BPFTOOL_KEYS.items():
        ours = probes.get(feature)
        theirs = bpftool.get(section, {}).get(key)
        if ours is None or theirs is None or ours.get("status") == "error":
            continue
        if bool(theirs) != bool(ours.get("supported")):
            said = "yes" if ours.get("supported") else "no"
            detail = str(ours.get("detail", "")).splitlines()[0][:120]
            out.append(f"{feature}: bpftool {key}={str(theirs).lower()}, our probe says "
                       f"{said} ({detail})")
    return out
