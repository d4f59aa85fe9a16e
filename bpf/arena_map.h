/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The start of every arena object: vmlinux.h without kfunc prototypes (arena_common.h
 * declares the arena kfuncs), bpf_helpers.h, array_map.h, the license, and the arena as
 * `arena`. The including file may define, before including this first:
 *   ARENA_PAGES      the arena's max_entries (default 4)
 *   ARENA_FLAGS      map flags besides BPF_F_MMAPABLE
 *   ARENA_MAP_EXTRA  a fixed user address for the arena
 */
#pragma once

#ifndef ARENA_PAGES
#define ARENA_PAGES 4
#endif
#ifndef ARENA_FLAGS
#define ARENA_FLAGS 0
#endif

#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "arena_common.h"
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARENA);
	__uint(map_flags, BPF_F_MMAPABLE | (ARENA_FLAGS));
	__uint(max_entries, ARENA_PAGES);
#ifdef ARENA_MAP_EXTRA
	__ulong(map_extra, ARENA_MAP_EXTRA);
#endif
} arena SEC(".maps");
