"""Feature probes: does the booted kernel do X? Answered by trying X, never by version.

Each probe does the real thing the feature's tests need, in a private network namespace
(a helper thread that unshares its netns, so nothing shows up on the host's devices and
parallel tests never see a probe's attachment), and reports a `ProbeResult`:

- supported: what worked, e.g. ``bpf_link_create(BPF_TCX_INGRESS) on lo: link id 7``
- unsupported: the call that failed with the kernel's errno name and message, e.g.
  ``bpf_link_create(BPF_TCX_INGRESS, target=1, flags=0): EINVAL (Invalid argument)``

A missing feature is never an exception. Results are cached per process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .. import bpf as lb
from ..net.netns import in_new_netns
from . import arena, netkit, sockiter, sockmap, tc, xdp
from .base import ProbeResult, Unsupported, oserror_detail

_PROBES: dict[str, Callable[[], str]] = {
    "tcx": tc.probe_tcx,
    "netkit": netkit.probe_netkit,
    "arena": arena.probe_arena,
    "sockmap": lambda: sockmap.probe_sockmap_type(lb.MapType.SOCKMAP),
    "sockhash": lambda: sockmap.probe_sockmap_type(lb.MapType.SOCKHASH),
    "sk_msg": lambda: sockmap.probe_sk_prog("probe_sk_msg", lb.BPF_SK_MSG_VERDICT),
    "sk_skb": lambda: sockmap.probe_sk_prog("probe_sk_skb_verdict",
                                            lb.BPF_SK_SKB_STREAM_VERDICT),
    "af_xdp": xdp.probe_af_xdp,
    "bpf_iter_tcp": lambda: sockiter.probe_iter("probe_iter_tcp", "tcp"),
    "bpf_iter_udp": lambda: sockiter.probe_iter("probe_iter_udp", "udp"),
    "bpf_iter_unix": lambda: sockiter.probe_iter("probe_iter_unix", "unix"),
    "bpf_sock_destroy": sockiter.probe_sock_destroy,
}

FEATURES: tuple[str, ...] = tuple(_PROBES)


@functools.cache
def probe(feature: str) -> ProbeResult:
    """Try `feature` in the running kernel (cached per process). Unknown names raise
    ValueError (a typo in a marker must not turn into a silent skip)."""
    try:
        fn = _PROBES[feature]
    except KeyError:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}") from None
    try:
        return ProbeResult(feature, True, in_new_netns(fn))
    except Unsupported as exc:
        return ProbeResult(feature, False, str(exc))
    except OSError as exc:
        return ProbeResult(feature, False, oserror_detail(exc))
    except Exception as exc:  # the probe itself broke: report it, never raise
        return ProbeResult(feature, False, f"probe error: {type(exc).__name__}: {exc}")


def probe_all(before: Callable[[str], None] | None = None) -> dict[str, ProbeResult]:
    """Every feature's result, in FEATURES order; `before(feature)` is called before each
    probe (the agent reports progress with it)."""
    out: dict[str, ProbeResult] = {}
    for feature in FEATURES:
        if before is not None:
            before(feature)
        out[feature] = probe(feature)
    return out


def main() -> None:
    """`python -m harness.guest.probes`: print the table (run it in the guest)."""
    for result in probe_all().values():
        mark = "yes" if result.supported else "NO "
        print(f"{result.feature:18} {mark}  {result.detail}")


if __name__ == "__main__":
    main()


__all__ = ["FEATURES", "ProbeResult", "probe", "probe_all"]
