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
#define RSTWALL_MAP_GUARD guard
#define RSTWALL_MAP_GUARD_CFG guard_cfg

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
 * rstwall_engine::class::FlagClass, same indices: RST wins over
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
 *   guard_dropped      a RST the guard dropped (see below).
 *
 * Outside both groups: guard_in_window, guard_out_of_window and
 * guard_syn_sent_bad_ack split guard_dropped by RST class; guard_stale
 * counts the segments that marked a guard entry stale.
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
	RSTWALL_CNT_GUARD_DROPPED = 16,
	RSTWALL_CNT_GUARD_IN_WINDOW = 17,
	RSTWALL_CNT_GUARD_OUT_OF_WINDOW = 18,
	RSTWALL_CNT_GUARD_SYN_SENT_BAD_ACK = 19,
	RSTWALL_CNT_GUARD_STALE = 20,
	RSTWALL_CNT_MAX = 21,
};
#define RSTWALL_FLAG_CLASSES 6

/*
 * The RST guard: spoofed RSTs judged and dropped in XDP, without a copy to
 * userspace, against acceptance state the engine exports per flow. Userspace
 * stays the authority: an entry may only make the program drop what the
 * engine drops with the current policy, and every way an entry can go stale
 * errs towards passing the RST to userspace.
 *
 * guard      HASH   key struct rstwall_guard_key -> struct rstwall_guard_entry.
 *                   Userspace inserts an entry (BPF_NOEXIST: it never
 *                   overwrites one, so it cannot undo what the program
 *                   recorded) and deletes it when the engine's flow leaves
 *                   the states the guard judges or is forgotten.
 * guard_cfg  ARRAY  key 0 -> struct rstwall_guard_cfg, written by userspace
 *                   when the guard is switched on or the policy changes.
 *
 * The key is the flow's endpoints in the engine's canonical order (FlowKey):
 * the endpoint whose (address in the shared 16-byte form, port) sorts lower
 * is `lo`, comparing the address bytes first, then the port. Ports are in
 * host byte order. half[0] is about RSTs TO the lo endpoint, half[1] TO hi.
 *
 * A half holds, for RSTs to its endpoint R from its peer S:
 *   peer_end  the sequence after everything S sent (its SND.NXT);
 *   ack       R's latest acknowledgment (RCV.WUP);
 *   win_edge  the right edge of the window R advertised (ack + window <<
 *             wscale), at least ack;
 *   isn, isn_end  SYN_SENT only: R's SYN's sequence and the sequence after
 *             it (SND.UNA, SND.NXT), the acks a refusal may carry being
 *             (isn, isn_end].
 *
 * What the program does with a TCP segment of a flow with an entry:
 *   - any segment with SYN or FIN, from either side, and any non-RST segment
 *     of an entry in SYN_SENT, marks the entry STALE (counted in
 *     guard_stale): the flow's state changes in ways the entry cannot follow,
 *     and a STALE entry never drops;
 *   - any other non-RST segment with a complete 20-byte header advances the
 *     state as the engine does: peer_end of the receiver's half to the
 *     segment's end, and the sender's own ack and win_edge (never
 *     backwards, in sequence space). Each field has one writer, the
 *     direction that carries it (one RX queue), so CPUs never race on one;
 *   - a RST without SYN and FIN in a SYNCED entry: a sequence inside
 *     [min(peer_end, ack) - 1, max(peer_end, ack) + margin] passes (every
 *     sequence the receiving kernel can accept lies there: RCV.NXT, RCV.NXT-1,
 *     a SACK block's edge; `margin` covers what S sent in frames that
 *     passed the program before userspace inserted the entry); any other is
 *     in_window when its end is not before ack and it is not after
 *     max(win_edge, max(peer_end, ack)), else out_of_window;
 *   - a RST without SYN and FIN to the SYN_SENT endpoint: syn_sent_bad_ack
 *     unless it carries ACK with an ack in (isn, isn_end];
 *   - a class in drop_classes is dropped and counted in guard_dropped and
 *     guard_<class>; everything else goes on as before (to userspace).
 *
 * drop_classes is a bit mask by rstwall_engine::RstClass index (in_window 3,
 * out_of_window 4, syn_sent_bad_ack 5), 0 switches the guard off (no map
 * lookups at all). Userspace sets it from the policy: the classes enforce
 * drops, none while an allow list exists (its sources skip the RST policy).
 */
#define RSTWALL_GUARD_MAX_ENTRIES 262144
#define RSTWALL_GUARD_SYNCED 1
#define RSTWALL_GUARD_SYN_SENT 2
#define RSTWALL_GUARD_STALE 3
#define RSTWALL_GUARD_CLASS_IN_WINDOW 3
#define RSTWALL_GUARD_CLASS_OUT_OF_WINDOW 4
#define RSTWALL_GUARD_CLASS_SYN_SENT_BAD_ACK 5

struct rstwall_guard_key {
	__u8 lo_addr[RSTWALL_ADDR_LEN];
	__u8 hi_addr[RSTWALL_ADDR_LEN];
	__u16 lo_port;
	__u16 hi_port;
};
#define RSTWALL_GUARD_KEY_SIZE 36

