// SPDX-License-Identifier: GPL-2.0
/*
 * Exactly-once socket iteration (probes sock_iter_batch_udp/_tcp,
 * cases/test_sock_iter_batch.py): batch_tcp and batch_udp write the 8-byte cookie of each
 * socket they visit whose local or remote port is cfg[CFG_PORT] (and, for TCP, whose
 * state bit is set in cfg[CFG_STATES], 0: any state) with bpf_seq_write, so a read() of 8
 * bytes returns exactly one socket and user space can stop the iterator between any two.
 * cfg[CFG_FAMILY] (0: any) restricts the address family; cfg[CFG_PORT_MASK] (0: all bits)
 * compares only those bits of the local port, to take in every port of one hash bucket of
 * a small per-namespace table; cfg[CFG_PORT2] (0: none) is a second local port to match.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

#define CFG_PORT 0
#define CFG_STATES 1
#define CFG_FAMILY 2
#define CFG_PORT_MASK 3
#define CFG_PORT2 4

ARRAY_MAP(cfg, 5, __u32);

static __always_inline __u32 cfg_get(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&cfg, &idx);

	return v ? *v : 0;
}

static __always_inline bool wanted(struct sock_common *skc)
{
	__u32 port = cfg_get(CFG_PORT), states = cfg_get(CFG_STATES);
	__u32 family = cfg_get(CFG_FAMILY), mask = cfg_get(CFG_PORT_MASK) ?: 0xffff;
	__u32 port2 = cfg_get(CFG_PORT2);

	if (family && skc->skc_family != family)
		return false;
	if (states && !(states & (1U << (skc->skc_state & 31))))
		return false;
	if (port2 && skc->skc_num == port2)
		return true;
	return (skc->skc_num & mask) == (port & mask) || bpf_ntohs(skc->skc_dport) == port;
}

SEC("iter/tcp")
int batch_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	__u64 cookie;

	if (!skc || !wanted(skc))
		return 0;
	cookie = bpf_get_socket_cookie(skc);
	bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}

SEC("iter/udp")
int batch_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	__u64 cookie;

	if (!udp || !wanted(&udp->inet.sk.__sk_common))
		return 0;
	cookie = bpf_get_socket_cookie(udp);
	bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}
