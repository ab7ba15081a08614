// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * Host mode's view of the kernel: what the TCP stack did with each RST, and
 * which process owns each socket.
 *
 * Every program here is a tracing program (tp_btf, fentry, lsm, iter),
 * which the kernel loads only under a GPL-compatible license; this file is
 * dual-licensed (GPL-2.0 or MIT) for that reason, and the rest of rstwall
 * (Apache-2.0) only talks to it through maps.
 *
 * Kernel events (struct rstwall_host_kevent, rstwall_shared.h) go to the
 * host_events ring buffer:
 *   tp_btf/tcp_receive_reset   a RST accepted: the socket is reset;
 *   tp_btf/tcp_send_reset      a RST sent, with its enum sk_rst_reason
 *                              (host_send_reset_old: kernels before 6.10,
 *                              which have no reason);
 *   tp_btf/kfree_skb           a RST segment discarded, with its enum
 *                              skb_drop_reason and the receiving socket's
 *                              state (host_kfree_skb_old: before 6.12,
 *                              without the receiving socket);
 *   fentry/tcp_send_challenge_ack  an in-window RST answered with an ACK;
 *   tp_btf/inet_sock_set_state a socket closing from SYN_SENT, SYN_RECV,
 *                              ESTABLISHED or CLOSE_WAIT (netstat's
 *                              AttemptFails and EstabResets), and a
 *                              listening socket's owner;
 *   iter/task_file             the owners of sockets that existed before.
 *
 * Socket owners (struct rstwall_host_owner in the host_owners SK_STORAGE)
 * are written in process context only: inet_sock_set_state to SYN_SENT
 * (inside connect()) and to LISTEN (inside listen()), lsm/sock_graft
 * (inside accept(); fexit/inet_csk_accept where BPF LSM is not active).
 * Sockets that existed before rstwall started are reported with the task
 * holding their file by iter/task_file, as events. bpf_get_current_pid_tgid() is never called where the
 * current task could be whatever a softirq interrupted.
 *
 * All of it is filtered to one network namespace, cfg_host_netns.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "rstwall_host_kernel.h"
#include "rstwall_shared.h"

/* The network namespace observed: the inode number of its ns/net file. */
const volatile __u32 RSTWALL_CFG_HOST_NETNS = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RSTWALL_HOST_EVENTS_SIZE);
} RSTWALL_MAP_HOST_EVENTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rstwall_host_owner);
} RSTWALL_MAP_HOST_OWNERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RSTWALL_HOST_TCNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} RSTWALL_MAP_HOST_TRACE_COUNTERS SEC(".maps");

_Static_assert(sizeof(struct rstwall_host_owner) == RSTWALL_HOST_OWNER_SIZE, "owner size");
_Static_assert(sizeof(struct rstwall_host_kevent) == RSTWALL_HOST_KEVENT_SIZE, "kevent size");

/* include/net/tcp_states.h */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1

#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* The ctx of a tracing program is its arguments, 8 bytes each. */
#define ARG(ctx, i) ((void *)(ctx)[i])

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&RSTWALL_MAP_HOST_TRACE_COUNTERS, &index);

	if (value)
		*value += 1;
}

static __always_inline int net_observed(struct net *net)
{
	return net && BPF_CORE_READ(net, ns.inum) == RSTWALL_CFG_HOST_NETNS;
}

static __always_inline int sk_observed(const struct sock *sk)
{
	return sk && net_observed(BPF_CORE_READ(sk, __sk_common.skc_net.net));
}

static __always_inline int is_tcp(const struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, sk_type) == SOCK_STREAM;
}

static __always_inline void v4_mapped(__u8 *a, __be32 addr)
{
	__builtin_memset(a, 0, 10);
	a[10] = 0xff;
	a[11] = 0xff;
	__builtin_memcpy(&a[12], &addr, 4);
}

/* A socket's addresses, ports and state into `e`. */
static __always_inline void sock_tuple(struct rstwall_host_kevent *e, const struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		v4_mapped(e->laddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		v4_mapped(e->raddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	}
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	/* A full socket that closed has released its port (skc_num 0) but
	 * still sends, and is known, by its inet_sport. Time-wait and request
	 * sockets are not inet_socks; their skc_num stays. */
	if (e->state != TCP_TIME_WAIT && e->state != TCP_NEW_SYN_RECV) {
		__u16 sport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));

		if (sport)
			e->lport = sport;
	}
	e->flags |= RSTWALL_HOST_KEV_HAS_SOCKET;
}

