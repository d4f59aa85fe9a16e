// SPDX-License-Identifier: GPL-2.0
/*
 * Feature probes of the arena family (harness/guest/probes/arena.py); each probe loads
 * only its own program (autoload), so what one kernel refuses does not hide another.
 *
 *   probe_alloc      arena: a sleepable syscall program allocates a page and stamps it
 *                    (args->magic at the first word, its complement at the last); user
 *                    space must find the stamp at the pointer the program returned
 *   probe_atomics    arena_atomics: fetch-add, add, xchg and cmpxchg (64-bit) on an arena
 *                    page, every old value and the final one reported in the context
 *   probe_xdp_alloc  arena_nonsleepable_kfuncs: an XDP program allocates two pages, stamps
 *                    the first and frees the second (refused at load before 7.0: the arena
 *                    kfuncs were KF_SLEEPABLE)
 */
#include "arena_map.h"

/* context of probe_alloc / probe_atomics; probe_xdp_alloc uses it as xdp_ctl's value */
struct probe_args {
	__u64 magic;
	__u64 ptr;
	__u64 freed;
	__u64 add_old;
	__u64 xchg_old;
	__u64 cmpxchg_miss;
	__u64 cmpxchg_hit;
	__u64 final;
};

ARRAY_MAP(xdp_ctl, 1, struct probe_args);

#define LAST_WORD (ARENA_PAGE_SIZE / sizeof(__u64) - 1)

SEC("syscall")
int probe_alloc(struct probe_args *args)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!page)
		return 1;
	page[0] = args->magic;
	page[LAST_WORD] = ~args->magic;
	args->ptr = (__u64)page;
	return 0;
}

SEC("syscall")
int probe_atomics(struct probe_args *args)
{
	__u64 __arena *word = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!word)
		return 1;
	*word = 10;
	args->add_old = __sync_fetch_and_add(word, 5);			/* 10 -> 15 */
	__sync_fetch_and_add(word, 1);					/* 15 -> 16 */
	args->xchg_old = __sync_lock_test_and_set(word, 100);		/* 16 -> 100 */
	args->cmpxchg_miss = __sync_val_compare_and_swap(word, 1, 7);	/* stays 100 */
	args->cmpxchg_hit = __sync_val_compare_and_swap(word, 100, 42);	/* 100 -> 42 */
	args->final = *word;
	args->ptr = (__u64)word;
	return 0;
}

SEC("xdp")
int probe_xdp_alloc(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct probe_args *ctl = bpf_map_lookup_elem(&xdp_ctl, &zero);
	__u64 __arena *page, *spare;

	if (!ctl)
		return XDP_ABORTED;
	page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	spare = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!page || !spare)
		return XDP_DROP;
	page[0] = ctl->magic;
	page[LAST_WORD] = ~ctl->magic;
	ctl->ptr = (__u64)page;
	ctl->freed = (__u64)spare;
	bpf_arena_free_pages(&arena, (void __arena *)spare, 1);
	return XDP_PASS;
}
