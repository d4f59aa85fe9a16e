// SPDX-License-Identifier: GPL-2.0
/*
 * Atomic instructions on arena memory (cases/test_arena_atomics.py), after the kernel
 * selftests' arena_atomics.c (written anew here). The x86-64 JIT compiles atomics on arena
 * pointers since 6.10; BPF_AND/BPF_OR/BPF_XOR *with* BPF_FETCH it still refuses
 * (bpf_jit_supports_insn), so the fetch forms have programs of their own.
 *
 *   atomics64   on a fresh page: fetch-add, add, fetch-sub, sub, and, or, xor (no fetch),
 *               cmpxchg (a miss and a hit), xchg: every old value and result in the context
 *   atomics32   the same with 32-bit operands (BPF_W: inline asm, the suite's clang
 *               defaults to -mcpu=v1, which has no 32-bit atomics in C)
 *   fetch_and, fetch_or, fetch_xor   one 64-bit fetch form each, old value reported
 *   count_tc    a tc program for BPF_PROG_TEST_RUN with `repeat`, from several threads at
 *               once: add 1 (no fetch) to shared.add and fetch-add 1 to shared.fetch_add;
 *               both must end at threads x repeat
 *   shared_addr reports the user address of `shared` (an __arena global)
 */
#define ARENA_PAGES 8
#include "arena_map.h"

/* context of atomics64 / atomics32 (u64 fields; atomics32 uses the low halves) */
struct atomics_args {
	__u64 ptr;		/* the page the operations ran on */
	__u64 fetch_add_old;	/* 100, value 100 -> 107 */
	__u64 after_add;	/* +3 (no fetch): 110 */
	__u64 fetch_sub_old;	/* 110 -> 100 */
	__u64 after_sub;	/* -40 (no fetch): 60 */
	__u64 after_and;	/* & 0x3c: 0x3c */
	__u64 after_or;		/* | 0x300: 0x33c */
	__u64 after_xor;	/* ^ 0x0ff: 0x3c3 */
	__u64 cmpxchg_miss;	/* expects 1: returns 0x3c3, no change */
	__u64 cmpxchg_hit;	/* expects 0x3c3: returns 0x3c3, now 0xabc */
	__u64 xchg_old;		/* -> 0x5a5a: returns 0xabc */
	__u64 final;		/* 0x5a5a */
	__u64 high;		/* 64-bit run: the upper half survived every operation */
};

#define HIGH 0x1234567800000000ULL

SEC("syscall")
int atomics64(struct atomics_args *a)
{
	__u64 __arena *w = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (!w)
		return 1;
	a->ptr = (__u64)w;
	*w = HIGH | 100;
	a->fetch_add_old = __sync_fetch_and_add(w, 7);
	__sync_fetch_and_add(w, 3);
	a->after_add = *w;
	a->fetch_sub_old = __sync_fetch_and_sub(w, 10);
	__sync_fetch_and_sub(w, 40);
	a->after_sub = *w;
	__sync_fetch_and_and(w, HIGH | 0x3c);
	a->after_and = *w;
	__sync_fetch_and_or(w, 0x300);
	a->after_or = *w;
	__sync_fetch_and_xor(w, 0x0ff);
	a->after_xor = *w;
	a->cmpxchg_miss = __sync_val_compare_and_swap(w, 1, HIGH | 0xdead);
	a->cmpxchg_hit = __sync_val_compare_and_swap(w, HIGH | 0x3c3, HIGH | 0xabc);
	a->xchg_old = __sync_lock_test_and_set(w, HIGH | 0x5a5a);
	a->final = *w;
	a->high = (a->final & ~0xffffffffULL) == HIGH;
	return 0;
}

/* one 32-bit atomic on [p], operand v (r1 = v, r2 = p): emitted as BPF_STX|BPF_ATOMIC|BPF_W */
#define ATOMIC32(insn, p, v)						\
	({								\
		__u64 __v = (v);					\
		asm volatile("r1 = %[val]\n"				\
			     "r2 = %[ptr]\n"				\
			     "r2 = addr_space_cast(r2, 0, 1)\n"		\
			     insn "\n"					\
			     "%[val] = r1\n"				\
			     : [val] "+r"(__v)				\
			     : [ptr] "r"(p)				\
			     : "r0", "r1", "r2", "memory");		\
		__v & 0xffffffff;					\
	})

