// SPDX-License-Identifier: GPL-2.0
/*
 * An arena of 4 pages with BPF_F_SEGV_ON_FAULT: a user-space touch of a page no program
 * allocated gets SIGSEGV instead of a fresh zero page (cases/test_arena_faults.py).
 * Programs: arena_op (arena_ops.h).
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT);
	__uint(max_entries, 4);
} arena SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} not_arena SEC(".maps");

#include "arena_ops.h"
