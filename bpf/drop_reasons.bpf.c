// SPDX-License-Identifier: GPL-2.0
/*
 * Packet drops by (network namespace, drop reason, code location), for the per-case
 * evidence (harness/guest/evidence/drops.py). Attached once per boot to skb:kfree_skb;
 * user space reads `drops` and deletes what it read between cases.
 *
 * Programs for the shapes of the tracepoint (the loader takes the first that loads):
 *   drop_reason         (skb, location, reason[, rx_sk])  5.17+: enum skb_drop_reason
 *   drop_location       (skb, location)                   older: reason = NO_REASON
 *   drop_location_bare  the same without naming locations (no bpf_snprintf: < 5.13)
 * A tp_btf program that reads an argument the kernel's tracepoint lacks fails to load, so
 * the 3-argument one is refused by a 2-argument kernel.
 *
 * Not counted: SKB_NOT_DROPPED_YET and SKB_CONSUMED (a consumed skb is not a drop; newer
 * kernels send those to skb:consume_skb anyway), and anything freed while the current
 * task's tgid is cfg[CFG_IGNORE_TGID] or cfg[CFG_IGNORE_TGID2] (the evidence collector's
 * own processes: the agent and its evidence server; 0: none).
 *
 * The namespace is the socket's (skb->sk) if any, else the device's (skb->dev): its
 * cookie (struct net.net_cookie, 5.14+, 0 where absent) and inode number (the inode of
 * /proc/PID/ns/net). Neither: 0/0.
 *
 * drop_reason and drop_location also name each new location once (bpf_snprintf "%pS",
 * 5.13+) into `syms`, so user space needs no /proc/kallsyms (it reads it for
 * drop_location_bare, or when `syms` is full).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

#define NO_REASON 0xffffffffu
#define SYM_LEN 64

enum {
	CFG_IGNORE_TGID = 0,
	/* drops not counted because `drops` was full */
	CFG_LOST = 1,
	CFG_IGNORE_TGID2 = 2,
	CFG_LEN = 3,
};

struct drop_key {
	__u64 netns_cookie;
	__u64 location;
	__u32 netns_inum;
	__u32 reason;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2048);
	__type(key, __u64);
	__type(value, char[SYM_LEN]);
} syms SEC(".maps");

ARRAY_MAP(cfg, CFG_LEN, __u64);

static __always_inline bool ignored_at(__u32 idx, __u64 current)
{
	__u64 *tgid = bpf_map_lookup_elem(&cfg, &idx);

	return tgid && *tgid && *tgid == current;
}

static __always_inline bool ignored(void)
{
	__u64 current = bpf_get_current_pid_tgid() >> 32;

	return ignored_at(CFG_IGNORE_TGID, current) || ignored_at(CFG_IGNORE_TGID2, current);
}

static __always_inline void netns_of(struct sk_buff *skb, struct drop_key *key)
{
	struct net *net = NULL;
	struct sock *sk = BPF_CORE_READ(skb, sk);
	struct net_device *dev;

	if (sk)
		net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	if (!net) {
		dev = BPF_CORE_READ(skb, dev);
		if (dev)
			net = BPF_CORE_READ(dev, nd_net.net);
	}
	if (!net)
		return;
	key->netns_inum = BPF_CORE_READ(net, ns.inum);
	if (bpf_core_field_exists(net->net_cookie))
		key->netns_cookie = BPF_CORE_READ(net, net_cookie);
}

static __always_inline void count(struct drop_key *key)
{
	__u64 one = 1, *n;
	__u32 idx;

	n = bpf_map_lookup_elem(&drops, key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (bpf_map_update_elem(&drops, key, &one, BPF_NOEXIST) == 0)
		return;
	n = bpf_map_lookup_elem(&drops, key); /* another CPU inserted it meanwhile */
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	idx = CFG_LOST;
	n = bpf_map_lookup_elem(&cfg, &idx);
	if (n)
		__sync_fetch_and_add(n, 1);
}

static const char sym_fmt[] = "%pS";

static __always_inline void name_location(__u64 location)
{
	char buf[SYM_LEN] = {};
	__u64 args[1] = { location };

	if (bpf_map_lookup_elem(&syms, &location))
		return;
	bpf_snprintf(buf, sizeof(buf), sym_fmt, args, sizeof(args));
	bpf_map_update_elem(&syms, &location, buf, BPF_NOEXIST);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_reason, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct drop_key key = {};

	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_NOT_DROPPED_YET) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET))
		return 0;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 0;
	if (ignored())
		return 0;
	key.location = (__u64)location;
	key.reason = reason;
	netns_of(skb, &key);
	count(&key);
	name_location(key.location);
	return 0;
}

static __always_inline void count_location(struct sk_buff *skb, void *location)
{
	struct drop_key key = {};

	key.location = (__u64)location;
	key.reason = NO_REASON;
	netns_of(skb, &key);
	count(&key);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_location, struct sk_buff *skb, void *location)
{
	if (ignored())
		return 0;
	count_location(skb, location);
	name_location((__u64)location);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(drop_location_bare, struct sk_buff *skb, void *location)
{
	if (ignored())
		return 0;
	count_location(skb, location);
	return 0;
}
