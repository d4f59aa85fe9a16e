// SPDX-License-Identifier: GPL-2.0
/*
 * The VM-bypass steering program (harness/guest/xdp/steer.py, cases/test_af_xdp_bypass.py,
 * the afxdp benchmark): on the NIC, one flow is redirected into the XSK of the frame's rx
 * queue (an AF_XDP backend that forwards it to a VM), every other frame goes to the
 * NIC's own stack (XDP_PASS).
 *
 * What is steered (`conf`, one struct bypass_conf):
 *   by MAC  (tuple == 0): frames whose destination MAC is the VM's, and ARP frames asking
 *           for / answering about the VM's IPv4 address (ARP target == vm_ip), so the VM
 *           resolves and is resolved like a host on the wire;
 *   by flow (tuple == 1): IPv4 frames of one 5-tuple (proto, saddr, daddr, sport, dport;
 *           TCP or UDP) plus the same ARP frames.
 * Addresses and ports are in network byte order.
 *
 * Every frame is counted (`counts`, u64 array, index below) with its bytes: so
 * SEEN == STEERED + PASSED + NO_SOCKET always holds.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"
#include "xskmap.h"

#define ETH_P_ARP 0x0806

char LICENSE[] SEC("license") = "GPL";

enum {
	C_SEEN,		/* every frame */
	C_STEERED,	/* redirected to an XSK (the map had a socket for the queue) */
	C_PASSED,	/* not the steered flow: to the stack */
	C_NO_SOCKET,	/* the steered flow, but no XSK on that queue: to the stack */
	C_SEEN_BYTES,
	C_STEERED_BYTES,
	C_PASSED_BYTES,
	C_ARP_STEERED,	/* of C_STEERED: ARP frames */
	NR_COUNTS,
};

struct bypass_conf {
	__u8 vm_mac[6];
	__u8 tuple;
	__u8 proto;
	__u32 vm_ip;
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
};

struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 oper;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

ARRAY_MAP(conf, 1, struct bypass_conf);

ARRAY_MAP(counts, NR_COUNTS, __u64);

static __always_inline void count(__u32 key, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counts, &key);

	if (value)
		__sync_fetch_and_add(value, n);
}

static __always_inline bool mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] &&
	       a[4] == b[4] && a[5] == b[5];
}

/* An ARP frame about the VM's address (request for it, or its own reply/announcement). */
static __always_inline bool arp_for_vm(struct ethhdr *eth, void *data_end,
				       const struct bypass_conf *c)
{
	struct arp_ipv4 *arp = (void *)(eth + 1);
	__u32 tpa;

	if (!c->vm_ip || (void *)(arp + 1) > data_end)
		return false;
	if (arp->ptype != bpf_htons(ETH_P_IP) || arp->plen != 4 || arp->hlen != 6)
		return false;
	__builtin_memcpy(&tpa, arp->tpa, 4);
	return tpa == c->vm_ip;
}

static __always_inline bool tuple_match(struct ethhdr *eth, void *data_end,
					const struct bypass_conf *c)
{
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *l4;

	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return false;
	if (ip->protocol != c->proto || ip->saddr != c->saddr || ip->daddr != c->daddr)
		return false;
	if (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP)
		return false;
	/* the ports are the first 4 bytes of both TCP and UDP headers */
	l4 = (void *)(ip + 1);
	if ((void *)l4 + 4 > data_end)
		return false;
	return l4->source == c->sport && l4->dest == c->dport;
}

static __always_inline bool steered(struct xdp_md *ctx, const struct bypass_conf *c,
				    bool *is_arp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	*is_arp = false;
	if ((void *)(eth + 1) > data_end)
		return false;
	if (eth->h_proto == bpf_htons(ETH_P_ARP) && arp_for_vm(eth, data_end, c)) {
		*is_arp = true;
		return true;
	}
	if (!c->tuple)
		return mac_eq(eth->h_dest, c->vm_mac);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return false;
	return tuple_match(eth, data_end, c);
}

SEC("xdp")
int bypass_steer(struct xdp_md *ctx)
{
	__u64 len = ctx->data_end - ctx->data;
	struct bypass_conf *c;
	__u32 zero = 0;
	bool is_arp;
	int action;

	count(C_SEEN, 1);
	count(C_SEEN_BYTES, len);
	c = bpf_map_lookup_elem(&conf, &zero);
	if (!c || !steered(ctx, c, &is_arp)) {
		count(C_PASSED, 1);
		count(C_PASSED_BYTES, len);
		return XDP_PASS;
	}
	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (action != XDP_REDIRECT) {
		count(C_NO_SOCKET, 1);
		return action;
	}
	count(C_STEERED, 1);
	count(C_STEERED_BYTES, len);
	if (is_arp)
		count(C_ARP_STEERED, 1);
	return action;
}
