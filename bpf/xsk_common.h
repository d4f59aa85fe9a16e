/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the AF_XDP programs share (bpf/xsk_redirect.bpf.c, bpf/xsk_cases.bpf.c): the XSKMAP
 * of the sockets by rx queue and the two counters the cases read with Map.lookup_int:
 *   seen[queue]       test frames the program saw on each rx queue
 *   verdicts[action]  what it returned for them, by enum xdp_action
 * Include after vmlinux.h and bpf_helpers.h.
 */
#ifndef KMATRIX_XSK_COMMON_H
#define KMATRIX_XSK_COMMON_H

#include "array_map.h"
#include "xskmap.h"

#define NR_ACTIONS (XDP_REDIRECT + 1)

ARRAY_MAP(seen, MAX_QUEUES, __u64);

ARRAY_MAP(verdicts, NR_ACTIONS, __u64);

/* Count `action` in verdicts[] and return it. */
static __always_inline int verdict(int action)
{
	__u32 key = action;
	__u64 *count = bpf_map_lookup_elem(&verdicts, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	return action;
}

/* Count a test frame on its queue; its 0-based number on that queue. */
static __always_inline __u64 count_seen(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	__u64 *count = bpf_map_lookup_elem(&seen, &queue);
	__u64 nr;

	if (!count)
		return 0;
	nr = *count;
	__sync_fetch_and_add(count, 1);
	return nr;
}

#endif
