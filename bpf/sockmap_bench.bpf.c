// SPDX-License-Identifier: GPL-2.0
/* Sockmap redirect benchmark (benchmarks/sockmap_bench.py): every socket in bench_map is
 * redirected to the ingress of the socket user space named for its local port in peer_of
 * (sk_msg: the other end of the connection, bypassing TCP; sk_skb: itself, after TCP).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} bench_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);	/* local port, host order */
	__type(value, __u32);	/* bench_map index to redirect to */
} peer_of SEC(".maps");

SEC("sk_msg")
int bench_msg(struct sk_msg_md *msg)
{
	__u32 port = msg->local_port;
	__u32 *idx = bpf_map_lookup_elem(&peer_of, &port);

	if (!idx)
		return SK_PASS;
	return bpf_msg_redirect_map(msg, &bench_map, *idx, BPF_F_INGRESS);
}

SEC("sk_skb/verdict")
int bench_skb(struct __sk_buff *skb)
{
	__u32 port = skb->local_port;
	__u32 *idx = bpf_map_lookup_elem(&peer_of, &port);

	if (!idx)
		return SK_PASS;
	return bpf_sk_redirect_map(skb, &bench_map, *idx, BPF_F_INGRESS);
}
