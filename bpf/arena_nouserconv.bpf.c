// SPDX-License-Identifier: GPL-2.0
/*
 * An arena of 4 pages with BPF_F_NO_USER_CONV: the verifier turns cast_user into a 32-bit
 * move, so pointers a program converts stay in the kernel's 32-bit form
 * (cases/test_arena_faults.py).
 * Programs: arena_op (arena_ops.h).
 */
#define ARENA_PAGES 4
#define ARENA_FLAGS BPF_F_NO_USER_CONV
#include "arena_ops.h"
