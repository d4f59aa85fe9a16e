// SPDX-License-Identifier: GPL-2.0
/* Sockmap/sockhash redirect matrix (cases/test_sockmap.py), after the kernel selftest
 * prog_tests/sockmap_redir.c: the verdict program is attached to the "in" map (nop_map or
 * nop_hash, which holds the socket whose traffic is judged) and redirects to key 0 of the
 * "out" map (sock_map or sock_hash), with the flags user space put in `redir_cfg`.
 *
 * redir_stats[SK_DROP] / stats[SK_PASS] count the verdicts the redirect helper returned,
 * redir_stats[2] the bytes the program saw (msg->size / skb->len).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

struct sockmap1 {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct sockhash1 {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
};

struct sockmap1 nop_map SEC(".maps");
struct sockmap1 sock_map SEC(".maps");
struct sockhash1 nop_hash SEC(".maps");
struct sockhash1 sock_hash SEC(".maps");

struct redir_config {
	__u32 map_type;	/* BPF_MAP_TYPE_SOCKMAP or BPF_MAP_TYPE_SOCKHASH */
	__u32 flags;	/* 0 (egress) or BPF_F_INGRESS */
};

ARRAY_MAP(redir_cfg, 1, struct redir_config);

ARRAY_MAP(redir_stats, 3, __u64);

static __always_inline void count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&redir_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

SEC("sk_msg")
int redir_msg(struct sk_msg_md *msg)
{
	__u32 zero = 0;
	struct redir_config *cfg = bpf_map_lookup_elem(&redir_cfg, &zero);
	long verdict = SK_DROP;

	if (!cfg)
		return SK_DROP;
	if (cfg->map_type == BPF_MAP_TYPE_SOCKMAP)
		verdict = bpf_msg_redirect_map(msg, &sock_map, 0, cfg->flags);
	else if (cfg->map_type == BPF_MAP_TYPE_SOCKHASH)
		verdict = bpf_msg_redirect_hash(msg, &sock_hash, &zero, cfg->flags);
	count(verdict == SK_PASS ? SK_PASS : SK_DROP, 1);
	count(2, msg->size);
	return verdict;
}

SEC("sk_skb")
int redir_skb(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct redir_config *cfg = bpf_map_lookup_elem(&redir_cfg, &zero);
	long verdict = SK_DROP;

	if (!cfg)
		return SK_DROP;
	if (cfg->map_type == BPF_MAP_TYPE_SOCKMAP)
		verdict = bpf_sk_redirect_map(skb, &sock_map, 0, cfg->flags);
	else if (cfg->map_type == BPF_MAP_TYPE_SOCKHASH)
		verdict = bpf_sk_redirect_hash(skb, &sock_hash, &zero, cfg->flags);
	count(verdict == SK_PASS ? SK_PASS : SK_DROP, 1);
	count(2, skb->len);
	return verdict;
}
