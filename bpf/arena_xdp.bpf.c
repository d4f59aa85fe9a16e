// SPDX-License-Identifier: GPL-2.0
/*
 * The split pattern (cases/test_arena_xdp.py): a counter table in an arena, set up by a
 * sleepable syscall program and updated per packet by XDP; user space reads the counts in
 * its mapping of the arena. Since 7.0 the arena kfuncs may be called from XDP as well,
 * so `table_count_alloc` creates the table itself on the first packet (older kernels
 * refuse to load it: "program must be sleepable to call sleepable kfunc").
 *
 * The table: one arena page, `struct table` (mirrored in the case). Packets counted are
 * IPv4 UDP to the port in ctl.port whose payload starts with a u32 slot number (little
 * endian); slot `s` counts packets and their frame bytes (data_end - data). Everything
 * else passes uncounted, so neighbour discovery and other traffic change no count.
 *
 *   table_create       syscall: allocate and initialise the table for `nslots` slots,
 *                      publish it in `root`, return its address
 *   table_count        XDP: count into `root`'s table (ctl.no_table when there is none)
 *   table_count_alloc  XDP: the same, creating the table (ctl.nslots slots) when there
 *                      is none yet
 */
#define ARENA_PAGES 16
#include "arena_map.h"
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define TABLE_MAGIC 0x6b6d7874616231ULL /* "kmxtab1" */
#define MAX_SLOTS 128
#define CREATED_BY_SYSCALL 1
#define CREATED_BY_XDP 2

struct table_slot {
	__u64 packets;
	__u64 bytes;
};

struct table {
	__u64 magic;
	__u64 nslots;
	__u64 created_by;
	__u64 pad;
	struct table_slot slots[MAX_SLOTS];
};

/* what the XDP programs were told and what they saw (u64 counters, atomically added) */
struct xdp_ctl {
	__u64 port;		/* in: UDP destination port of the test's packets */
	__u64 nslots;		/* in: slots of a table table_count_alloc creates */
	__u64 table;		/* out: the table table_count_alloc created */
	__u64 counted;		/* packets counted into a slot */
	__u64 no_table;		/* test packets seen before there was a table */
	__u64 bad_slot;		/* test packets whose slot is >= the table's nslots */
	__u64 alloc_failed;	/* bpf_arena_alloc_pages returned NULL (XDP) */
	__u64 created;		/* tables table_count_alloc created */
};

ARRAY_MAP(ctl, 1, struct xdp_ctl);

struct table __arena * __arena root;

static __always_inline void table_init(struct table __arena *t, __u64 nslots, __u64 by)
{
	t->nslots = nslots < MAX_SLOTS ? nslots : MAX_SLOTS;
	t->created_by = by;
	t->magic = TABLE_MAGIC;
}

struct create_args {
	__u64 nslots;
	__u64 table;
};

SEC("syscall")
int table_create(struct create_args *a)
{
	struct table __arena *t = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!t)
		return 1;
	table_init(t, a->nslots, CREATED_BY_SYSCALL);
	root = t;
	a->table = (__u64)t;
	return 0;
}

/* The slot a test packet is for, -1 for other packets. */
static __always_inline long test_slot(struct xdp_md *ctx, __u64 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 *slot = (void *)(udp + 1);

	if ((void *)(slot + 1) > data_end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return -1;
	if (udp->dest != bpf_htons((__u16)port))
		return -1;
	return *slot;
}

static __always_inline int count(struct xdp_md *ctx, struct xdp_ctl *c,
				 struct table __arena *t, long slot)
{
	if ((__u64)slot >= t->nslots) {
		__sync_fetch_and_add(&c->bad_slot, 1);
		return XDP_PASS;
	}
	t->slots[slot].packets += 1;
	t->slots[slot].bytes += ctx->data_end - ctx->data;
	__sync_fetch_and_add(&c->counted, 1);
	return XDP_PASS;
}

/* Count a test packet in the table; with `may_alloc` (a constant: the branch is compiled
 * out of table_count, which must load where XDP may not allocate) make the table first. */
static __always_inline int count_packet(struct xdp_md *ctx, bool may_alloc)
{
	__u32 zero = 0;
	struct xdp_ctl *c = bpf_map_lookup_elem(&ctl, &zero);
	struct table __arena *t;
	long slot;

	if (!c)
		return XDP_PASS;
	slot = test_slot(ctx, c->port);
	if (slot < 0)
		return XDP_PASS;
	t = root;
	if (!t && !may_alloc) {
		__sync_fetch_and_add(&c->no_table, 1);
		return XDP_PASS;
	}
	if (!t) {
		t = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
		if (!t) {
			__sync_fetch_and_add(&c->alloc_failed, 1);
			return XDP_PASS;
		}
		table_init(t, c->nslots, CREATED_BY_XDP);
		root = t;
		c->table = (__u64)t;
		__sync_fetch_and_add(&c->created, 1);
	}
	return count(ctx, c, t, slot);
}

SEC("xdp")
int table_count(struct xdp_md *ctx)
{
	return count_packet(ctx, false);
}

SEC("xdp")
int table_count_alloc(struct xdp_md *ctx)
{
	return count_packet(ctx, true);
}
