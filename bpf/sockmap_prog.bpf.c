// SPDX-License-Identifier: GPL-2.0
/* Sockmap program semantics (cases/test_sockmap_semantics.py): a stream parser with a
 * configurable record length, stream/skb verdicts and an sk_msg verdict with configurable
 * action, apply_bytes and cork_bytes. Every invocation is counted and its length logged.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

#define LOG_LEN 256
#define ACT_PASS 0
#define ACT_DROP 1
#define ACT_REDIRECT_INGRESS 2	/* to sock_map key 1, BPF_F_INGRESS */
#define ACT_REDIRECT_EGRESS 3	/* to sock_map key 1 */

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} sock_map SEC(".maps");

struct hkey {
	__u32 addr;
	__u16 port;
	__u16 family;
	__u32 tag;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, struct hkey);
	__type(value, __u64);
} sock_hash SEC(".maps");

struct prog_config {
	__u32 parse_len;	/* 0: the parser returns skb->len */
	__u32 action;		/* ACT_* for every verdict program */
	__u32 apply_bytes;	/* sk_msg: bpf_msg_apply_bytes() when nonzero */
	__u32 cork_bytes;	/* sk_msg: bpf_msg_cork_bytes() when nonzero */
};

ARRAY_MAP(prog_cfg, 1, struct prog_config);

/* 0 parser calls, 1 skb verdict calls, 2 msg verdict calls, 3 next log slot */
ARRAY_MAP(prog_counts, 4, __u64);

/* lengths seen by the verdict programs, in order */
ARRAY_MAP(len_log, LOG_LEN, __u32);

static __always_inline struct prog_config *cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&prog_cfg, &zero);
}

static __always_inline void bump(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&prog_counts, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline void log_len(__u32 len)
{
	__u32 slot_idx = 3, k;
	__u64 *slot = bpf_map_lookup_elem(&prog_counts, &slot_idx);
	__u32 *v;

	if (!slot)
		return;
	k = __sync_fetch_and_add(slot, 1);
	if (k >= LOG_LEN)
		return;
	v = bpf_map_lookup_elem(&len_log, &k);
	if (v)
		*v = len;
}

SEC("sk_skb/stream_parser")
int prog_parser(struct __sk_buff *skb)
{
	struct prog_config *c = cfg();

	bump(0);
	if (c && c->parse_len)
		return c->parse_len;
	return skb->len;
}

static __always_inline int skb_verdict(struct __sk_buff *skb)
{
	struct prog_config *c = cfg();

	bump(1);
	log_len(skb->len);
	if (!c)
		return SK_DROP;
	switch (c->action) {
	case ACT_PASS:
		return SK_PASS;
	case ACT_REDIRECT_INGRESS:
		return bpf_sk_redirect_map(skb, &sock_map, 1, BPF_F_INGRESS);
	case ACT_REDIRECT_EGRESS:
		return bpf_sk_redirect_map(skb, &sock_map, 1, 0);
	default:
		return SK_DROP;
	}
}

SEC("sk_skb/stream_verdict")
int prog_stream_verdict(struct __sk_buff *skb)
{
	return skb_verdict(skb);
}

SEC("sk_skb/stream_verdict")
int prog_stream_verdict2(struct __sk_buff *skb)
{
	return skb_verdict(skb);
}

SEC("sk_skb/verdict")
int prog_skb_verdict(struct __sk_buff *skb)
{
	return skb_verdict(skb);
}

SEC("sk_msg")
int prog_msg(struct sk_msg_md *msg)
{
	struct prog_config *c = cfg();

	bump(2);
	log_len(msg->size);
	if (!c)
		return SK_DROP;
	if (c->apply_bytes)
		bpf_msg_apply_bytes(msg, c->apply_bytes);
	if (c->cork_bytes)
		bpf_msg_cork_bytes(msg, c->cork_bytes);
	switch (c->action) {
	case ACT_PASS:
		return SK_PASS;
	case ACT_REDIRECT_INGRESS:
		return bpf_msg_redirect_map(msg, &sock_map, 1, BPF_F_INGRESS);
	case ACT_REDIRECT_EGRESS:
		return bpf_msg_redirect_map(msg, &sock_map, 1, 0);
	default:
		return SK_DROP;
	}
}
