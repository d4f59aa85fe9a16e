// SPDX-License-Identifier: GPL-2.0
/*
 * An arena whose user address is fixed by map_extra (cases/test_arena.py): 2 pages that
 * end exactly at a 4 GiB boundary of the user address space (0x1000_ffff_e000 ..
 * 0x1001_0000_0000), like the kernel selftests' verifier_arena.c. libbpf maps it there
 * with MAP_FIXED before the programs load; the kernel refuses any other address.
 * Programs: arena_op (arena_ops.h).
 */
/* cases/test_arena.py FIXED_START says the same */
#define ARENA_MAP_EXTRA ((1ULL << 44) | (0xFFFFFFFFULL - 2 * 4096 + 1))
#define ARENA_PAGES 2
#include "arena_ops.h"
