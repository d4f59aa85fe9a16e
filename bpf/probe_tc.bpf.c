// SPDX-License-Identifier: GPL-2.0
/* Feature probes tcx / netkit: a tc program that lets everything through. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tc")
int probe_tc(struct __sk_buff *skb)
{
	return 0; /* TCX_PASS == NETKIT_PASS == TC_ACT_OK */
}
