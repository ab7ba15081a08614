// SPDX-License-Identifier: Apache-2.0
/*
 * rstwall's per-port XDP program.
 *
 * One instance per port. For every frame it
 *   1. classifies it exactly as the userspace parser (rstwall_engine::wire)
 *      does: a TCP flag class, non-TCP, or malformed, and counts that;
 *   2. drops malformed frames, and IP packets from a denied or blocked source;
 *   3. steers TCP to the AF_XDP socket of the frame's RX queue, or, when no
 *      socket serves that queue, fails open (inline: forward to the peer port;
 *      tap: drop);
 *   4. forwards non-TCP to the peer port (inline) or drops it (tap).
 *
 * Between 2 and 3, the RST guard (guard.h below; the contract is in
 * rstwall_shared.h) drops spoofed RSTs of flows userspace put in the `guard`
 * map, and keeps those entries' sequence state moving with the traffic.
 *
 * The contract with userspace (map names and layouts, counter indices,
 * settings) is rstwall_shared.h.
 *
 * Parsing follows xdp-tools' parsing_helpers.h: __always_inline helpers take
 * a cursor and data_end, return the next protocol or -1, and every loop has a
 * constant bound, so the verifier sees straight-line code.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rstwall_kern.h"

/* Load-time setting (see rstwall_shared.h); the loader writes it through the
 * skeleton's rodata before loading. */
const volatile __u32 RSTWALL_CFG_ROLE = RSTWALL_ROLE_INLINE;

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, RSTWALL_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} RSTWALL_MAP_XSKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} RSTWALL_MAP_PEER SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RSTWALL_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} RSTWALL_MAP_COUNTERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RSTWALL_DENY_MAX_ENTRIES);
	/* The kernel requires it for LPM tries. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rstwall_lpm_key);
	__type(value, __u8);
} RSTWALL_MAP_DENY SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RSTWALL_BLOCK_MAX_ENTRIES);
	__type(key, struct rstwall_addr);
	__type(value, __u64);
} RSTWALL_MAP_BLOCK SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RSTWALL_GUARD_MAX_ENTRIES);
	/* Entries come and go with flows; memory is taken per entry, not for
	 * the whole table up front. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rstwall_guard_key);
	__type(value, struct rstwall_guard_entry);
} RSTWALL_MAP_GUARD SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rstwall_guard_cfg);
} RSTWALL_MAP_GUARD_CFG SEC(".maps");

/* Kernel-only scratch for the IPv6 walk (see widen). Per CPU: XDP runs with
 * BH disabled, so nothing else touches it between the store and the load.
 * (On PREEMPT_RT another program could; the worst outcome would be one
 * misparsed frame, never an unsafe access: the verifier checks every use.) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} ip6_walk_scratch SEC(".maps");

/* Layouts the shared header promises userspace, checked where they are
 * used. */
_Static_assert(sizeof(struct rstwall_addr) == RSTWALL_ADDR_SIZE, "rstwall_addr size");
_Static_assert(sizeof(struct rstwall_lpm_key) == RSTWALL_LPM_KEY_SIZE, "rstwall_lpm_key size");
_Static_assert(RSTWALL_CNT_OTHER + 1 == RSTWALL_FLAG_CLASSES, "flag classes come first");
_Static_assert(sizeof(struct rstwall_guard_key) == RSTWALL_GUARD_KEY_SIZE, "guard key size");
_Static_assert(sizeof(struct rstwall_guard_entry) == RSTWALL_GUARD_ENTRY_SIZE, "guard entry size");
_Static_assert(sizeof(struct rstwall_guard_cfg) == RSTWALL_GUARD_CFG_SIZE, "guard cfg size");

/* Not an IP protocol number: what the IP parsers return for a fragment other
 * than the first, whose transport header is in another packet. */
#define L4_LATER_FRAGMENT 0x100

/* Transport room when the IP header announces no length (0): only data_end
 * bounds the transport header. */
#define L4_ROOM_CAPTURED 0xffffffff

/*
 * Whether `need` bytes at `off` run past the datagram's announced length
 * (`limit`, 0 = unknown). Written as a signed difference rather than
 * `off + need > limit`, which would teach the verifier per-header-kind
 * bounds on `limit` and so keep it from pruning (see widen): 15k instead of
 * 24k verified instructions for the whole program.
 */
static __always_inline int beyond_limit(__u32 limit, __u32 off, __u32 need)
{
	__s64 room = (__s64)limit - (__s64)off - (__s64)need;

	return limit && room < 0;
}

