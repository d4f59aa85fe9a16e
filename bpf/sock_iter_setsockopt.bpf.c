// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_setsockopt from socket iterators (cases/test_sock_iter.py):
 *
 * set_tcp_cc (iter/tcp, v5.15): every full TCP socket in LISTEN or ESTABLISHED whose local
 * or remote port is conf.port and whose congestion control is conf.from is switched to
 * conf.to with bpf_setsockopt(TCP_CONGESTION); counts in `stats` (matched, changed, errors).
 *
 * set_unix_sndbuf (iter/unix, ~v5.17): every AF_UNIX socket whose cookie is a key of
 * `sndbuf` gets SO_SNDBUF set to the value there; what bpf_getsockopt then reads back
 * replaces the value (negative: the errno of the failed call).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

#define SOL_SOCKET 1
#define SO_SNDBUF 7
#define SOL_TCP 6
#define TCP_CONGESTION 13
#define TCP_ESTABLISHED 1
#define TCP_LISTEN 10
#define CC_LEN 16

struct cc_conf {
	char from[CC_LEN];
	char to[CC_LEN];
	__u32 port;
};

ARRAY_MAP(conf, 1, struct cc_conf);

/* 0: matched, 1: changed, 2: errors */
ARRAY_MAP(stats, 3, __u32);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __s32);
} sndbuf SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline bool same_name(const char *a, const char *b)
{
	for (int i = 0; i < CC_LEN; i++) {
		if (a[i] != b[i])
			return false;
		if (!a[i])
			return true;
	}
	return true;
}

SEC("iter/tcp")
int set_tcp_cc(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	char cur[CC_LEN] = {};
	struct tcp_sock *tp;
	struct cc_conf *c;
	struct sock *sk;
	__u32 zero = 0;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	c = bpf_map_lookup_elem(&conf, &zero);
	if (!tp || !c)
		return 0;
	sk = (struct sock *)tp;
	if (sk->__sk_common.skc_state != TCP_LISTEN &&
	    sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	if (sk->__sk_common.skc_num != c->port &&
	    bpf_ntohs(sk->__sk_common.skc_dport) != c->port)
		return 0;
	if (bpf_getsockopt(tp, SOL_TCP, TCP_CONGESTION, cur, sizeof(cur)))
		return 0;
	if (!same_name(cur, c->from))
		return 0;
	count(0);
	if (bpf_setsockopt(tp, SOL_TCP, TCP_CONGESTION, c->to, sizeof(c->to)))
		count(2);
	else
		count(1);
	return 0;
}

SEC("iter/unix")
int set_unix_sndbuf(struct bpf_iter__unix *ctx)
{
	struct unix_sock *unix_sk = ctx->unix_sk;
	__s32 *want, val, got = 0;
	__u64 cookie;
	long err;

	if (!unix_sk)
		return 0;
	cookie = bpf_get_socket_cookie(unix_sk);
	want = bpf_map_lookup_elem(&sndbuf, &cookie);
	if (!want)
		return 0;
	val = *want;
	err = bpf_setsockopt(unix_sk, SOL_SOCKET, SO_SNDBUF, &val, sizeof(val));
	if (!err)
		err = bpf_getsockopt(unix_sk, SOL_SOCKET, SO_SNDBUF, &got, sizeof(got));
	*want = err ? (__s32)err : got;
	return 0;
}
