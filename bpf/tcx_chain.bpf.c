// SPDX-License-Identifier: GPL-2.0
/*
 * TCX chain programs for cases/test_tcx.py (modelled on the kernel selftests'
 * progs/test_tc_link.c). Every program counts the UDP packets addressed to the port
 * in cfg[0] (others are ignored, so background traffic cannot disturb a count) in
 * hits[<program number>], and appends its number to `trace` so a test can see the order
 * the kernel ran the chain in.
 *
 *   tc1..tc4  return TCX_NEXT   (continue with the next program, then classic tc)
 *   tc5, tc6  return TCX_PASS   (end of the chain: classic tc is not run)
 *   tc_drop   returns TCX_DROP  (packet dropped)
 *   cls       classic cls_bpf direct-action filter (TC_ACT_OK), number 7
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

#define NR_SLOTS 16
#define TRACE_LEN 32
#define TC_ACT_OK 0

char LICENSE[] SEC("license") = "GPL";

/* cfg[0]: UDP destination port (host order) the programs react to; 0 = none */
ARRAY_MAP(cfg, 1, __u32);

#include "run_trace.h"

static __always_inline bool is_test_packet(struct __sk_buff *skb)
{
	__u32 zero = 0, *port = bpf_map_lookup_elem(&cfg, &zero);

	return port && is_udp4_to(skb, *port);
}

static __always_inline void record(struct __sk_buff *skb, __u32 nr)
{
	if (is_test_packet(skb))
		count_run(nr);
}

SEC("tc")
int tc1(struct __sk_buff *skb)
{
	record(skb, 1);
	return TCX_NEXT;
}

SEC("tc")
int tc2(struct __sk_buff *skb)
{
	record(skb, 2);
	return TCX_NEXT;
}

SEC("tc")
int tc3(struct __sk_buff *skb)
{
	record(skb, 3);
	return TCX_NEXT;
}

SEC("tc")
int tc4(struct __sk_buff *skb)
{
	record(skb, 4);
	return TCX_NEXT;
}

SEC("tc")
int tc5(struct __sk_buff *skb)
{
	record(skb, 5);
	return TCX_PASS;
}

SEC("tc")
int tc6(struct __sk_buff *skb)
{
	record(skb, 6);
	return TCX_PASS;
}

SEC("tc")
int cls(struct __sk_buff *skb)
{
	record(skb, 7);
	return TC_ACT_OK;
}

SEC("tc")
int tc_drop(struct __sk_buff *skb)
{
	record(skb, 8);
	return is_test_packet(skb) ? TCX_DROP : TCX_PASS;
}

/* not a tc program at all: link updates to it must be refused */
SEC("xdp")
int not_tc(struct xdp_md *ctx)
{
	return XDP_PASS;
}
