// SPDX-License-Identifier: GPL-2.0
/*
 * An arena whose user address is fixed by map_extra (cases/test_arena.py): 2 pages that
 * end exactly at a 4 GiB boundary of the user address space (0x1000_ffff_e000 ..
 * 0x1001_0000_0000), like the kernel selftests' verifier_arena.c. libbpf maps it there
 * with MAP_FIXED before the programs load; the kernel refuses any other address.
 * Programs: arena_op (arena_ops.h).
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* cases/test_arena.py FIXED_START says the same */
#define ARENA_FIXED_START ((1ULL << 44) | (0xFFFFFFFFULL - 2 * 4096 + 1))

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2);
	__ulong(map_extra, ARENA_FIXED_START);
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} not_arena SEC(".maps");

#include "arena_ops.h"
