/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kernel structures host mode's tracing programs read, declared by hand
 * with only the fields they use, for CO-RE: preserve_access_index makes
 * clang record every access as a relocation that libbpf resolves against
 * the running kernel's BTF (/sys/kernel/btf/vmlinux) at load time, so
 * offsets never come from this file.
 *
 * Why not a generated vmlinux.h: it would be generated on the build
 * machine from that machine's kernel (or committed, 100k+ lines), and a
 * build machine without BTF, or bpftool, could not build rstwall at all.
 * These few declarations build anywhere and still load on any kernel whose
 * BTF has the fields; a field that is missing fails the load, which the
 * loader reports as an unavailable capability.
 *
 * Names of the structures are the kernel's (CO-RE matches them by name);
 * nested anonymous unions and structs of the kernel's layout need not be
 * repeated: CO-RE finds a field through them by name.
 */
#ifndef RSTWALL_HOST_KERNEL_H
#define RSTWALL_HOST_KERNEL_H

#include <linux/types.h>

#define RW_CORE __attribute__((preserve_access_index))

struct ns_common {
	unsigned int inum;
} RW_CORE;

struct net {
	struct ns_common ns;
} RW_CORE;

/* possible_net_t: a typedef of an anonymous struct in the kernel. */
struct rw_possible_net {
	struct net *net;
} RW_CORE;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} RW_CORE;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct rw_possible_net skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} RW_CORE;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u16 sk_type;
} RW_CORE;

/* The source port a full socket sends from: still set after close()
 * released the port (skc_num is 0 by then). */
struct inet_sock {
	__be16 inet_sport;
} RW_CORE;

struct tcp_sock {
	__u32 snd_nxt;
} RW_CORE;

struct net_device {
	struct rw_possible_net nd_net;
} RW_CORE;

struct sk_buff {
	struct net_device *dev;
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
} RW_CORE;

struct kernfs_node {
	__u64 id;
} RW_CORE;

struct cgroup {
	struct kernfs_node *kn;
} RW_CORE;

struct css_set {
	struct cgroup *dfl_cgrp;
} RW_CORE;

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
	struct css_set *cgroups;
} RW_CORE;

struct socket {
	struct sock *sk;
} RW_CORE;

struct file;
struct bpf_iter_meta;

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} RW_CORE;

#endif /* RSTWALL_HOST_KERNEL_H */
