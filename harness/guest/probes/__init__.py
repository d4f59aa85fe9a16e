"""Feature probes: does the booted kernel do X? Answered by trying X, never by version.

Each probe does the real thing the feature's cases rely on (the same attach type, real
bytes through a verdict, a socket really destroyed), in a private network namespace (a
helper thread that unshares its netns, so nothing shows up on the guest's devices), and
reports a `ProbeResult`:

- supported: what worked, e.g. ``bpf_link_create(BPF_TCX_INGRESS) on lo: link id 7``
- unsupported: the kernel's answer, e.g.
  ``bpf_link_create(BPF_TCX_INGRESS, lo): EINVAL (Invalid argument)``
- error: the probe could not run (a missing object, a harness bug), with the traceback;
  the gated cases are then ERRORs, never skips.

Results are cached per process. One module per feature family: tc, netkit, sockmap, xdp,
sockiter, arena, drops.
"""

from __future__ import annotations

import functools
import importlib
import traceback
from collections.abc import Callable

from ..net.netns import in_new_netns
from .base import ERROR, SUPPORTED, UNSUPPORTED, ProbeResult, Unsupported

#: feature -> (module of this package, its probe function, the function's arguments).
#: Modules are imported when one of their probes first runs: a boot imports only the
#: probe families its cases need (each family pulls in its part of the guest library).
_PROBES: dict[str, tuple[str, str, tuple[object, ...]]] = {
    "tcx": ("tc", "probe_tcx", ()),
    "netkit": ("netkit", "probe_netkit", ()),
    "arena": ("arena", "probe_arena", ()),
    "arena_atomics": ("arena", "probe_arena_atomics", ()),
    "arena_spin_lock": ("arena", "probe_arena_spin_lock", ()),
    "arena_nonsleepable_kfuncs": ("arena", "probe_arena_nonsleepable_kfuncs", ()),
    "sockmap": ("sockmap", "probe_sockmap_type", ("SOCKMAP",)),
    "sockhash": ("sockmap", "probe_sockmap_type", ("SOCKHASH",)),
    "sk_msg": ("sockmap", "probe_sk_prog", ("probe_sk_msg", "SK_MSG_VERDICT")),
    "sk_skb": ("sockmap", "probe_sk_prog", ("probe_sk_skb_verdict", "SK_SKB_VERDICT")),
    "af_xdp": ("xdp", "probe_af_xdp", ()),
    "af_xdp_zc": ("xdp", "probe_af_xdp_zc", ()),
    "xdp_native_virtio": ("xdp", "probe_xdp_native_virtio", ()),
    "netkit_single": ("xdp", "probe_netkit_single", ()),
    "queue_lease": ("xdp", "probe_queue_lease", ()),
    "bpf_iter_tcp": ("sockiter", "probe_iter", ("probe_iter_tcp", "tcp")),
    "bpf_iter_udp": ("sockiter", "probe_iter", ("probe_iter_udp", "udp")),
    "bpf_iter_unix": ("sockiter", "probe_iter", ("probe_iter_unix", "unix")),
    "bpf_sock_destroy": ("sockiter", "probe_sock_destroy", ()),
    "sock_iter_batch_udp": ("sockiter", "probe_sock_iter_batch", ("udp",)),
    "sock_iter_batch_tcp": ("sockiter", "probe_sock_iter_batch", ("tcp",)),
    "all_netns_sock_iter": ("sockiter", "probe_all_netns_sock_iter", ()),
    "kfree_skb_reason": ("drops", "probe_kfree_skb_reason", ()),
    "drop_reason_no_socket": ("drops", "probe_drop_reason_no_socket", ()),
}


#: features only a VM with NICs can try (@pytest.mark.nics): a VM without them leaves
#: them out of its table rather than calling the driver's feature missing
NEEDS_NICS = frozenset({"xdp_native_virtio", "af_xdp_zc"})


def probe_function(feature: str) -> Callable[[], str]:
    """The probe of `feature`, its module imported now (KeyError: unknown feature)."""
    module, name, args = _PROBES[feature]
    fn = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return functools.partial(fn, *args) if args else fn


FEATURES: tuple[str, ...] = tuple(_PROBES)


def run_probe(feature: str, fn: Callable[[], str]) -> ProbeResult:
    """Run one probe function in a private network namespace and classify its outcome."""
    try:
        return ProbeResult(feature, SUPPORTED, in_new_netns(fn))
    except Unsupported as exc:
        return ProbeResult(feature, UNSUPPORTED, str(exc))
    except Exception as exc:  # the probe itself broke: an error, never "unsupported"
        text = "".join(traceback.format_exception(exc)).rstrip()
        return ProbeResult(feature, ERROR, f"probe could not run: {exc!r}\n{text}")


#: results so far in this process (a forked case process inherits them)
_RESULTS: dict[str, ProbeResult] = {}


def probe(feature: str) -> ProbeResult:
    """Try `feature` in the running kernel (once per process). Unknown names raise
    ValueError (a typo in a marker must not turn into a silent skip)."""
    if feature in _RESULTS:
        return _RESULTS[feature]
    if feature not in _PROBES:
        raise ValueError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}")
    try:
        fn = probe_function(feature)
    except Exception as exc:  # its module does not import: the probe could not run
        text = "".join(traceback.format_exception(exc)).rstrip()
        result = ProbeResult(feature, ERROR, f"probe could not run: {exc!r}\n{text}")
    else:
        result = run_probe(feature, fn)
    _RESULTS[feature] = result
    return result


def remember(result: ProbeResult) -> None:
    """Take a result the same kernel gave in an earlier boot (the host keeps them)."""
    _RESULTS[result.feature] = result


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
        mark = {SUPPORTED: "yes", UNSUPPORTED: "NO ", ERROR: "ERR"}[result.status]
        print(f"{result.feature:18} {mark}  {result.detail.splitlines()[0]}")


if __name__ == "__main__":
    main()


__all__ = ["ERROR", "FEATURES", "NEEDS_NICS", "SUPPORTED", "UNSUPPORTED", "ProbeResult", "probe",
           "probe_all", "remember", "run_probe"]