/* cmpxchg: r0 = expected, r1 = new; r0 gets the old value */
#define CMPXCHG32(p, expected, desired)					\
	({								\
		__u64 __old = (expected), __new = (desired);		\
		asm volatile("r0 = %[old]\n"				\
			     "r1 = %[new]\n"				\
			     "r2 = %[ptr]\n"				\
			     "r2 = addr_space_cast(r2, 0, 1)\n"		\
			     "w0 = cmpxchg32_32(r2 + 0, w0, w1)\n"	\
			     "%[old] = r0\n"				\
			     : [old] "+r"(__old)			\
			     : [new] "r"(__new), [ptr] "r"(p)		\
			     : "r0", "r1", "r2", "memory");		\
		__old & 0xffffffff;					\
	})

SEC("syscall")
int atomics32(struct atomics_args *a)
{
	__u32 __arena *w = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);
	__u32 __arena *next;

	if (!w)
		return 1;
	next = w + 1;
	*next = 0xfeedf00d;	/* the neighbouring u32 must stay untouched */
	a->ptr = (__u64)w;
	*w = 100;
	a->fetch_add_old = ATOMIC32("w1 = atomic_fetch_add((u32 *)(r2 + 0), w1)", w, 7);
	ATOMIC32("lock *(u32 *)(r2 + 0) += w1", w, 3);
	a->after_add = *w;
	a->fetch_sub_old = ATOMIC32("w1 = atomic_fetch_add((u32 *)(r2 + 0), w1)", w, -10);
	ATOMIC32("lock *(u32 *)(r2 + 0) += w1", w, -40);
	a->after_sub = *w;
	ATOMIC32("lock *(u32 *)(r2 + 0) &= w1", w, 0x3c);
	a->after_and = *w;
	ATOMIC32("lock *(u32 *)(r2 + 0) |= w1", w, 0x300);
	a->after_or = *w;
	ATOMIC32("lock *(u32 *)(r2 + 0) ^= w1", w, 0x0ff);
	a->after_xor = *w;
	a->cmpxchg_miss = CMPXCHG32(w, 1, 0xdead);
	a->cmpxchg_hit = CMPXCHG32(w, 0x3c3, 0xabc);
	a->xchg_old = ATOMIC32("w1 = xchg32_32(r2 + 0, w1)", w, 0x5a5a);
	a->final = *w;
	a->high = *next == 0xfeedf00d;
	return 0;
}

/* context of fetch_and / fetch_or / fetch_xor */
struct fetch_args {
	__u64 ptr;
	__u64 old;	/* 0xf0f0 (what the fetch returned) */
	__u64 now;	/* 0xf0f0 op 0x0ff0 */
};

static __always_inline __u64 __arena *fetch_page(struct fetch_args *a)
{
	__u64 __arena *w = bpf_arena_alloc_pages(&arena, NULL, 1, NUMA_NO_NODE, 0);

	if (w) {
		*w = 0xf0f0;
		a->ptr = (__u64)w;
	}
	return w;
}

SEC("syscall")
int fetch_and(struct fetch_args *a)
{
	__u64 __arena *w = fetch_page(a);

	if (!w)
		return 1;
	a->old = __sync_fetch_and_and(w, 0x0ff0);
	a->now = *w;
	return 0;
}

SEC("syscall")
int fetch_or(struct fetch_args *a)
{
	__u64 __arena *w = fetch_page(a);

	if (!w)
		return 1;
	a->old = __sync_fetch_and_or(w, 0x0ff0);
	a->now = *w;
	return 0;
}

SEC("syscall")
int fetch_xor(struct fetch_args *a)
{
	__u64 __arena *w = fetch_page(a);

	if (!w)
		return 1;
	a->old = __sync_fetch_and_xor(w, 0x0ff0);
	a->now = *w;
	return 0;
}

struct shared_counters {
	__u64 add;
	__u64 fetch_add;
	__u64 last_fetch;	/* the old value the last fetch-add saw (any run) */
};

struct shared_counters __arena shared;

SEC("tc")
int count_tc(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&shared.add, 1);
	shared.last_fetch = __sync_fetch_and_add(&shared.fetch_add, 1);
	return 0;
}

struct shared_args {
	__u64 addr;
};

SEC("syscall")
int shared_addr(struct shared_args *a)
{
	a->addr = (__u64)&shared;
	return 0;
}
