// SPDX-License-Identifier: GPL-2.0
/*
 * Socket iterator dumps (cases/test_sock_iter*.py, harness/guest/net/allns.py, the
 * sock_iter benchmark): one text line per socket the iterator visits, parsed by
 * harness.guest.net.allns.parse_records.
 *
 *   tcp|udp <family> <state> <lport> <rport> <uid> <inode> <cookie> <netns> <laddr> <raddr>
 *   unix <type> <state> <inode> <cookie> <peer inode> <uid> <netns> <name>
 *   sockmap <key> <family> <protocol> <lport> <cookie> <netns>
 *
 * Numbers are decimal; addresses are hex in network byte order (8 digits for IPv4, 32 for
 * IPv6); <netns> is the inode of the socket's network namespace (what stat() of
 * /proc/PID/ns/net says); <inode> is the socket's inode (0 for time-wait and request
 * sockets and for children still in an accept queue); <name> is "-" (unbound), "p:" and the
 * path in hex, or "a:" and the abstract name (without its leading NUL) in hex.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12
#define UNIX_PATH_MAX 108

/* the inode of the socket's file (0 if it has none), like the kernel's sock_i_ino() */
static __always_inline __u64 socket_inode(struct socket *sock)
{
	struct socket_alloc *sa = (struct socket_alloc *)sock;

	if (!sock)
		return 0;
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

static __always_inline __u32 netns_inode(struct sock_common *skc)
{
	return BPF_CORE_READ(skc, skc_net.net, ns.inum);
}

/* "<laddr> <raddr>\n" of a TCP or UDP socket */
static __always_inline void print_addrs(struct seq_file *seq, struct sock_common *skc)
{
	__u32 s[4], d[4];

	if (skc->skc_family == AF_INET6) {
		for (int i = 0; i < 4; i++) {
			s[i] = bpf_ntohl(skc->skc_v6_rcv_saddr.in6_u.u6_addr32[i]);
			d[i] = bpf_ntohl(skc->skc_v6_daddr.in6_u.u6_addr32[i]);
		}
		BPF_SEQ_PRINTF(seq, "%08x%08x%08x%08x %08x%08x%08x%08x\n",
			       s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3]);
	} else {
		BPF_SEQ_PRINTF(seq, "%08x %08x\n", bpf_ntohl(skc->skc_rcv_saddr),
			       bpf_ntohl(skc->skc_daddr));
	}
}

SEC("iter/tcp")
int dump_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct seq_file *seq = ctx->meta->seq;
	struct tcp_sock *tp;
	__u64 ino = 0;

	if (!skc)
		return 0;
	/* full sockets only: time-wait and request sockets have no struct socket */
	tp = bpf_skc_to_tcp_sock(skc);
	if (tp)
		ino = socket_inode(tp->inet_conn.icsk_inet.sk.sk_socket);
	BPF_SEQ_PRINTF(seq, "tcp %u %u %u %u %u %lu %llu %u ", skc->skc_family,
		       skc->skc_state, skc->skc_num, bpf_ntohs(skc->skc_dport), ctx->uid,
		       ino, bpf_get_socket_cookie(skc), netns_inode(skc));
	print_addrs(seq, skc);
	return 0;
}

SEC("iter/udp")
int dump_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	struct seq_file *seq = ctx->meta->seq;
	struct sock_common *skc;

	if (!udp)
		return 0;
	skc = &udp->inet.sk.__sk_common;
	BPF_SEQ_PRINTF(seq, "udp %u %u %u %u %u %lu %llu %u ", skc->skc_family,
		       skc->skc_state, skc->skc_num, bpf_ntohs(skc->skc_dport), ctx->uid,
		       socket_inode(udp->inet.sk.sk_socket), bpf_get_socket_cookie(udp),
		       netns_inode(skc));
	print_addrs(seq, skc);
	return 0;
}

SEC("iter/unix")
int dump_unix(struct bpf_iter__unix *ctx)
{
	struct unix_sock *unix_sk = ctx->unix_sk;
	struct seq_file *seq = ctx->meta->seq;
	struct unix_address *addr;
	struct sock *peer;
	__u64 peer_ino = 0;
	int len, i, abstract;
	unsigned char c;

	if (!unix_sk)
		return 0;
	peer = unix_sk->peer;
	if (peer)
		peer_ino = socket_inode(BPF_CORE_READ(peer, sk_socket));
	BPF_SEQ_PRINTF(seq, "unix %u %u %lu %llu %lu %u %u ", unix_sk->sk.sk_type,
		       unix_sk->sk.__sk_common.skc_state,
		       socket_inode(unix_sk->sk.sk_socket), bpf_get_socket_cookie(unix_sk),
		       peer_ino, ctx->uid, netns_inode(&unix_sk->sk.__sk_common));
	addr = unix_sk->addr;
	if (!addr) {
		BPF_SEQ_PRINTF(seq, "-\n");
		return 0;
	}
	/* hex, so that no name (abstract ones are any bytes) can break the line format */
	len = addr->len - sizeof(short);
	abstract = !addr->name->sun_path[0];
	if (abstract)
		BPF_SEQ_PRINTF(seq, "a:");
	else
		BPF_SEQ_PRINTF(seq, "p:");
	for (i = abstract; i < len && i < UNIX_PATH_MAX; i++) {
		c = addr->name->sun_path[i];
		if (!c && !abstract)
			break;
		BPF_SEQ_PRINTF(seq, "%02x", c);
	}
	BPF_SEQ_PRINTF(seq, "\n");
	return 0;
}

SEC("iter/sockmap")
int dump_sockmap(struct bpf_iter__sockmap *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct sock *sk = ctx->sk;
	__u32 *key = ctx->key;

	if (!key || !sk)
		return 0;
	BPF_SEQ_PRINTF(seq, "sockmap %u %u %u %u %llu %u\n", *key,
		       sk->__sk_common.skc_family, sk->sk_protocol, sk->__sk_common.skc_num,
		       bpf_get_socket_cookie(sk), netns_inode(&sk->__sk_common));
	return 0;
}
