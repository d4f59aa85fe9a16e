// SPDX-License-Identifier: GPL-2.0
/*
 * Feature probe bpf_sock_destroy: an iter/tcp program calling the bpf_sock_destroy kfunc
 * (v6.5) on the sockets whose local port is cfg[0] (the probe's own client), counting
 * them in cfg[1]. The kfunc is declared strong (not __weak, as vmlinux.h would), so on a
 * kernel without it libbpf refuses the load instead of poisoning the call.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* cfg[0]: local port to destroy (0: none); cfg[1]: sockets destroyed */
ARRAY_MAP(cfg, 2, __u32);

SEC("iter/tcp")
int probe_sock_destroy(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;
	__u32 zero = 0, one = 1, *port, *count;

	port = bpf_map_lookup_elem(&cfg, &zero);
	count = bpf_map_lookup_elem(&cfg, &one);
	if (!sk || !port || !count || !*port || sk->skc_num != *port)
		return 0;
	if (!bpf_sock_destroy(sk))
		__sync_fetch_and_add(count, 1);
	return 0;
}
