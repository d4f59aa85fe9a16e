"""BPF UAPI constants (include/uapi/linux/bpf.h): program, map, attach and link types,
flags and return codes. tests/unit/test_bpfobj.py checks them against <linux/bpf.h> and
vmlinux.h."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class ProgType(IntEnum):
    """enum bpf_prog_type"""

    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32


class MapType(IntEnum):
    """enum bpf_map_type"""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


PERCPU_MAP_TYPES = frozenset(
    {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
     MapType.PERCPU_CGROUP_STORAGE}
)


class AttachType(IntEnum):
    """enum bpf_attach_type"""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56


class LinkType(IntEnum):
    """enum bpf_link_type"""

    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class AttachFlags(IntFlag):
    """BPF_F_* flags of BPF_PROG_ATTACH / BPF_PROG_DETACH / BPF_LINK_CREATE (mprog)."""

    ALLOW_OVERRIDE = 1 << 0
    ALLOW_MULTI = 1 << 1
    REPLACE = 1 << 2
    BEFORE = 1 << 3
    AFTER = 1 << 4
    ID = 1 << 5
    LINK = 1 << 13


class TcxAction(IntEnum):
    """enum tcx_action_base: return codes of TCX (and netkit) programs."""

    NEXT = -1
    PASS = 0
    DROP = 2
    REDIRECT = 7


#: enum netkit_action (include/uapi/linux/if_link.h) has tcx_action_base's values
NetkitAction = TcxAction


class TcAttachPoint(IntFlag):
    """enum bpf_tc_attach_point (libbpf's classic tc API)"""

    INGRESS = 1 << 0
    EGRESS = 1 << 1
    CUSTOM = 1 << 2


class UpdateFlags(IntEnum):
    """BPF_MAP_UPDATE_ELEM flags"""

    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


# map_flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10
#: BPF arena map_flags (6.9): a user-space touch of a page no program allocated raises
#: SIGSEGV instead of allocating it; the verifier turns cast_user into a 32-bit move
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18

# short aliases in the kernel's spelling, for code that reads like the selftests
BPF_TCX_INGRESS = AttachType.TCX_INGRESS
BPF_TCX_EGRESS = AttachType.TCX_EGRESS
BPF_NETKIT_PRIMARY = AttachType.NETKIT_PRIMARY
BPF_NETKIT_PEER = AttachType.NETKIT_PEER
BPF_TRACE_ITER = AttachType.TRACE_ITER
BPF_SK_MSG_VERDICT = AttachType.SK_MSG_VERDICT
BPF_SK_SKB_STREAM_PARSER = AttachType.SK_SKB_STREAM_PARSER
BPF_SK_SKB_STREAM_VERDICT = AttachType.SK_SKB_STREAM_VERDICT
BPF_SK_SKB_VERDICT = AttachType.SK_SKB_VERDICT
BPF_F_REPLACE = AttachFlags.REPLACE
BPF_F_BEFORE = AttachFlags.BEFORE
BPF_F_AFTER = AttachFlags.AFTER
BPF_F_ID = AttachFlags.ID
BPF_F_LINK = AttachFlags.LINK
TCX_NEXT = TcxAction.NEXT
TCX_PASS = TcxAction.PASS
TCX_DROP = TcxAction.DROP
TCX_REDIRECT = TcxAction.REDIRECT

#: most programs one mprog attach point (tcx, netkit) holds: bpf_mprog_max()
MPROG_MAX = 64 - 1
