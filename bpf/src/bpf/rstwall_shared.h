/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one definition of the contract between rstwall's XDP program
 * (rstwall.bpf.c) and its userspace loader (the rstwall-bpf crate).
 *
 * Everything both sides must agree on lives here: map names, key and value
 * layouts, counter indices, load-time settings and the parser's limits. The
 * Rust side mirrors it in src/shared.rs, with compile-time size assertions,
 * and a unit test reads this file as text and compares every number, so a
 * change made on one side only fails `cargo test -p rstwall-bpf`.
 *
 * Keep every constant on one line as `#define NAME value` or, inside an
 * enum, `NAME = value,`: that is what the drift test reads.
 */
#ifndef RSTWALL_SHARED_H
#define RSTWALL_SHARED_H

#include <linux/types.h>

/*
 * Names. The program's function name is how a restarted rstwall recognises
 * the program a crashed one left on a port (the kernel keeps the first 15
 * characters). Map and setting names are ELF symbol names; the C side
 * declares them through these macros, as xdp-tools' common_kern_user.h does.
 */
#define RSTWALL_PROG_NAME rstwall_xdp
#define RSTWALL_MAP_XSKS xsks
#define RSTWALL_MAP_PEER peer
#define RSTWALL_MAP_COUNTERS counters
#define RSTWALL_MAP_DENY deny
#define RSTWALL_MAP_BLOCK block
#define RSTWALL_CFG_ROLE cfg_role

/*
 * Load-time settings: `const volatile` globals in .rodata, written by the
 * loader before the program is loaded, so the verifier sees constants and
 * prunes the branches of the other role.
 *
 * cfg_role (__u32): what the port does with traffic userspace need not see.
 *   INLINE: the port is one half of a bump in the wire. Non-TCP, and TCP
 *           while no AF_XDP socket serves the queue, is forwarded to the
 *           peer port through the `peer` DEVMAP (fail-open).
 *   TAP:    the port receives a copy of the traffic. Whatever userspace does
 *           not take is dropped.
 */
#define RSTWALL_ROLE_INLINE 0
#define RSTWALL_ROLE_TAP 1

/*
 * Maps.
 *
 * xsks      XSKMAP      key __u32 RX queue index -> AF_XDP socket fd (__u32).
 * peer      DEVMAP      key __u32 0 -> the peer port's ifindex (__u32). One
 *                       entry; empty on a tap port.
 * counters  PERCPU_ARRAY key __u32 enum rstwall_counter -> __u64 per CPU.
 * deny      LPM_TRIE    key struct rstwall_lpm_key -> __u8 (1; reserved).
 *                       Static deny list of source prefixes.
 * block     HASH        key struct rstwall_addr -> __u64 expiry: an absolute
 *                       CLOCK_MONOTONIC time in nanoseconds, the clock of
 *                       bpf_ktime_get_ns(). An entry whose expiry is not in
 *                       the future is treated as absent; the program deletes
 *                       it when it meets it.
 *
 * (The object also holds `ip6_walk_scratch`, a kernel-private per-CPU
 * scratch slot that keeps the IPv6 walk cheap to verify; userspace never
 * touches it.)
 *
 * Addresses. One 16-byte form serves both families so that one trie and one
 * hash cover IPv4 and IPv6: an IPv6 address as is, an IPv4 address a.b.c.d
 * as the IPv4-mapped IPv6 address ::ffff:a.b.c.d (RFC 4291 2.5.5.2), in
 * network byte order. An IPv4 prefix a.b.c.d/n is therefore stored with
 * prefixlen 96 + n. Consequence: an IPv6 prefix that covers ::ffff:0:0/96
 * (::/0, say) matches IPv4 sources too, and an IPv6 packet whose source is
 * literally a v4-mapped address (never valid on the wire) matches IPv4
 * entries.
 */
