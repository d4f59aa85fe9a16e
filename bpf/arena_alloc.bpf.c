// SPDX-License-Identifier: GPL-2.0
/*
 * Arena page allocation (cases/test_arena.py, cases/test_arena_verifier.py), after the
 * kernel selftests' verifier_arena.c / verifier_arena_large.c (written anew here).
 *
 * `arena`: 2 pages unless the test sets max_entries before load, no __arena globals (so
 * every page is the programs' to allocate), no map_extra (libbpf maps it where the kernel
 * chooses, before the programs load).
 *
 *   arena_op           one operation per run, driven from Python (arena_ops.h)
 *   alloc_sequence     two pages, a third refused, use after free reads 0, the freed page
 *                      is the next one allocated; returns the failed step (0: all held)
 *   alloc_neighbours   two pages at once: the pages around them read 0 and drop writes;
 *                      after the free all four read 0
 *   alloc_whole        the whole arena at once, its size read from the map itself (CO-RE
 *                      on struct bpf_arena), then not one page more
 *
 * Each returns 0 when every step held and the number of the first step that did not.
 */
#define ARENA_PAGES 2
#include "arena_ops.h"

SEC("syscall")
int alloc_sequence(void *ctx)
{
	volatile __u64 __arena *first, *second, *third, *again;

	first = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!first)
		return 1;
	*first = 0x1111;
	second = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!second)
		return 2;
	*second = 0x2222;
	third = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (third)
		return 3;
	if (*first != 0x1111)
		return 4;
	if (*second != 0x2222)
		return 5;
	bpf_arena_free_pages(&arena, (void __arena *)second, 1);
	if (*first != 0x1111)
		return 6;
	if (*second != 0)
		return 7;
	again = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (!again)
		return 8;
	if (again != second)
		return 9;
	if (*again != 0)
		return 10;
	*again = 0x3333;
	if (*first != 0x1111)
		return 11;
	return 0;
}

SEC("syscall")
int alloc_neighbours(void *ctx)
{
	volatile char __arena *lo, *hi, *above, *below;

	lo = bpf_arena_alloc_pages(&arena, NULL, 2, NUMA_NO_NODE, 0);
	if (!lo)
		return 1;
	hi = lo + ARENA_PAGE_SIZE;
	above = lo + 2 * ARENA_PAGE_SIZE;
	below = lo - ARENA_PAGE_SIZE;
	*lo = 1;
	*hi = 2;
	*above = 3;
	*below = 4;
	if (*lo != 1)
		return 2;
	if (*hi != 2)
		return 3;
	if (*above != 0)
		return 4;
	if (*below != 0)
		return 5;
	bpf_arena_free_pages(&arena, (void __arena *)lo, 2);
	if (*lo != 0)
		return 6;
	if (*hi != 0)
		return 7;
	if (*above != 0)
		return 8;
	if (*below != 0)
		return 9;
	return 0;
}

/* the kernel's struct bpf_arena starts with its struct bpf_map (CO-RE relocated) */
struct bpf_arena___kmx {
	struct bpf_map map;
} __attribute__((preserve_access_index));

SEC("syscall")
int alloc_whole(void *ctx)
{
	struct bpf_arena___kmx *ar = (struct bpf_arena___kmx *)&arena;
	__u32 pages = ar->map.max_entries;
	volatile char __arena *all, *more;

	all = bpf_arena_alloc_pages(&ar->map, NULL, pages, NUMA_NO_NODE, 0);
	if (!all)
		return 1;
	all[0] = 1;
	all[(__u64)pages * ARENA_PAGE_SIZE - 1] = 2;
	more = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	if (more)
		return 2;
	if (all[0] != 1 || all[(__u64)pages * ARENA_PAGE_SIZE - 1] != 2)
		return 3;
	return 0;
}