struct rstwall_guard_half {
	__u32 peer_end;
	__u32 ack;
	__u32 win_edge;
	__u32 isn;
	__u32 isn_end;
	__u8 wscale;
	__u8 reserved[3];
};

struct rstwall_guard_entry {
	struct rstwall_guard_half half[2];
	/* RSTWALL_GUARD_SYNCED, _SYN_SENT or _STALE. */
	__u8 mode;
	/* SYN_SENT: the endpoint in SYN-SENT (0 lo, 1 hi). */
	__u8 syn_sent;
	__u8 reserved[2];
};
#define RSTWALL_GUARD_ENTRY_SIZE 52

struct rstwall_guard_cfg {
	__u32 drop_classes;
	__u32 margin;
};
#define RSTWALL_GUARD_CFG_SIZE 8

/*
 * Parser limits: the same as the userspace parser's (rstwall_engine::wire),
 * which the differential test against the pcap corpus holds both sides to.
 */
#define RSTWALL_MAX_VLAN_TAGS 2
#define RSTWALL_MAX_EXT_HEADERS 8
/* TCP bytes needed to read the flags byte (offset 13). */
#define RSTWALL_TCP_FLAGS_END 14

/*
 * ---------------------------------------------------------------------------
 * Host mode (rstwall_host_tc.bpf.c, rstwall_host_trace.bpf.c; the Rust side
 * is rstwall_bpf::host). Nothing here drops, delays or alters a packet.
 * ---------------------------------------------------------------------------
 *
 * The tc programs, one per link kind and direction: an Ethernet device
 * (loopback included) or an L3 device without a link header (tun,
 * WireGuard). Each passes every packet on (TCX_NEXT) and hands a copy of a
 * TCP segment's headers to userspace.
 */
#define RSTWALL_HOST_ETH_IN host_eth_in
#define RSTWALL_HOST_ETH_OUT host_eth_out
#define RSTWALL_HOST_RAW_IN host_raw_in
#define RSTWALL_HOST_RAW_OUT host_raw_out
#define RSTWALL_MAP_HOST_COUNTERS host_counters
#define RSTWALL_MAP_HOST_RINGS host_rings
#define RSTWALL_CFG_HOST_RINGS cfg_host_rings

/*
 * host_rings  ARRAY_OF_MAPS  key __u32 ring index -> a RINGBUF of header
 *                            records (struct rstwall_host_record). Userspace
 *                            creates cfg_host_rings of them, one per worker;
 *                            a segment goes to ring (symmetric hash of its
 *                            addresses and ports) % cfg_host_rings, so both
 *                            directions of a flow reach the same worker.
 * host_counters PERCPU_ARRAY key enum rstwall_host_counter -> __u64.
 *
 * A record is its fixed part and `caplen` bytes: the frame from its first
 * byte (the link header, or the IP header on an L3 device) to the end of
 * the TCP header (its data offset), never the payload. A header chain
 * longer than RSTWALL_HOST_SNAPLEN is cut there (`caplen` says so). `ts_ns`
 * is bpf_ktime_get_ns() (CLOCK_MONOTONIC); `wire_len` is the whole packet
 * (skb->len: a GSO packet is one record for many segments' bytes).
 */
#define RSTWALL_HOST_MAX_RINGS 64
#define RSTWALL_HOST_SNAPLEN 256
#define RSTWALL_HOST_RECORD_SIZE 24

#define RSTWALL_HOST_DIR_IN 0
#define RSTWALL_HOST_DIR_OUT 1

#define RSTWALL_HOST_LINK_ETHERNET 0
#define RSTWALL_HOST_LINK_RAW 1

struct rstwall_host_record {
	__u64 ts_ns;
	__u32 ifindex;
	__u32 wire_len;
	__u16 caplen;
	__u8 direction;
	__u8 link;
	__u32 reserved;
};

/*
 * host_counters: every packet the tc programs see lands in exactly one of
 * the first eight (the six TCP flag classes, same names and indices as
 * FlagClass and RSTWALL_CNT_*, then non_tcp and malformed, as the XDP
 * program counts them), and every TCP segment in exactly one of records
 * (handed to a ring) and records_lost (its ring was full). So records +
 * records_lost equals the six flag classes' sum, whatever userspace does.
 */
enum rstwall_host_counter {
	RSTWALL_HOST_CNT_SYN = 0,
	RSTWALL_HOST_CNT_SYNACK = 1,
	RSTWALL_HOST_CNT_FIN = 2,
	RSTWALL_HOST_CNT_RST = 3,
	RSTWALL_HOST_CNT_RSTACK = 4,
	RSTWALL_HOST_CNT_OTHER = 5,
	RSTWALL_HOST_CNT_NON_TCP = 6,
	RSTWALL_HOST_CNT_MALFORMED = 7,
	RSTWALL_HOST_CNT_RECORDS = 8,
	RSTWALL_HOST_CNT_RECORDS_LOST = 9,
	RSTWALL_HOST_CNT_MAX = 10,
};

