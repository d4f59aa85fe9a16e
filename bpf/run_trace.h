/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Run counters of the chain programs (tcx_chain, netkit_progs): hits[n] counts the test
 * packets program n saw, trace[0] the records and trace[1..TRACE_LEN] the program numbers
 * in the order the kernel ran them. harness/guest/bpf/counters.py reads both.
 *
 * Define NR_SLOTS and TRACE_LEN before including; include after vmlinux.h, bpf_helpers.h
 * and bpf_endian.h.
 */
#ifndef KMX_RUN_TRACE_H
#define KMX_RUN_TRACE_H

#include "array_map.h"

#ifndef ETH_P_IP
#define ETH_P_IP 0x0800
#endif
#ifndef ETH_HLEN
#define ETH_HLEN 14
#endif

ARRAY_MAP(hits, NR_SLOTS, __u64);

ARRAY_MAP(trace, TRACE_LEN + 1, __u32);

/* An IPv4 UDP packet (no IP options) to `port`: the test's own traffic, so background
 * traffic cannot change a count. Port 0 matches nothing. */
static __always_inline bool is_udp4_to(struct __sk_buff *skb, __u32 port)
{
	struct iphdr ip;
	struct udphdr udp;

	if (!port || skb->protocol != bpf_htons(ETH_P_IP))
		return false;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return false;
	if (ip.protocol != IPPROTO_UDP || ip.ihl != 5)
		return false;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &udp, sizeof(udp)))
		return false;
	return udp.dest == bpf_htons((__u16)port);
}

/* Count one run of program `nr` and append it to the trace. */
static __always_inline void count_run(__u32 nr)
{
	__u32 zero = 0, slot;
	__u32 *len, *entry;
	__u64 *count;

	count = bpf_map_lookup_elem(&hits, &nr);
	if (count)
		__sync_fetch_and_add(count, 1);
	/* one test packet is in flight at a time: a plain read-modify-write is enough */
	len = bpf_map_lookup_elem(&trace, &zero);
	if (!len)
		return;
	slot = *len + 1;
	if (slot <= TRACE_LEN) {
		entry = bpf_map_lookup_elem(&trace, &slot);
		if (entry)
			*entry = nr;
	}
	*len = slot;
}

#endif /* KMX_RUN_TRACE_H */
