// SPDX-License-Identifier: GPL-2.0
/* Feature probes bpf_iter_{tcp,udp,unix}: one line per socket the iterator visits. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/tcp")
int probe_iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;

	if (sk)
		BPF_SEQ_PRINTF(ctx->meta->seq, "tcp %u\n", sk->skc_num);
	return 0;
}

SEC("iter/udp")
int probe_iter_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;

	if (udp)
		BPF_SEQ_PRINTF(ctx->meta->seq, "udp %u\n", udp->inet.sk.__sk_common.skc_num);
	return 0;
}

SEC("iter/unix")
int probe_iter_unix(struct bpf_iter__unix *ctx)
{
	struct unix_sock *unix_sk = ctx->unix_sk;

	if (unix_sk)
		BPF_SEQ_PRINTF(ctx->meta->seq, "unix %u\n", ctx->uid);
	return 0;
}

/* Probe all_netns_sock_iter: retargeted before load (bpf_program__set_attach_target) at a
 * candidate all-namespaces socket iterator; prints the cookie and namespace inode of each
 * socket, read here as a struct sock_common like iter/tcp's. No kernel has such a target
 * yet, so the retargeting is what fails today. */
SEC("iter/tcp")
int probe_iter_allns(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;

	if (sk)
		BPF_SEQ_PRINTF(ctx->meta->seq, "sock %llu %u\n", bpf_get_socket_cookie(sk),
			       BPF_CORE_READ(sk, skc_net.net, ns.inum));
	return 0;
}
