// SPDX-License-Identifier: GPL-2.0
/*
 * Feature probe bpf_sock_destroy: an iter/tcp program calling the bpf_sock_destroy kfunc
 * (v6.5). The kfunc is declared strong (not __weak, as vmlinux.h would), so on a kernel
 * without it libbpf refuses the load instead of poisoning the call. It only destroys
 * sockets whose local port equals `target_port`, which the probe never sets: creating the
 * iterator proves the feature without touching any socket.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

__u16 target_port;

SEC("iter/tcp")
int probe_sock_destroy(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;

	if (sk && target_port && sk->skc_num == target_port)
		bpf_sock_destroy(sk);
	return 0;
}