/* Bound on an offset into the IPv6 chain, for the verifier: nine headers of
 * at most 2048 bytes each stay far below it. */
#define IP6_OFF_MAX 0x7fff

/*
 * The verifier tracks every value as precisely as it can: after a few
 * extension headers the offset is "48" on one path, "a multiple of 8 from
 * 56 to 2088" on another, "a multiple of 4 ..." on a third. States that
 * differ are never pruned, so the unrolled walk would be verified once per
 * combination of header kinds. Passing the offset through memory the
 * verifier does not track (a map value; volatile, so clang keeps the round
 * trip) leaves every path with the same "0..IP6_OFF_MAX". Returns -1 when
 * the offset is beyond that (it cannot be) or the slot is missing (never).
 */
static __always_inline int widen(__u32 off)
{
	__u32 zero = 0;
	volatile __u32 *slot = bpf_map_lookup_elem(&ip6_walk_scratch, &zero);

	if (!slot)
		return -1;
	*slot = off;
	off = *slot;
	if (off > IP6_OFF_MAX)
		return -1;
	return off;
}

struct hdr_cursor {
	void *pos;
};

struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* What the parse found out about a frame that is not malformed. */
struct frame {
	/* Source and destination in the shared 16-byte form, once an IP header
	 * was read. */
	struct rstwall_addr src;
	struct rstwall_addr dst;
	__u8 has_src;
	__u8 tcp_flags;
	/* FRAME_TCP: the TCP header, and the transport bytes the IP header
	 * announces (L4_ROOM_CAPTURED: as many as were captured). */
	__u8 *tcp;
	__u32 l4_room;
};

enum frame_kind {
	FRAME_TCP,
	FRAME_NON_TCP,
	FRAME_MALFORMED,
};

static __always_inline void count(__u32 index)
{
	count_in(&RSTWALL_MAP_COUNTERS, index);
}

/* Ethernet and up to RSTWALL_MAX_VLAN_TAGS tags: the innermost ethertype
 * (host order), or -1 when truncated or tagged more deeply. */
static __always_inline int parse_ethhdr(struct hdr_cursor *c, void *end)
{
	struct ethhdr *eth = c->pos;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	c->pos = eth + 1;
	proto = bpf_ntohs(eth->h_proto);

#pragma unroll
	for (int i = 0; i < RSTWALL_MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag = c->pos;

		if (!is_vlan(proto))
			return proto;
		if ((void *)(tag + 1) > end)
			return -1;
		proto = bpf_ntohs(tag->encapsulated_proto);
		c->pos = tag + 1;
	}
	return is_vlan(proto) ? -1 : proto;
}

static __always_inline void v4_mapped(struct rstwall_addr *a, __be32 saddr)
{
	__builtin_memset(a->addr, 0, 10);
	a->addr[10] = 0xff;
	a->addr[11] = 0xff;
	__builtin_memcpy(&a->addr[12], &saddr, 4);
}

/*
 * IPv4, as wire::ipv4: the transport protocol, L4_LATER_FRAGMENT, or -1 for
 * a header shorter than 20 bytes, a bad version or IHL, an IHL past the
 * captured data, or a total length below the IHL. Total length 0 (what
 * TSO leaves in captures) means "what was captured".
 *
 * Leaves the cursor at the transport header and *l4_room at the transport
 * bytes the total length allows (L4_ROOM_CAPTURED when it is 0).
 */
static __always_inline int parse_iphdr(struct hdr_cursor *c, void *end, struct frame *f,
				       __u32 *l4_room)
{
	struct iphdr *ip = c->pos;
	__u32 hdr_len, total;
	__u8 ver_ihl;

	if ((void *)(ip + 1) > end)
		return -1;
	ver_ihl = *(__u8 *)ip;
	if (ver_ihl >> 4 != 4)
		return -1;
	hdr_len = (ver_ihl & 0x0f) * 4;
	if (hdr_len < sizeof(*ip))
		return -1;
	if ((void *)ip + hdr_len > end)
		return -1;
	total = bpf_ntohs(ip->tot_len);
	if (total != 0 && total < hdr_len)
		return -1;

	v4_mapped(&f->src, ip->saddr);
	v4_mapped(&f->dst, ip->daddr);
	f->has_src = 1;
	*l4_room = total ? total - hdr_len : L4_ROOM_CAPTURED;
	c->pos = (void *)ip + hdr_len;

	if (ip->protocol != IPPROTO_TCP)
		return ip->protocol;
	if (ip->frag_off & bpf_htons(0x1fff))
		return L4_LATER_FRAGMENT;
	return IPPROTO_TCP;
}

