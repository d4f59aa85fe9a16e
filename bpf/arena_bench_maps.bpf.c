// SPDX-License-Identifier: GPL-2.0
/*
 * The map half of the arena benchmark (see bpf/arena_bench.bpf.c): the same per-packet
 * counter update in maps, for comparison, and its baseline.
 *
 *   count_array   an array map (BPF_F_MMAPABLE, so user space can also mmap it):
 *                 bpf_map_lookup_elem, which the verifier inlines for arrays
 *   count_hash    a hash map holding every slot (user space fills it): a hash lookup
 *   count_none    the slot parsed, nothing updated: what BPF_PROG_TEST_RUN itself costs
 *
 * Plain increments, as count_arena; every program returns XDP_DROP.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "arena_bench.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, BENCH_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} array_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BENCH_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hash_counters SEC(".maps");

SEC("xdp")
int count_array(struct xdp_md *ctx)
{
	__u32 slot = bench_slot(ctx);
	__u64 *v = bpf_map_lookup_elem(&array_counters, &slot);

	if (v)
		*v += 1;
	return XDP_DROP;
}

SEC("xdp")
int count_hash(struct xdp_md *ctx)
{
	__u32 slot = bench_slot(ctx);
	__u64 *v = bpf_map_lookup_elem(&hash_counters, &slot);

	if (v)
		*v += 1;
	return XDP_DROP;
}

SEC("xdp")
int count_none(struct xdp_md *ctx)
{
	volatile __u32 slot = bench_slot(ctx);

	(void)slot;
	return XDP_DROP;
}
