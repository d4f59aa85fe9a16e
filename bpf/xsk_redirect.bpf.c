// SPDX-License-Identifier: GPL-2.0
/*
 * XDP programs for AF_XDP (harness/guest/xdp), modelled on the kernel selftests'
 * progs/xsk_xdp_progs.c. Each redirects the test's frames to the XSK socket registered in
 * `xsks` at the frame's rx queue (bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS):
 * a queue without a socket passes the frame to the stack).
 *
 * The test's frames are IPv4 UDP to the port in cfg[0]; cfg[0] == 0 takes every frame.
 * Other frames (ARP, IPv6 neighbour discovery, ...) always go to the stack uncounted, so
 * background traffic can neither reach the socket nor change a count.
 *
 *   xsk_redirect              every test frame to the socket
 *   xsk_pass_every_other      the 1st, 3rd, ... test frame of a queue to the socket, the
 *                             2nd, 4th, ... to the stack (XDP_PASS)
 *   xsk_drop_every_other      the same, dropping the 2nd, 4th, ... (XDP_DROP)
 *
 * Counters (u64 arrays, read with Map.lookup_int):
 *   seen[queue]       test frames the program saw on each rx queue
 *   verdicts[action]  what it returned for them, by enum xdp_action: XDP_REDIRECT (4)
 *                     when the queue had a socket in `xsks` (the socket may still drop
 *                     the frame: see its XDP_STATISTICS), XDP_PASS when it had none
 *
 * "Every other" follows seen[queue] with a plain read then an atomic add: exact while one
 * CPU at a time runs a queue (a veth queue fed by one sender), like the selftest's idx++.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

#include "xsk_common.h"

char LICENSE[] SEC("license") = "GPL";

/* cfg[0]: UDP destination port (host order) of the test's frames; 0 = every frame */
ARRAY_MAP(cfg, 1, __u32);

/* An IPv4 UDP frame (no IP options) to the port in cfg[0], or any frame if that is 0. */
static __always_inline bool is_test_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 zero = 0, *port = bpf_map_lookup_elem(&cfg, &zero);

	if (!port)
		return false;
	if (!*port)
		return true;
	if ((void *)(udp + 1) > data_end)
		return false;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return false;
	return udp->dest == bpf_htons((__u16)*port);
}

/* Redirect test frames to the socket, but send odd-numbered ones to `other` when
 * `every_other` is set. */
static __always_inline int handle(struct xdp_md *ctx, bool every_other, int other)
{
	__u64 nr;

	if (!is_test_frame(ctx))
		return XDP_PASS;
	nr = count_seen(ctx);
	if (every_other && (nr & 1))
		return verdict(other);
	return verdict(bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS));
}

SEC("xdp")
int xsk_redirect(struct xdp_md *ctx)
{
	return handle(ctx, false, XDP_PASS);
}

SEC("xdp")
int xsk_pass_every_other(struct xdp_md *ctx)
{
	return handle(ctx, true, XDP_PASS);
}

SEC("xdp")
int xsk_drop_every_other(struct xdp_md *ctx)
{
	return handle(ctx, true, XDP_DROP);
}
