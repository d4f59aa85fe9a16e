/* SPDX-License-Identifier: GPL-2.0 */
/*
 * `arena_op`: one sleepable syscall program that does one arena operation per run, chosen
 * by its context (struct arena_op_args; harness.guest.bpf.arena.ArenaOps drives it), so a
 * test drives a sequence of allocations, frees, reads and writes from Python and checks every
 * step from the program's side and from user space.
 *
 * The including file defines ARENA_PAGES (the arena's max_entries), optionally
 * ARENA_FLAGS (map flags besides BPF_F_MMAPABLE) and ARENA_MAP_EXTRA (a fixed user
 * address), then includes this header first: it brings arena_map.h (vmlinux.h, the
 * license, the arena as `arena`) and a non-arena map `not_arena`.
 */
#pragma once

#ifndef ARENA_PAGES
#error "define ARENA_PAGES (and ARENA_FLAGS, ARENA_MAP_EXTRA if needed) before arena_ops.h"
#endif
#include "arena_map.h"

ARRAY_MAP(not_arena, 1, __u64);

enum arena_op {
	/* ret = bpf_arena_alloc_pages(&arena, addr or NULL, count, NUMA_NO_NODE, value) */
	ARENA_OP_ALLOC = 1,
	/* bpf_arena_free_pages(&arena, addr, count) */
	ARENA_OP_FREE = 2,
	/* value = *(u64 *)addr, as the program sees it (0 where no page is) */
	ARENA_OP_READ = 3,
	/* *(u64 *)addr = value, then ret = what reading it back gives */
	ARENA_OP_WRITE = 4,
	/* kern = cast_kern(addr), user = cast_user(kern) */
	ARENA_OP_CASTS = 5,
	/* pages addr .. addr + count - 1: first word = value + i, last word = ~(value + i) */
	ARENA_OP_STAMP = 6,
	/* ret = pages addr .. addr + count - 1 that carry ARENA_OP_STAMP's words */
	ARENA_OP_CHECK = 7,
	/* ret = bpf_arena_alloc_pages(&not_arena, NULL, 1, NUMA_NO_NODE, 0) */
	ARENA_OP_ALLOC_NOT_ARENA = 8,
};

struct arena_op_args {
	__u64 op;
	__u64 addr;
	__u64 count;
	__u64 value;
	__u64 ret;
	__u64 kern;
	__u64 user;
};

#define ARENA_PAGE_WORDS (ARENA_PAGE_SIZE / sizeof(__u64))

static __always_inline __u64 __arena *arena_word(__u64 addr, __u64 page, __u64 word)
{
	return (__u64 __arena *)(addr + page * ARENA_PAGE_SIZE + word * sizeof(__u64));
}

SEC("syscall")
int arena_op(struct arena_op_args *a)
{
	__u64 i, ptr, hits = 0;

	switch (a->op) {
	case ARENA_OP_ALLOC:
		a->ret = (__u64)bpf_arena_alloc_pages(&arena, (void __arena *)a->addr,
						      (__u32)a->count, NUMA_NO_NODE, a->value);
		return 0;
	case ARENA_OP_FREE:
		bpf_arena_free_pages(&arena, (void __arena *)a->addr, (__u32)a->count);
		return 0;
	case ARENA_OP_READ:
		a->value = *(volatile __u64 __arena *)a->addr;
		return 0;
	case ARENA_OP_WRITE:
		*(volatile __u64 __arena *)a->addr = a->value;
		a->ret = *(volatile __u64 __arena *)a->addr;
		return 0;
	case ARENA_OP_CASTS:
		ptr = a->addr;
		arena_cast_kern(ptr);
		a->kern = ptr;
		arena_cast_user(ptr);
		a->user = ptr;
		return 0;
	case ARENA_OP_STAMP:
		for (i = 0; i < a->count && can_loop; i++) {
			*arena_word(a->addr, i, 0) = a->value + i;
			*arena_word(a->addr, i, ARENA_PAGE_WORDS - 1) = ~(a->value + i);
		}
		return 0;
	case ARENA_OP_CHECK:
		for (i = 0; i < a->count && can_loop; i++)
			if (*arena_word(a->addr, i, 0) == a->value + i &&
			    *arena_word(a->addr, i, ARENA_PAGE_WORDS - 1) == ~(a->value + i))
				hits++;
		a->ret = hits;
		return 0;
	case ARENA_OP_ALLOC_NOT_ARENA:
		a->ret = (__u64)bpf_arena_alloc_pages(&not_arena, NULL, 1, NUMA_NO_NODE, 0);
		return 0;
	}
	return -1;
}
