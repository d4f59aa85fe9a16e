// SPDX-License-Identifier: GPL-2.0
/*
 * The arena half of the arena benchmark (benchmarks/arena_bench.py,
 * harness/guest/bench/arena.py): a per-packet counter table of BENCH_SLOTS u64 in an
 * arena page, updated by XDP with a JIT'd load and store (no helper call).
 * bpf/arena_bench_maps.bpf.c has the same update in an array and a hash map.
 *
 *   bench_setup   syscall: allocate the table, publish it in `arena_counters`, return it
 *   count_arena   XDP: table[slot] += 1 (a plain increment, as in the map variants: one
 *                 BPF_PROG_TEST_RUN thread); XDP_DROP
 */
#include "arena_map.h"
#include "arena_bench.h"

__u64 __arena * __arena arena_counters;

struct setup_args {
	__u64 table;
};

SEC("syscall")
int bench_setup(struct setup_args *a)
{
	__u64 __arena *t = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!t)
		return 1;
	arena_counters = t;
	a->table = (__u64)t;
	return 0;
}

SEC("xdp")
int count_arena(struct xdp_md *ctx)
{
	__u64 __arena *t = arena_counters;
	__u32 slot = bench_slot(ctx);

	if (t)
		t[slot] += 1;
	return XDP_DROP;
}
