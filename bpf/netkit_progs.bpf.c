// SPDX-License-Identifier: GPL-2.0
/*
 * netkit programs for cases/test_netkit.py (modelled on the kernel selftests'
 * prog_tests/tc_netkit.c + progs/test_tc_link.c).
 *
 * Only "test packets" are acted on: IPv4 UDP to the destination port in cfg[CFG_PORT]
 * (everything else gets NETKIT_NEXT / TCX_NEXT, so ARP, TCP and stray traffic keep flowing
 * and cannot disturb a count). For a test packet, program nkN (N = 1..6):
 *
 *   - counts it in hits[N] and appends N to `trace` (the order the kernel ran the chain),
 *   - records what it saw in obs[N]: skb->mark, skb->priority, skb->ifindex (the device
 *     the skb already belongs to), skb->pkt_type, and dev->needed_headroom/tailroom
 *     (CO-RE read of skb->dev, as the selftest's tc8 does),
 *   - returns action[N] (an enum netkit_action; zero-initialised = NETKIT_PASS), where
 *     NETKIT_REDIRECT means bpf_redirect(cfg[CFG_IFINDEX], cfg[CFG_FLAGS]).
 *
 * nk_to_peer is for a host-side device's tcx ingress: bpf_redirect_peer(cfg[CFG_IFINDEX])
 * of test packets (into the netkit peer when given the primary's ifindex), counted as 7.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "array_map.h"

#define NR_SLOTS 8
#define TRACE_LEN 32

#define CFG_PORT 0
#define CFG_IFINDEX 1
#define CFG_FLAGS 2
#define NR_CFG 4

char LICENSE[] SEC("license") = "GPL";

struct obs {
	__u32 count;
	__u32 mark;
	__u32 priority;
	__u32 ifindex;
	__u32 pkt_type;
	__u16 headroom;
	__u16 tailroom;
};

ARRAY_MAP(cfg, NR_CFG, __u32);

ARRAY_MAP(action, NR_SLOTS, __s32);

#include "run_trace.h"

ARRAY_MAP(obs, NR_SLOTS, struct obs);

static __always_inline __u32 cfg_get(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&cfg, &idx);

	return v ? *v : 0;
}

static __always_inline bool is_test_packet(struct __sk_buff *skb)
{
	return is_udp4_to(skb, cfg_get(CFG_PORT));
}

static __always_inline void record(struct __sk_buff *skb, __u32 nr)
{
	struct net_device *dev = BPF_CORE_READ((struct sk_buff *)skb, dev);
	struct obs *o;

	count_run(nr);
	o = bpf_map_lookup_elem(&obs, &nr);
	if (o) {
		o->count++;
		o->mark = skb->mark;
		o->priority = skb->priority;
		o->ifindex = skb->ifindex;
		o->pkt_type = skb->pkt_type;
		o->headroom = BPF_CORE_READ(dev, needed_headroom);
		o->tailroom = BPF_CORE_READ(dev, needed_tailroom);
	}
}

static __always_inline int run(struct __sk_buff *skb, __u32 nr)
{
	__s32 *act;

	if (!is_test_packet(skb))
		return NETKIT_NEXT;
	record(skb, nr);
	act = bpf_map_lookup_elem(&action, &nr);
	if (!act)
		return NETKIT_DROP;
	if (*act == NETKIT_REDIRECT)
		return bpf_redirect(cfg_get(CFG_IFINDEX), cfg_get(CFG_FLAGS));
	return *act;
}

SEC("tc")
int nk1(struct __sk_buff *skb)
{
	return run(skb, 1);
}

SEC("tc")
int nk2(struct __sk_buff *skb)
{
	return run(skb, 2);
}

SEC("tc")
int nk3(struct __sk_buff *skb)
{
	return run(skb, 3);
}

SEC("tc")
int nk4(struct __sk_buff *skb)
{
	return run(skb, 4);
}

SEC("tc")
int nk5(struct __sk_buff *skb)
{
	return run(skb, 5);
}

SEC("tc")
int nk6(struct __sk_buff *skb)
{
	return run(skb, 6);
}

SEC("tc")
int nk_to_peer(struct __sk_buff *skb)
{
	if (!is_test_packet(skb))
		return TCX_NEXT;
	record(skb, 7);
	return bpf_redirect_peer(cfg_get(CFG_IFINDEX), 0);
}
