/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every arena program of the suite shares (kmatrix's own header, written for this
 * suite; the kernel selftests have their own bpf_arena_common.h).
 *
 * Include after vmlinux.h and <bpf/bpf_helpers.h>, with BPF_NO_KFUNC_PROTOTYPES defined
 * before vmlinux.h: the arena kfuncs are declared here *strong*, so a kernel without them
 * fails the load instead of getting a poisoned call (bpf/README.md).
 *
 * Address spaces (clang >= 19, __BPF_FEATURE_ADDR_SPACE_CAST): `__arena` pointers live in
 * address space 1 and hold user addresses, the same values user space dereferences in its
 * mapping of the arena. clang turns every dereference into addr_space_cast(r, 0, 1)
 * ("cast_kern": keep the low 32 bits, which the JIT adds to the kernel's base of the
 * arena) and a conversion of a generic pointer into an `__arena` one into
 * addr_space_cast(r, 1, 0) ("cast_user": put the user address's upper 32 bits back, 0
 * stays 0; a 32-bit move on a BPF_F_NO_USER_CONV arena). `arena_cast_kern`/
 * `arena_cast_user` emit the two instructions explicitly, for programs that look at the
 * forms themselves.
 *
 * A program is tied to the arena it references (an `__arena` global, the map passed to an
 * arena kfunc, or `arena_associate(map)`); an address-space cast in a program with no
 * arena is refused ("addr_space_cast insn can only be used in a program that has an
 * associated arena").
 */
#pragma once

#ifndef __BPF_FEATURE_ADDR_SPACE_CAST
#error "arena programs need clang with address-space casts (LLVM >= 19)"
#endif

#define __arena __attribute__((address_space(1)))

/* the x86-64 page; the suite compiles for x86 only (-D__TARGET_ARCH_x86) */
#define ARENA_PAGE_SIZE 4096UL
#ifndef NUMA_NO_NODE
#define NUMA_NO_NODE (-1)
#endif

/* Pages of `map` (an arena), at `addr` when not NULL; NULL when the kernel cannot give
 * them. Sleepable programs only before 7.0 (KF_SLEEPABLE), any program since. */
extern void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
					    int node_id, __u64 flags) __ksym;
extern void bpf_arena_free_pages(void *map, void __arena *ptr, __u32 page_cnt) __ksym;

/* true while the program may keep looping (the may_goto instruction, 6.9+: the kernel
 * bounds the iterations, so loops over arena data need no constant bound) */
#define can_loop							\
	({								\
		__label__ arena_loop_stop, arena_loop_go;		\
		bool __arena_go = true;					\
		asm volatile goto("may_goto %l[arena_loop_stop]" :::: arena_loop_stop); \
		goto arena_loop_go;					\
	arena_loop_stop:						\
		__arena_go = false;					\
	arena_loop_go:							\
		__arena_go;						\
	})

/* explicit address-space casts of a 64-bit value, in place */
#define arena_cast_kern(var)						\
	asm volatile("%[v] = addr_space_cast(%[v], 0, 1)" : [v] "+r"(var))
#define arena_cast_user(var)						\
	asm volatile("%[v] = addr_space_cast(%[v], 1, 0)" : [v] "+r"(var))

/* tie the program to arena `map` without touching it (a ld_imm64 of the map) */
#define arena_associate(map) asm volatile("" :: "r"(&(map)))

#define ARENA_READ_ONCE(x) (*(volatile typeof(x) *)&(x))
#define ARENA_WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))
