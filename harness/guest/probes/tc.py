"""TCX (6.6): a tcx link on lo, seen by BPF_PROG_QUERY."""

from __future__ import annotations

from .. import bpf as lb
from .base import Unsupported, bpf_object, kernel_says


def probe_tcx() -> str:
    with bpf_object("probe_tc") as obj:
        prog = obj.program("probe_tc")
        with kernel_says("bpf_link_create(BPF_TCX_INGRESS, lo)"):
            link = lb.link_create(prog, 1, lb.BPF_TCX_INGRESS)
        with link:
            info = link.info()
            q = lb.prog_query(1, lb.BPF_TCX_INGRESS)
            if q.link_ids != [info.id]:
                raise Unsupported(f"TCX link {info.id} created but query shows {q}")
        return (f"bpf_link_create(BPF_TCX_INGRESS) on lo: link id {info.id}, "
                f"query revision {q.revision}")