/*
 * The kernel's side (rstwall_host_trace.bpf.c): tracepoints, one fentry,
 * an LSM hook and an iterator, filtered to one network namespace
 * (cfg_host_netns, the inode number of /proc/self/ns/net), write kernel
 * events (struct rstwall_host_kevent) to the host_events RINGBUF, and keep
 * each TCP socket's owner (struct rstwall_host_owner) in host_owners, an
 * SK_STORAGE map written only in process context (connect, listen,
 * accept) or by the iterator over existing sockets (the task it found
 * holding the socket); never from softirq, where the current task is
 * whichever one the interrupt hit.
 */
#define RSTWALL_MAP_HOST_EVENTS host_events
#define RSTWALL_MAP_HOST_OWNERS host_owners
#define RSTWALL_MAP_HOST_TRACE_COUNTERS host_tcounters
#define RSTWALL_CFG_HOST_NETNS cfg_host_netns
#define RSTWALL_HOST_EVENTS_SIZE 1048576

/* How an owner was recorded. */
#define RSTWALL_HOST_OWNER_CONNECT 1
#define RSTWALL_HOST_OWNER_LISTEN 2
#define RSTWALL_HOST_OWNER_ACCEPT 3
#define RSTWALL_HOST_OWNER_EXISTING 4

#define RSTWALL_HOST_COMM_LEN 16

struct rstwall_host_owner {
	__u32 tgid;
	__u32 how;
	__u64 cgroup_id;
	char comm[RSTWALL_HOST_COMM_LEN];
};
#define RSTWALL_HOST_OWNER_SIZE 32

/*
 * Kernel events. The socket's local and remote address and port, in the
 * shared 16-byte address form and host byte order for ports:
 *   RECEIVE_RESET  tcp:tcp_receive_reset, a RST the socket accepted (it is
 *                  reset); `state` is the socket's state before.
 *   SEND_RESET     tcp:tcp_send_reset: the kernel sends a RST; `reason` is
 *                  its enum sk_rst_reason (HAS_REASON). With the segment
 *                  that caused it, the RST's seq is that segment's ack
 *                  (HAS_SEQ when it had ACK set).
 *   RST_DROPPED    skb:kfree_skb of a RST segment: the kernel discarded it;
 *                  `reason` is its enum skb_drop_reason, `seq` its seq,
 *                  `state` the receiving socket's (0: none).
 *   CHALLENGE_ACK  tcp_send_challenge_ack() entered (fentry): the socket
 *                  answers an in-window RST (or SYN) with an ACK, if its
 *                  rate limits let it.
 *   SOCK_CLOSED    sock:inet_sock_set_state to CLOSE from `state`
 *                  (SYN_SENT, SYN_RECV: netstat's failed connection
 *                  attempts; ESTABLISHED, CLOSE_WAIT: its connection
 *                  resets received).
 *   SOCK_OWNER     a socket's owner: a listening socket's at listen(), and
 *                  each socket that existed when the iterator ran (owner
 *                  `how` EXISTING, the task found holding its file).
 */
#define RSTWALL_HOST_KEV_RECEIVE_RESET 1
#define RSTWALL_HOST_KEV_SEND_RESET 2
#define RSTWALL_HOST_KEV_RST_DROPPED 3
#define RSTWALL_HOST_KEV_CHALLENGE_ACK 4
#define RSTWALL_HOST_KEV_SOCK_CLOSED 5
#define RSTWALL_HOST_KEV_SOCK_OWNER 6

#define RSTWALL_HOST_KEV_HAS_OWNER 1
#define RSTWALL_HOST_KEV_HAS_SEQ 2
#define RSTWALL_HOST_KEV_HAS_REASON 4
#define RSTWALL_HOST_KEV_HAS_SOCKET 8

struct rstwall_host_kevent {
	__u64 ts_ns;
	__u8 kind;
	__u8 state;
	__u8 flags;
	__u8 reserved;
	__u32 reason;
	__u8 laddr[RSTWALL_ADDR_LEN];
	__u8 raddr[RSTWALL_ADDR_LEN];
	__u16 lport;
	__u16 rport;
	__u32 seq;
	struct rstwall_host_owner owner;
	/* The socket's cookie (bpf_get_socket_cookie): one socket's events
	 * share it, even after its port was released; 0 when unknown. */
	__u64 sk_cookie;
};
#define RSTWALL_HOST_KEVENT_SIZE 96

/* host_tcounters: events written and lost (host_events full), owners
 * recorded, and kernel reads that failed (a locked-down kernel refuses
 * bpf_probe_read_kernel). */
enum rstwall_host_trace_counter {
	RSTWALL_HOST_TCNT_EVENTS = 0,
	RSTWALL_HOST_TCNT_EVENTS_LOST = 1,
	RSTWALL_HOST_TCNT_OWNERS = 2,
	RSTWALL_HOST_TCNT_READ_FAILED = 3,
	RSTWALL_HOST_TCNT_MAX = 4,
};

#endif /* RSTWALL_SHARED_H */