/* The socket's cookie: only for a socket the verifier knows as one (not
 * the iterator's, read through bpf_probe_read_kernel). */
static __always_inline void sock_cookie(struct rstwall_host_kevent *e, const struct sock *sk)
{
	e->sk_cookie = bpf_get_socket_cookie((void *)sk);
}

/* The owner recorded for a full socket, if any. Time-wait and request
 * sockets have no storage (the helper returns NULL for them). */
static __always_inline void sock_owner(struct rstwall_host_kevent *e, const struct sock *sk)
{
	struct rstwall_host_owner *o;
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		return;
	o = bpf_sk_storage_get(&RSTWALL_MAP_HOST_OWNERS, (struct sock *)sk, 0, 0);
	if (!o)
		return;
	e->owner = *o;
	e->flags |= RSTWALL_HOST_KEV_HAS_OWNER;
}

/*
 * A segment's addresses, ports, seq, ack and flags, from its skb's network
 * and transport headers, as the receiver: local is its destination.
 * Returns the TCP flags byte, or -1 when it is not TCP or cannot be read.
 */
static __always_inline int skb_tuple(struct rstwall_host_kevent *e, const struct sk_buff *skb,
				     __u32 *ack)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u16 proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u8 tcp[20];

	if (proto == ETH_P_IP) {
		__u8 ip[20];

		if (bpf_probe_read_kernel(ip, sizeof(ip), head + nh) < 0)
			goto unreadable;
		if (ip[9] != IPPROTO_TCP)
			return -1;
		v4_mapped(e->raddr, *(__be32 *)&ip[12]);
		v4_mapped(e->laddr, *(__be32 *)&ip[16]);
	} else if (proto == ETH_P_IPV6) {
		__u8 ip6[40];

		if (bpf_probe_read_kernel(ip6, sizeof(ip6), head + nh) < 0)
			goto unreadable;
		/* The transport header is set past any extension headers by
		 * the time TCP sees the skb; the protocol is checked by the
		 * callers' context (TCP paths) and the RST bit below. */
		__builtin_memcpy(e->raddr, &ip6[8], 16);
		__builtin_memcpy(e->laddr, &ip6[24], 16);
	} else {
		return -1;
	}
	if (bpf_probe_read_kernel(tcp, sizeof(tcp), head + th) < 0)
		goto unreadable;
	e->rport = (tcp[0] << 8) | tcp[1];
	e->lport = (tcp[2] << 8) | tcp[3];
	e->seq = ((__u32)tcp[4] << 24) | ((__u32)tcp[5] << 16) | ((__u32)tcp[6] << 8) | tcp[7];
	*ack = ((__u32)tcp[8] << 24) | ((__u32)tcp[9] << 16) | ((__u32)tcp[10] << 8) | tcp[11];
	return tcp[13];
unreadable:
	count(RSTWALL_HOST_TCNT_READ_FAILED);
	return -1;
}

