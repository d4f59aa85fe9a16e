// SPDX-License-Identifier: GPL-2.0
/*
 * An arena of 4 pages with BPF_F_SEGV_ON_FAULT: a user-space touch of a page no program
 * allocated gets SIGSEGV instead of a fresh zero page (cases/test_arena_faults.py).
 * Programs: arena_op (arena_ops.h).
 */
#define ARENA_PAGES 4
#define ARENA_FLAGS BPF_F_SEGV_ON_FAULT
#include "arena_ops.h"