/*
 * IPv6, as wire::ipv6: walk at most RSTWALL_MAX_EXT_HEADERS extension
 * headers. Returns the protocol after them, L4_LATER_FRAGMENT, or -1 for a
 * header or extension header running past the data (the payload length
 * trims link padding; 0, a jumbogram or BIG TCP capture, means "what was
 * captured") or a longer chain.
 *
 * Offsets count from the start of the IPv6 header; *l4_room is as for IPv4.
 */
static __always_inline int parse_ip6hdr(struct hdr_cursor *c, void *end, struct frame *f,
					__u32 *l4_room)
{
	struct ipv6hdr *ip6 = c->pos;
	__u32 off = sizeof(*ip6), limit;
	int widened;
	__u8 next;

	if ((void *)(ip6 + 1) > end)
		return -1;
	if (*(__u8 *)ip6 >> 4 != 6)
		return -1;
	__builtin_memcpy(f->src.addr, &ip6->saddr, RSTWALL_ADDR_LEN);
	__builtin_memcpy(f->dst.addr, &ip6->daddr, RSTWALL_ADDR_LEN);
	f->has_src = 1;

	/* limit: end of the datagram by its payload length, 0 = data_end only. */
	limit = bpf_ntohs(ip6->payload_len);
	if (limit)
		limit += sizeof(*ip6);
	next = ip6->nexthdr;

	/* Extension headers, then one more round that must find the transport. */
#pragma unroll
	for (int i = 0; i <= RSTWALL_MAX_EXT_HEADERS; i++) {
		__u8 *hdr = (__u8 *)ip6 + off;
		__u32 hdr_len;

		switch (next) {
		CASE_EXT_HDR_LEN_8:
			if ((void *)(hdr + 2) > end || beyond_limit(limit, off, 2))
				return -1;
			hdr_len = ((__u32)hdr[1] + 1) * 8;
			break;
		case NEXTHDR_AUTH:
			if ((void *)(hdr + 2) > end || beyond_limit(limit, off, 2))
				return -1;
			hdr_len = ((__u32)hdr[1] + 2) * 4;
			break;
		case NEXTHDR_FRAGMENT:
			if ((void *)(hdr + 8) > end || beyond_limit(limit, off, 8))
				return -1;
			/* Fragment offset: the upper 13 bits of bytes 2-3. */
			if (((hdr[2] << 8) | hdr[3]) >> 3)
				return L4_LATER_FRAGMENT;
			hdr_len = 8;
			break;
		default:
			/* TCP or another transport: the walk ends here. */
			*l4_room = limit ? limit - off : L4_ROOM_CAPTURED;
			c->pos = hdr;
			return next;
		}
		next = hdr[0];
		widened = widen(off + hdr_len);
		if (widened < 0)
			return -1;
		off = widened;
		if ((void *)ip6 + off > end || beyond_limit(limit, off, 0))
			return -1;
	}
	return -1;
}

/* The TCP flags byte, or -1 when fewer than RSTWALL_TCP_FLAGS_END bytes of
 * TCP are there (captured, and within the IP length) or the data offset is
 * below 5 words. */
static __always_inline int parse_tcp_flags(struct hdr_cursor *c, void *end, __u32 l4_room)
{
	__u8 *tcp = c->pos;

	if ((void *)(tcp + RSTWALL_TCP_FLAGS_END) > end || l4_room < RSTWALL_TCP_FLAGS_END)
		return -1;
	if (tcp[12] >> 4 < 5)
		return -1;
	return tcp[13];
}

static __always_inline enum frame_kind parse_frame(void *data, void *end, struct frame *f)
{
	struct hdr_cursor c = { .pos = data };
	__u32 l4_room = L4_ROOM_CAPTURED;
	int proto, flags;

	proto = parse_ethhdr(&c, end);
	if (proto < 0)
		return FRAME_MALFORMED;
	if (proto == ETH_P_IP)
		proto = parse_iphdr(&c, end, f, &l4_room);
	else if (proto == ETH_P_IPV6)
		proto = parse_ip6hdr(&c, end, f, &l4_room);
	else
		return FRAME_NON_TCP;

	if (proto < 0)
		return FRAME_MALFORMED;
	if (proto != IPPROTO_TCP)
		return FRAME_NON_TCP;
	flags = parse_tcp_flags(&c, end, l4_room);
	if (flags < 0)
		return FRAME_MALFORMED;
	f->tcp_flags = flags;
	f->tcp = c.pos;
	f->l4_room = l4_room;
	return FRAME_TCP;
}

