/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The XSKMAP every AF_XDP program here redirects into: one socket per rx queue, keyed by
 * the queue (bpf/xsk_common.h, bpf/afxdp_bypass.bpf.c; harness/guest/xdp fills it).
 * Include after vmlinux.h and bpf_helpers.h.
 */
#ifndef KMATRIX_XSKMAP_H
#define KMATRIX_XSKMAP_H

#define MAX_QUEUES 64
#define ETH_P_IP 0x0800

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

#endif /* KMATRIX_XSKMAP_H */