static __always_inline struct rstwall_host_kevent *event(__u8 kind)
{
	struct rstwall_host_kevent *e;

	e = bpf_ringbuf_reserve(&RSTWALL_MAP_HOST_EVENTS, sizeof(*e), 0);
	if (!e) {
		count(RSTWALL_HOST_TCNT_EVENTS_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	return e;
}

static __always_inline void submit(struct rstwall_host_kevent *e)
{
	bpf_ringbuf_submit(e, 0);
	count(RSTWALL_HOST_TCNT_EVENTS);
}

/* An event about a socket the verifier knows as one: its addresses,
 * ports, state, cookie and owner filled in; the caller submits it. */
static __always_inline struct rstwall_host_kevent *sock_event(__u8 kind, const struct sock *sk)
{
	struct rstwall_host_kevent *e = event(kind);

	if (!e)
		return NULL;
	sock_tuple(e, sk);
	sock_cookie(e, sk);
	sock_owner(e, sk);
	return e;
}

/* The calling process owns `sk` from now on: called only where the kernel
 * runs on behalf of the process (connect, listen, accept). */
static __always_inline void record_current_owner(const struct sock *sk, __u32 how)
{
	struct rstwall_host_owner *o;

	o = bpf_sk_storage_get(&RSTWALL_MAP_HOST_OWNERS, (struct sock *)sk, 0,
			       BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return;
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->how = how;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
	count(RSTWALL_HOST_TCNT_OWNERS);
}

SEC("tp_btf/tcp_receive_reset")
int host_receive_reset(__u64 *ctx)
{
	const struct sock *sk = ARG(ctx, 0);
	struct rstwall_host_kevent *e;

	if (!sk_observed(sk))
		return 0;
	e = sock_event(RSTWALL_HOST_KEV_RECEIVE_RESET, sk);
	if (e)
		submit(e);
	return 0;
}

/*
 * The kernel sends a RST: for the segment `skb` (no socket, or a socket
 * that rejects it) or on its own for `sk` (an abort: close with unread
 * data, linger 0, memory, keepalive timeout...).
 */
static __always_inline void send_reset(const struct sock *sk, const struct sk_buff *skb,
				       __u32 reason, __u8 has_reason)
{
	struct rstwall_host_kevent *e;
	struct net *net = 0;
	__u32 ack = 0;
	int flags;

	if (sk)
		net = BPF_CORE_READ(sk, __sk_common.skc_net.net);
	else if (skb)
		net = BPF_CORE_READ(skb, dev, nd_net.net);
	if (!net_observed(net))
		return;
	e = event(RSTWALL_HOST_KEV_SEND_RESET);
	if (!e)
		return;
	if (has_reason) {
		e->reason = reason;
		e->flags |= RSTWALL_HOST_KEV_HAS_REASON;
	}
	if (sk) {
		sock_tuple(e, sk);
		sock_cookie(e, sk);
		sock_owner(e, sk);
	}
	if (skb) {
		/* The segment answered gives the RST's addresses and seq (its
		 * ack; none when it had no ACK: the RST then has seq 0). */
		flags = skb_tuple(e, skb, &ack);
		e->seq = 0;
		if (flags >= 0 && (flags & TCP_FLAG_ACK)) {
			e->seq = ack;
			e->flags |= RSTWALL_HOST_KEV_HAS_SEQ;
		}
	} else if (sk && e->state != TCP_TIME_WAIT && e->state != TCP_NEW_SYN_RECV) {
		/* An active reset goes out at SND.NXT (tcp_acceptable_seq). */
		e->seq = BPF_CORE_READ((struct tcp_sock *)sk, snd_nxt);
		e->flags |= RSTWALL_HOST_KEV_HAS_SEQ;
	}
	submit(e);
}

SEC("tp_btf/tcp_send_reset")
int host_send_reset(__u64 *ctx)
{
	send_reset(ARG(ctx, 0), ARG(ctx, 1), (__u32)ctx[2], 1);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int host_send_reset_old(__u64 *ctx)
{
	send_reset(ARG(ctx, 0), ARG(ctx, 1), 0, 0);
	return 0;
}

/* A segment discarded: only RSTs are events. */
static __always_inline void rst_dropped(const struct sk_buff *skb, __u32 reason,
					const struct sock *rx_sk)
{
	struct rstwall_host_kevent *e;
	__u16 proto;
	struct net *net;
	__u32 ack = 0;
	int flags;

	proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	if (proto != ETH_P_IP && proto != ETH_P_IPV6)
		return;
	net = BPF_CORE_READ(skb, dev, nd_net.net);
	if (!net && rx_sk)
		net = BPF_CORE_READ(rx_sk, __sk_common.skc_net.net);
	if (!net_observed(net))
		return;
	/* Read the headers before reserving: most drops are not RSTs. */
	{
		struct rstwall_host_kevent probe = {};

		flags = skb_tuple(&probe, skb, &ack);
		if (flags < 0 || !(flags & TCP_FLAG_RST))
			return;
		e = event(RSTWALL_HOST_KEV_RST_DROPPED);
		if (!e)
			return;
		__builtin_memcpy(e->laddr, probe.laddr, sizeof(e->laddr));
		__builtin_memcpy(e->raddr, probe.raddr, sizeof(e->raddr));
		e->lport = probe.lport;
		e->rport = probe.rport;
		e->seq = probe.seq;
	}
	e->flags |= RSTWALL_HOST_KEV_HAS_SEQ | RSTWALL_HOST_KEV_HAS_REASON;
	e->reason = reason;
	if (rx_sk) {
		e->state = BPF_CORE_READ(rx_sk, __sk_common.skc_state);
		e->flags |= RSTWALL_HOST_KEV_HAS_SOCKET;
		sock_cookie(e, rx_sk);
		sock_owner(e, rx_sk);
	}
	submit(e);
}

SEC("tp_btf/kfree_skb")
int host_kfree_skb(__u64 *ctx)
{
	rst_dropped(ARG(ctx, 0), (__u32)ctx[2], ARG(ctx, 3));
	return 0;
}

SEC("tp_btf/kfree_skb")
int host_kfree_skb_old(__u64 *ctx)
{
	rst_dropped(ARG(ctx, 0), (__u32)ctx[2], 0);
	return 0;
}

SEC("fentry/tcp_send_challenge_ack")
int host_challenge_ack(__u64 *ctx)
{
	const struct sock *sk = ARG(ctx, 0);
	struct rstwall_host_kevent *e;

	if (!sk_observed(sk))
		return 0;
	e = sock_event(RSTWALL_HOST_KEV_CHALLENGE_ACK, sk);
	if (e)
		submit(e);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int host_set_state(__u64 *ctx)
{
	const struct sock *sk = ARG(ctx, 0);
	int oldstate = (int)ctx[1], newstate = (int)ctx[2];
	struct rstwall_host_kevent *e;

	if (!sk_observed(sk) || !is_tcp(sk))
		return 0;
	/* Both run in the system call: connect() and listen(). */
	if (newstate == TCP_SYN_SENT) {
		record_current_owner(sk, RSTWALL_HOST_OWNER_CONNECT);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		/* Also an event: where accept() cannot be hooked (no BPF LSM,
		 * no fexit), an accepted socket's owner is its listener's. */
		record_current_owner(sk, RSTWALL_HOST_OWNER_LISTEN);
		e = sock_event(RSTWALL_HOST_KEV_SOCK_OWNER, sk);
		if (!e)
			return 0;
		/* The tracepoint runs before the new state is stored. */
		e->state = TCP_LISTEN;
		submit(e);
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV && oldstate != TCP_ESTABLISHED &&
	    oldstate != TCP_CLOSE_WAIT)
		return 0;
	e = sock_event(RSTWALL_HOST_KEV_SOCK_CLOSED, sk);
	if (!e)
		return 0;
	e->state = oldstate;
	submit(e);
	return 0;
}

/* accept(): the new socket is grafted onto the accepting process's socket. */
SEC("lsm/sock_graft")
int host_sock_graft(__u64 *ctx)
{
	const struct sock *sk = ARG(ctx, 0);

	if (sk_observed(sk) && is_tcp(sk))
		record_current_owner(sk, RSTWALL_HOST_OWNER_ACCEPT);
	return 0;
}

/* The same where BPF LSM is not active: inet_csk_accept() returns the new
 * socket, in the accepting process. */
SEC("fexit/inet_csk_accept")
int host_csk_accept(__u64 *ctx)
{
	const struct sock *sk = ARG(ctx, 2);

	if (sk_observed(sk) && is_tcp(sk))
		record_current_owner(sk, RSTWALL_HOST_OWNER_ACCEPT);
	return 0;
}

/*
 * Sockets that existed before rstwall started: each TCP socket of the
 * namespace with the task holding it, as a SOCK_OWNER event. Not into
 * host_owners: the socket a file leads to is an untrusted pointer here,
 * which bpf_sk_storage_get refuses; userspace keeps these owners by the
 * socket's addresses and ports instead.
 */
SEC("iter/task_file")
int host_existing(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	struct rstwall_host_kevent *e;
	struct socket *sock;
	struct sock *sk;

	if (!task || !file)
		return 0;
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk_observed(sk) || !is_tcp(sk))
		return 0;
	e = event(RSTWALL_HOST_KEV_SOCK_OWNER);
	if (!e)
		return 0;
	sock_tuple(e, sk);
	e->owner.tgid = BPF_CORE_READ(task, tgid);
	e->owner.how = RSTWALL_HOST_OWNER_EXISTING;
	e->owner.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_STR_INTO(&e->owner.comm, task, comm);
	e->flags |= RSTWALL_HOST_KEV_HAS_OWNER;
	submit(e);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
