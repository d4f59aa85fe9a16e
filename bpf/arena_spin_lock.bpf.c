// SPDX-License-Identifier: GPL-2.0
/*
 * A spin lock living in arena memory (cases/test_arena_atomics.py, probe arena_spin_lock),
 * written for this suite after what the kernel selftests' arena spin lock needs from the
 * kernel (bpf_arena_spin_lock.h is an MCS queued lock; this one is a plain
 * test-and-test-and-set lock, which exercises the same kernel facilities):
 *
 * - cmpxchg and xchg on arena memory (x86 JIT, 6.10),
 * - may_goto (6.9) to bound the spinning: a waiter gives up with -ETIMEDOUT instead of
 *   spinning forever (or after state.spin_limit tries), and the lock word is left as it
 *   was,
 * - bpf_local_irq_save/restore (6.14) so the holder is not interrupted while it holds the
 *   lock (both declared strong: a kernel without them refuses the object).
 *
 *   lock_inc     tc program for BPF_PROG_TEST_RUN with `repeat` from several threads: take
 *                the lock, read state.counter, spin state.cs_loops times, write it back + 1,
 *                release; a timed-out acquisition counts in state.timeouts instead
 *   nolock_inc   the same read-spin-write without the lock (shows what the lock prevents)
 *   lock_state   the user address of `state` (syscall program)
 */
#include "arena_map.h"

#define ETIMEDOUT 110

extern void bpf_local_irq_save(unsigned long *flags) __ksym;
extern void bpf_local_irq_restore(unsigned long *flags) __ksym;

struct arena_spinlock {
	__u64 locked;	/* 0 free, 1 held */
};

struct lock_state {
	struct arena_spinlock lock;
	__u64 counter;		/* incremented non-atomically under the lock */
	__u64 timeouts;		/* acquisitions given up (atomic) */
	__u64 cs_loops;		/* length of the critical section (set by user space) */
	__u64 acquired;		/* acquisitions (atomic, outside the critical section) */
	__u64 spin_limit;	/* give up after this many tries (set by user space); 0: only
				 * may_goto's bound (millions of tries, IRQs off meanwhile) */
};

struct lock_state __arena state;

static __always_inline int arena_spin_lock_irqsave(struct arena_spinlock __arena *lock,
						   unsigned long *flags)
{
	__u64 tries, limit = state.spin_limit;

	bpf_local_irq_save(flags);
	for (tries = 0; can_loop; tries++) {
		if (limit && tries >= limit)
			break;
		if (ARENA_READ_ONCE(lock->locked))
			continue;
		if (__sync_val_compare_and_swap(&lock->locked, 0, 1) == 0)
			return 0;
	}
	bpf_local_irq_restore(flags);
	return -ETIMEDOUT;
}

static __always_inline void arena_spin_unlock_irqrestore(struct arena_spinlock __arena *lock,
							 unsigned long *flags)
{
	__sync_lock_test_and_set(&lock->locked, 0);	/* xchg: a full barrier on x86 */
	bpf_local_irq_restore(flags);
}

static __always_inline void critical_section(void)
{
	__u64 value = ARENA_READ_ONCE(state.counter);
	__u64 i, loops = state.cs_loops;

	for (i = 0; i < loops && can_loop; i++)
		barrier_var(i);
	ARENA_WRITE_ONCE(state.counter, value + 1);
}

SEC("tc")
int lock_inc(struct __sk_buff *skb)
{
	unsigned long flags;

	if (arena_spin_lock_irqsave(&state.lock, &flags)) {
		__sync_fetch_and_add(&state.timeouts, 1);
		return 1;
	}
	critical_section();
	arena_spin_unlock_irqrestore(&state.lock, &flags);
	__sync_fetch_and_add(&state.acquired, 1);
	return 0;
}

SEC("tc")
int nolock_inc(struct __sk_buff *skb)
{
	critical_section();
	return 0;
}

struct lock_state_args {
	__u64 addr;
};

SEC("syscall")
int lock_state(struct lock_state_args *a)
{
	a->addr = (__u64)&state;
	return 0;
}