#define RSTWALL_MAX_QUEUES 256
#define RSTWALL_PEER_KEY 0
#define RSTWALL_DENY_MAX_ENTRIES 65536
#define RSTWALL_BLOCK_MAX_ENTRIES 65536
#define RSTWALL_ADDR_LEN 16
#define RSTWALL_V4_MAPPED_PREFIXLEN 96

struct rstwall_addr {
	__u8 addr[RSTWALL_ADDR_LEN];
};
#define RSTWALL_ADDR_SIZE 16

/* The layout BPF_MAP_TYPE_LPM_TRIE requires: a host-order prefix length in
 * bits, then the data it applies to. */
struct rstwall_lpm_key {
	__u32 prefixlen;
	__u8 addr[RSTWALL_ADDR_LEN];
};
#define RSTWALL_LPM_KEY_SIZE 20

/*
 * Counters, summed over CPUs by userspace.
 *
 * Every packet the program sees lands in exactly one CLASS counter and in
 * exactly one VERDICT counter, so each group sums to the packets seen.
 *
 * Class. A TCP segment (a frame the userspace parser, wire::parse, reads down
 * to the TCP flags byte) is counted by its flags in the exclusive classes of
 * rstwall_datapath::class::FlagClass, same indices: RST wins over
 * everything, then SYN (with or without ACK), then FIN, else other. A frame
 * that parses cleanly but carries no TCP (non-IP, other transports, IP
 * fragments after the first) is non_tcp. A frame the parser rejects
 * (truncated headers, bad IHL or lengths, too many VLAN tags or IPv6
 * extension headers, a TCP header cut before its flags byte) is malformed.
 *
 * Verdict. What the program did with it:
 *   to_xsk             TCP redirected to the AF_XDP socket of its RX queue.
 *   forwarded          inline: non-TCP redirected to the peer port.
 *   tap_dropped        tap: non-TCP dropped.
 *   bypassed           TCP whose queue has no socket (daemon dead or
 *                      restarting): inline forwards it to the peer (fail-open),
 *                      tap drops it.
 *   deny_dropped       an IP packet (TCP or not) from a denied source.
 *   block_dropped      an IP packet (TCP or not) from an unexpired blocked
 *                      source.
 *   malformed_dropped  every malformed frame: never shown to userspace as TCP
 *                      and never forwarded, so a segment the userspace parser
 *                      cannot judge cannot slip past it either.
 *   peer_missing       inline: a forward or bypass found no peer in `peer`
 *                      (the peer port went away); dropped.
 */
enum rstwall_counter {
	RSTWALL_CNT_SYN = 0,
	RSTWALL_CNT_SYNACK = 1,
	RSTWALL_CNT_FIN = 2,
	RSTWALL_CNT_RST = 3,
	RSTWALL_CNT_RSTACK = 4,
	RSTWALL_CNT_OTHER = 5,
	RSTWALL_CNT_NON_TCP = 6,
	RSTWALL_CNT_MALFORMED = 7,
	RSTWALL_CNT_TO_XSK = 8,
	RSTWALL_CNT_FORWARDED = 9,
	RSTWALL_CNT_TAP_DROPPED = 10,
	RSTWALL_CNT_BYPASSED = 11,
	RSTWALL_CNT_DENY_DROPPED = 12,
	RSTWALL_CNT_BLOCK_DROPPED = 13,
	RSTWALL_CNT_MALFORMED_DROPPED = 14,
	RSTWALL_CNT_PEER_MISSING = 15,
	RSTWALL_CNT_MAX = 16,
};
#define RSTWALL_FLAG_CLASSES 6

/*
 * Parser limits: the same as the userspace parser's (rstwall_datapath::wire),
 * which the differential test against the pcap corpus holds both sides to.
 */
#define RSTWALL_MAX_VLAN_TAGS 2
#define RSTWALL_MAX_EXT_HEADERS 8
/* TCP bytes needed to read the flags byte (offset 13). */
#define RSTWALL_TCP_FLAGS_END 14

#endif /* RSTWALL_SHARED_H */
