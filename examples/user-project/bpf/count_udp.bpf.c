// SPDX-License-Identifier: GPL-2.0
/* The project's own BPF object: count UDP packets to the port in cfg[0] at tcx ingress.
 * kmatrix compiles it with its own (clang-19, vmlinux.h, -I to kmatrix's bpf/ headers). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

#include "run_trace.h"

SEC("tcx/ingress")
int count_udp(struct __sk_buff *skb)
{
	__u32 zero = 0, *port = bpf_map_lookup_elem(&cfg, &zero);
	__u64 *n = bpf_map_lookup_elem(&seen, &zero);

	if (port && n && is_udp4_to(skb, *port))
		__sync_fetch_and_add(n, 1);
	return TCX_NEXT;
}
