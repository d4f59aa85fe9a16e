// SPDX-License-Identifier: GPL-2.0
/*
 * What the verifier accepts and refuses around arenas (cases/test_arena_verifier.py),
 * after the kernel selftests' verifier_arena.c (written anew here). Each program is loaded
 * on its own (autoload); the refused ones must fail with the verifier's message.
 *
 * accepted
 *   iter_alloc_any_map   iter.s/bpf_map: bpf_arena_alloc_pages on the iterated map (a
 *                        trusted struct bpf_map *); loaded, never run (it would take
 *                        pages of every arena in the system)
 *   subprog_arena_arg    a global function taking an arena pointer (__arg_arena)
 * refused
 *   iter_seq_as_map      the iterator's seq_file passed as the map ("expected pointer to
 *                        STRUCT bpf_map")
 *   iter_untrusted_map   map->inner_map_meta, an untrusted pointer, passed as the map
 *                        ("R1 must be referenced or trusted")
 *   cast_without_arena   an address-space cast in a program tied to no arena
 *   cast_bad_space       addr_space_cast between address spaces 0 and 2
 *   arena_ptr_to_helper  an arena pointer as bpf_map_lookup_elem's key ("R2 type=arena
 *                        expected=...": helpers take no arena memory)
 */
#define ARENA_PAGES 2
#include "arena_map.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u64);
} plain SEC(".maps");

SEC("iter.s/bpf_map")
int iter_alloc_any_map(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;

	if (map)
		bpf_arena_alloc_pages(map, NULL, map->max_entries, NUMA_NO_NODE, 0);
	return 0;
}

SEC("iter.s/bpf_map")
int iter_seq_as_map(struct bpf_iter__bpf_map *ctx)
{
	bpf_arena_alloc_pages((void *)ctx->meta->seq, NULL, 1, NUMA_NO_NODE, 0);
	return 0;
}

SEC("iter.s/bpf_map")
int iter_untrusted_map(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;

	if (map)
		bpf_arena_alloc_pages(map->inner_map_meta, NULL, 1, NUMA_NO_NODE, 0);
	return 0;
}

/* __arg_arena (libbpf's bpf_helpers.h): the btf_decl_tag "arg:arena" */
__noinline int arena_store(__u64 __arena *word __arg_arena, __u64 value)
{
	if (!word)
		return 1;
	*word = value;
	return 0;
}

SEC("syscall")
int subprog_arena_arg(void *ctx)
{
	__u64 __arena *page = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (arena_store(page, 42) || *page != 42)
		return 1;
	return 0;
}

SEC("syscall")
int cast_without_arena(__u64 *ctx)
{
	__u64 value = *ctx;

	arena_cast_kern(value);
	*ctx = value;
	return 0;
}

SEC("syscall")
int cast_bad_space(__u64 *ctx)
{
	__u64 value = *ctx;

	arena_associate(arena);
	asm volatile("%[v] = addr_space_cast(%[v], 0, 2)" : [v] "+r"(value));
	*ctx = value;
	return 0;
}

SEC("syscall")
int arena_ptr_to_helper(void *ctx)
{
	__u64 __arena *key = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!key)
		return 1;
	return bpf_map_lookup_elem(&plain, (void *)key) ? 2 : 0;
}
