// SPDX-License-Identifier: GPL-2.0
/* The project's own BPF object: count UDP packets to the port in cfg[0] at tcx ingress.
 * kmatrix compiles it as its own (clang-19, vmlinux.h; kmatrix's bpf/ headers are on the
 * include path too). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

ARRAY_MAP(cfg, 1, __u32);

ARRAY_MAP(seen, 1, __u64);

#define ETH_P_IP 0x0800
#define ETH_HLEN 14

static __always_inline bool is_udp4_to(struct __sk_buff *skb, __u32 port)
{
	struct iphdr ip;
	struct udphdr udp;

	if (!port || skb->protocol != bpf_htons(ETH_P_IP))
		return false;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) || ip.protocol != IPPROTO_UDP ||
	    ip.ihl != 5)
		return false;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &udp, sizeof(udp)))
		return false;
	return udp.dest == bpf_htons((__u16)port);
}

SEC("tcx/ingress")
int count_udp(struct __sk_buff *skb)
{
	__u32 zero = 0, *port = bpf_map_lookup_elem(&cfg, &zero);
	__u64 *n = bpf_map_lookup_elem(&seen, &zero);

	if (port && n && is_udp4_to(skb, *port))
		__sync_fetch_and_add(n, 1);
	return TCX_NEXT;
}
