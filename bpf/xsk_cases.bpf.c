// SPDX-License-Identifier: GPL-2.0
/*
 * XDP programs of the AF_XDP suite (cases/test_af_xdp.py) beyond bpf/xsk_redirect.bpf.c,
 * after the ideas of the kernel selftests' progs/xsk_xdp_progs.c (written anew here).
 *
 * Test frames are IPv4 UDP (no IP options) to a port in [cfg[0], cfg[0] + cfg[1]);
 * everything else goes to the stack uncounted (XDP_PASS), so background traffic neither
 * reaches a socket nor changes a count. cfg[1] == 0 counts as 1.
 *
 *   xsk_frags      (xdp.frags) every test frame to the socket of its rx queue; loadable
 *                  on devices whose MTU needs multi-buffer XDP (BPF_F_XDP_HAS_FRAGS)
 *   xsk_meta       every test frame to the socket of its rx queue, with an 8-byte
 *                  metadata area in front of it (bpf_xdp_adjust_meta) holding the
 *                  frame's 0-based number on that queue (a u64 in host order)
 *   xsk_by_port    test frame to port cfg[0] + k goes to XSKMAP key k: several sockets
 *                  of one queue (sharing a UMEM) each get their own frames
 *
 * Counters (u64 arrays, read with Map.lookup_int), as in xsk_redirect.bpf.c:
 *   seen[queue]       test frames the program saw on each rx queue
 *   verdicts[action]  what it returned for them, by enum xdp_action
 *   meta_failed[0]    bpf_xdp_adjust_meta refusals (xsk_meta passes such frames)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

#include "xsk_common.h"

char LICENSE[] SEC("license") = "GPL";

/* cfg[0]: first UDP destination port (host order); cfg[1]: how many ports */
ARRAY_MAP(cfg, 2, __u32);

ARRAY_MAP(meta_failed, 1, __u64);

static __always_inline __u32 cfg_get(__u32 idx)
{
	__u32 *value = bpf_map_lookup_elem(&cfg, &idx);

	return value ? *value : 0;
}

/* The index of the test port the frame goes to (0 .. ports-1), or -1. */
static __always_inline int test_port_index(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 base = cfg_get(0), ports = cfg_get(1), dport;

	if (!ports)
		ports = 1;
	if ((void *)(udp + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return -1;
	dport = bpf_ntohs(udp->dest);
	if (dport < base || dport >= base + ports)
		return -1;
	return dport - base;
}

SEC("xdp.frags")
int xsk_frags(struct xdp_md *ctx)
{
	if (test_port_index(ctx) < 0)
		return XDP_PASS;
	count_seen(ctx);
	return verdict(bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS));
}

SEC("xdp")
int xsk_meta(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 nr, *failed, *meta;
	void *data;

	if (test_port_index(ctx) < 0)
		return XDP_PASS;
	nr = count_seen(ctx);
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u64))) {
		failed = bpf_map_lookup_elem(&meta_failed, &zero);
		if (failed)
			__sync_fetch_and_add(failed, 1);
		return verdict(XDP_PASS);
	}
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(meta + 1) > data)
		return verdict(XDP_PASS);
	*meta = nr;
	return verdict(bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS));
}

SEC("xdp")
int xsk_by_port(struct xdp_md *ctx)
{
	int idx = test_port_index(ctx);

	if (idx < 0)
		return XDP_PASS;
	count_seen(ctx);
	return verdict(bpf_redirect_map(&xsks, (__u32)idx, XDP_PASS));
}
