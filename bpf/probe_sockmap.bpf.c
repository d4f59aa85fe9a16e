// SPDX-License-Identifier: GPL-2.0
/* Feature probes sk_msg / sk_skb: verdict and parser programs attached to a sockmap. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} sock_map SEC(".maps");

SEC("sk_msg")
int probe_sk_msg(struct sk_msg_md *msg)
{
	return SK_PASS;
}

/* attached with BPF_SK_SKB_VERDICT (5.13, no stream parser), as the suite does */
SEC("sk_skb/verdict")
int probe_sk_skb_verdict(struct __sk_buff *skb)
{
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int probe_sk_skb_stream_verdict(struct __sk_buff *skb)
{
	return SK_PASS;
}

SEC("sk_skb/stream_parser")
int probe_sk_skb_parser(struct __sk_buff *skb)
{
	return skb->len;
}
