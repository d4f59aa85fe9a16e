/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the two halves of the arena benchmark share (bpf/arena_bench.bpf.c: the arena
 * table; bpf/arena_bench_maps.bpf.c: the array and hash tables, which need no arena, so
 * they run on kernels without one): the table size and how a frame picks its slot.
 */
#pragma once

#define BENCH_SLOTS 256

/* the first byte after the Ethernet header (slot 0 for shorter frames) */
static __always_inline __u32 bench_slot(struct xdp_md *ctx)
{
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;

	if (data + 15 > data_end)
		return 0;
	return data[14];
}