static __always_inline int is_denied(struct rstwall_addr *src)
{
	struct rstwall_lpm_key key = { .prefixlen = RSTWALL_ADDR_LEN * 8 };

	__builtin_memcpy(key.addr, src->addr, RSTWALL_ADDR_LEN);
	return bpf_map_lookup_elem(&RSTWALL_MAP_DENY, &key) != NULL;
}

static __always_inline int is_blocked(struct rstwall_addr *src)
{
	__u64 *expiry = bpf_map_lookup_elem(&RSTWALL_MAP_BLOCK, src);

	if (!expiry)
		return 0;
	if (bpf_ktime_get_ns() < *expiry)
		return 1;
	/* Expired: forget it, so the table does not fill with stale entries.
	 * Should userspace renew this address between the lookup and this
	 * delete, the renewal is lost; it was unblocked by then anyway. */
	bpf_map_delete_elem(&RSTWALL_MAP_BLOCK, src);
	return 0;
}

#include "rstwall_guard.h"

/* Inline: hand the frame to the peer port, counted under `verdict`. */
static __always_inline int to_peer(__u32 verdict)
{
	long action = bpf_redirect_map(&RSTWALL_MAP_PEER, RSTWALL_PEER_KEY, 0);

	if (action == XDP_REDIRECT) {
		count(verdict);
		return XDP_REDIRECT;
	}
	count(RSTWALL_CNT_PEER_MISSING);
	return XDP_DROP;
}

SEC("xdp")
int RSTWALL_PROG_NAME(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct frame f = {};
	enum frame_kind kind;

	kind = parse_frame(data, end, &f);
	switch (kind) {
	case FRAME_TCP:
		count(flag_class(f.tcp_flags));
		break;
	case FRAME_NON_TCP:
		count(RSTWALL_CNT_NON_TCP);
		break;
	default:
		/* Dropped on both roles: userspace never judges what it cannot
		 * parse, so forwarding it would let a segment built to defeat the
		 * parser (a tenth extension header, a third VLAN tag) slip past. */
		count(RSTWALL_CNT_MALFORMED);
		count(RSTWALL_CNT_MALFORMED_DROPPED);
		return XDP_DROP;
	}

	/* Deny and block cover every IP packet from the source, not only TCP:
	 * a source we refuse gets nothing through, and refusing it here costs
	 * userspace nothing. */
	if (f.has_src) {
		if (is_denied(&f.src)) {
			count(RSTWALL_CNT_DENY_DROPPED);
			return XDP_DROP;
		}
		if (is_blocked(&f.src)) {
			count(RSTWALL_CNT_BLOCK_DROPPED);
			return XDP_DROP;
		}
	}

	if (kind == FRAME_TCP) {
		__u32 queue = ctx->rx_queue_index;
		int dropped = rst_guard(&f, end);

		if (dropped >= 0) {
			count(RSTWALL_CNT_GUARD_DROPPED);
			count(guard_counter(dropped));
			return XDP_DROP;
		}

		/* Only a queue with a socket: redirecting to an empty slot would
		 * lose the frame, and it must fail open instead. */
		if (bpf_map_lookup_elem(&RSTWALL_MAP_XSKS, &queue)) {
			long action = bpf_redirect_map(&RSTWALL_MAP_XSKS, queue, 0);

			if (action == XDP_REDIRECT) {
				count(RSTWALL_CNT_TO_XSK);
				return XDP_REDIRECT;
			}
		}
		if (RSTWALL_CFG_ROLE == RSTWALL_ROLE_TAP) {
			count(RSTWALL_CNT_BYPASSED);
			return XDP_DROP;
		}
		return to_peer(RSTWALL_CNT_BYPASSED);
	}

	if (RSTWALL_CFG_ROLE == RSTWALL_ROLE_TAP) {
		count(RSTWALL_CNT_TAP_DROPPED);
		return XDP_DROP;
	}
	return to_peer(RSTWALL_CNT_FORWARDED);
}

/* Uses no GPL-only helper, so the project's own license applies. */
char LICENSE[] SEC("license") = "Apache-2.0";
