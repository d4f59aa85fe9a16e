// SPDX-License-Identifier: GPL-2.0
/*
 * 64 distinct TCX programs for the attach-point capacity test (cases/test_tcx.py,
 * test_max_programs; upstream tc_opts' max tests): a TCX hook holds at most 63 programs
 * (bpf_mprog_max()), so the 64th attach must fail with ERANGE. Program N adds 1 to
 * count[N] for every packet, so a test can see that all of them run.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

ARRAY_MAP(count, 64, __u64);

#define PROG(a, b)                                              \
	SEC("tc")                                               \
	int max_##a##_##b(struct __sk_buff *skb)                \
	{                                                       \
		__u32 key = (a) * 8 + (b);                      \
		__u64 *c = bpf_map_lookup_elem(&count, &key);   \
		if (c)                                          \
			__sync_fetch_and_add(c, 1);             \
		return TCX_NEXT;                                \
	}

#define PROG8(a) PROG(a, 0) PROG(a, 1) PROG(a, 2) PROG(a, 3) \
		 PROG(a, 4) PROG(a, 5) PROG(a, 6) PROG(a, 7)

/* max_A_B counts into count[A * 8 + B]: 64 programs, keys 0..63 */
PROG8(0) PROG8(1) PROG8(2) PROG8(3) PROG8(4) PROG8(5) PROG8(6) PROG8(7)
