// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_sock_destroy (v6.5) from socket iterators (cases/test_sock_destroy.py,
 * cases/test_sock_iter_allns.py, harness/guest/net/allns.py).
 *
 * destroy_tcp / destroy_udp destroy every full socket the iterator visits that matches:
 * its cookie is a key of `targets`, or its local port is cfg[CFG_LPORT], or its remote
 * port is cfg[CFG_RPORT] (0: that filter is off). Each call is logged in `destroyed`:
 * cookie -> {return value, calls}, so user space sees which sockets died, how often the
 * kfunc was called for each, and what it answered. Time-wait and request sockets are
 * never passed to the kfunc (not full sockets: older kernels read struct sock fields
 * they do not have).
 *
 * The other programs are only loaded, never run, to see what the verifier says:
 * refused_tp_btf and refused_tc call the kfunc from program types it is not registered
 * for; sockmap_destroy calls it from an iter/sockmap program (its socket is not locked
 * by the iterator); unix_destroy from iter/unix (no diag_destroy for AF_UNIX).
 *
 * The kfunc is declared strong (`__ksym` without __weak) so that a kernel without it
 * fails the load instead of running a poisoned call.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "array_map.h"

char LICENSE[] SEC("license") = "GPL";

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

#define CFG_LPORT 0
#define CFG_RPORT 1
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12

struct destroyed_val {
	__s32 ret;
	__u32 calls;
};

ARRAY_MAP(cfg, 2, __u32);

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct destroyed_val);
} destroyed SEC(".maps");

static __always_inline __u32 cfg_get(__u32 idx)
{
	__u32 *v = bpf_map_lookup_elem(&cfg, &idx);

	return v ? *v : 0;
}

static __always_inline bool matches(struct sock_common *skc, __u64 cookie)
{
	__u32 lport = cfg_get(CFG_LPORT), rport = cfg_get(CFG_RPORT);

	if (bpf_map_lookup_elem(&targets, &cookie))
		return true;
	if (lport && skc->skc_num == lport)
		return true;
	return rport && bpf_ntohs(skc->skc_dport) == rport;
}

static __always_inline void log_call(__u64 cookie, int ret)
{
	struct destroyed_val *old, val = { .ret = ret, .calls = 1 };

	old = bpf_map_lookup_elem(&destroyed, &cookie);
	if (old) {
		old->ret = ret;
		__sync_fetch_and_add(&old->calls, 1);
		return;
	}
	bpf_map_update_elem(&destroyed, &cookie, &val, BPF_ANY);
}

SEC("iter/tcp")
int destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	__u64 cookie;

	if (!skc || skc->skc_state == TCP_TIME_WAIT || skc->skc_state == TCP_NEW_SYN_RECV)
		return 0;
	cookie = bpf_get_socket_cookie(skc);
	if (matches(skc, cookie))
		log_call(cookie, bpf_sock_destroy(skc));
	return 0;
}

SEC("iter/udp")
int destroy_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	struct sock_common *skc;
	__u64 cookie;

	if (!udp)
		return 0;
	skc = &udp->inet.sk.__sk_common;
	cookie = bpf_get_socket_cookie(udp);
	if (matches(skc, cookie))
		log_call(cookie, bpf_sock_destroy((struct sock_common *)udp));
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(refused_tp_btf, struct sock *sk)
{
	bpf_sock_destroy((struct sock_common *)sk);
	return 0;
}

SEC("tc")
int refused_tc(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (sk)
		bpf_sock_destroy((struct sock_common *)sk);
	return 0;
}

SEC("iter/sockmap")
int sockmap_destroy(struct bpf_iter__sockmap *ctx)
{
	struct sock *sk = ctx->sk;
	__u64 cookie;

	if (!sk)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	if (bpf_map_lookup_elem(&targets, &cookie))
		log_call(cookie, bpf_sock_destroy((struct sock_common *)sk));
	return 0;
}

SEC("iter/unix")
int unix_destroy(struct bpf_iter__unix *ctx)
{
	struct unix_sock *unix_sk = ctx->unix_sk;
	__u64 cookie;

	if (!unix_sk)
		return 0;
	cookie = bpf_get_socket_cookie(unix_sk);
	if (bpf_map_lookup_elem(&targets, &cookie))
		log_call(cookie, bpf_sock_destroy((struct sock_common *)unix_sk));
	return 0;
}
