// SPDX-License-Identifier: Apache-2.0
/*
 * Host mode's tc programs: observe every packet of an interface, alter none.
 *
 * Attached (tcx, or clsact where tcx is missing) on ingress and egress of
 * each interface of the network namespace, each program
 *   1. classifies the packet exactly as the XDP program and the userspace
 *      parser do (a TCP flag class, non-TCP or malformed) and counts that
 *      per CPU, whatever happens next;
 *   2. for TCP, copies its headers (link header if any, IP, TCP up to its
 *      data offset: never payload) with the interface, the direction and a
 *      timestamp into the ring buffer of the segment's flow, or counts the
 *      record lost when that ring is full;
 *   3. returns TCX_NEXT (TC_ACT_UNSPEC): the packet goes on exactly as it
 *      came, to the next program or the stack.
 *
 * Four programs, one body: Ethernet-framed devices (loopback included) and
 * L3 devices without a link header (tun, WireGuard), each direction. The
 * loader picks one per interface and hook, so the body sees its link kind
 * and direction as constants.
 *
 * The packet is read with bpf_skb_load_bytes (works on non-linear skbs and
 * never changes the skb, unlike bpf_skb_pull_data) into a per-CPU scratch
 * record; the parse reads that copy byte by byte through masked offsets,
 * which keeps every access provably inside it.
 *
 * The contract with userspace is rstwall_shared.h.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "rstwall_kern.h"

/* Rings in use (load-time, see rstwall_shared.h). */
const volatile __u32 RSTWALL_CFG_HOST_RINGS = 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RSTWALL_HOST_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} RSTWALL_MAP_HOST_COUNTERS SEC(".maps");

struct host_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* The template's size; userspace creates the rings with its own. */
	__uint(max_entries, 1 << 22);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, RSTWALL_HOST_MAX_RINGS);
	__type(key, __u32);
	__array(values, struct host_ring);
} RSTWALL_MAP_HOST_RINGS SEC(".maps");

/* A record being built: the fixed part, then the bytes read from the skb.
 * Per CPU: tc runs with bottom halves disabled, so nothing else runs this
 * program on the CPU between the read and the output. */
struct host_scratch {
	struct rstwall_host_record rec;
	__u8 data[RSTWALL_HOST_SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct host_scratch);
} host_scratch SEC(".maps");

_Static_assert(sizeof(struct rstwall_host_record) == RSTWALL_HOST_RECORD_SIZE, "record size");
/* flag_class() gives the XDP program's counter indices: the same here. */
_Static_assert(RSTWALL_HOST_CNT_SYN == RSTWALL_CNT_SYN && RSTWALL_HOST_CNT_SYNACK == RSTWALL_CNT_SYNACK &&
		       RSTWALL_HOST_CNT_FIN == RSTWALL_CNT_FIN && RSTWALL_HOST_CNT_RST == RSTWALL_CNT_RST &&
		       RSTWALL_HOST_CNT_RSTACK == RSTWALL_CNT_RSTACK &&
		       RSTWALL_HOST_CNT_OTHER == RSTWALL_CNT_OTHER,
	       "flag classes come first, in the same order");
_Static_assert((RSTWALL_HOST_SNAPLEN & (RSTWALL_HOST_SNAPLEN - 1)) == 0, "snaplen is a power of two");

#define SNAP_MASK (RSTWALL_HOST_SNAPLEN - 1)

enum frame_kind {
	FRAME_TCP,
	FRAME_NON_TCP,
	FRAME_MALFORMED,
};

/* What the parse found in a TCP segment. */
struct seg {
	__u32 l3;      /* offset of the IP header */
	__u32 tcp;     /* offset of the TCP header */
	__u32 hdr_end; /* end of the TCP header by its data offset */
	__u8 flags;
	__u8 v6;
};

static __always_inline void count(__u32 index)
{
	count_in(&RSTWALL_MAP_HOST_COUNTERS, index);
}

/* Byte `i` of the copy; `i` below `len` is the caller's check, the mask
 * is the verifier's. */
static __always_inline __u32 byte_at(const __u8 *d, __u32 i)
{
	return d[i & SNAP_MASK];
}

static __always_inline __u32 be16_at(const __u8 *d, __u32 i)
{
	return (byte_at(d, i) << 8) | byte_at(d, i + 1);
}

static __always_inline __u32 be32_at(const __u8 *d, __u32 i)
{
	return (be16_at(d, i) << 16) | be16_at(d, i + 2);
}

/*
 * The frame in `d` (`len` bytes were copied, `wire` is its full length) as
 * the XDP program's parse_frame sees it, with the same limits; for TCP,
 * where its headers are. A header chain running past the copy (longer than
 * RSTWALL_HOST_SNAPLEN) is judged on what was copied.
 */
static __always_inline enum frame_kind parse(const __u8 *d, __u32 len, __u32 wire, int ethernet,
					     __u32 l3_proto, struct seg *s)
{
	__u32 off = 0, proto, l4_room = 0xffffffff, limit, hdr_len;
	__u8 next;

	if (ethernet) {
		if (len < ETH_HLEN)
			return FRAME_MALFORMED;
		proto = be16_at(d, 12);
		off = ETH_HLEN;
#pragma unroll
		for (int i = 0; i < RSTWALL_MAX_VLAN_TAGS; i++) {
			if (!is_vlan(proto))
				break;
			if (off + 4 > len)
				return FRAME_MALFORMED;
			proto = be16_at(d, off + 2);
			off += 4;
		}
		if (is_vlan(proto))
			return FRAME_MALFORMED;
	} else {
		/* An L3 device: skb->protocol says which IP, the version
		 * nibble must agree. */
		proto = l3_proto;
	}
	s->l3 = off;

	if (proto == ETH_P_IP) {
		__u32 total, ver_ihl;

		if (off + 20 > len)
			return FRAME_MALFORMED;
		ver_ihl = byte_at(d, off);
		if (ver_ihl >> 4 != 4)
			return FRAME_MALFORMED;
		hdr_len = (ver_ihl & 0x0f) * 4;
		if (hdr_len < 20 || off + hdr_len > len)
			return FRAME_MALFORMED;
		total = be16_at(d, off + 2);
		if (total != 0 && total < hdr_len)
			return FRAME_MALFORMED;
		if (total)
			l4_room = total - hdr_len;
		if (byte_at(d, off + 9) != IPPROTO_TCP)
			return FRAME_NON_TCP;
		/* A later fragment carries no TCP header. */
		if (be16_at(d, off + 6) & 0x1fff)
			return FRAME_NON_TCP;
		off += hdr_len;
		s->v6 = 0;
	} else if (proto == ETH_P_IPV6) {
		__u32 ip6 = off;

		if (off + 40 > len)
			return FRAME_MALFORMED;
		if (byte_at(d, off) >> 4 != 6)
			return FRAME_MALFORMED;
		limit = be16_at(d, off + 4);
		next = byte_at(d, off + 6);
		off += 40;
		s->v6 = 1;
#pragma unroll
		for (int i = 0; i <= RSTWALL_MAX_EXT_HEADERS; i++) {
			switch (next) {
			CASE_EXT_HDR_LEN_8:
				if (off + 2 > len)
					return FRAME_MALFORMED;
				hdr_len = (byte_at(d, off + 1) + 1) * 8;
				break;
			case NEXTHDR_AUTH:
				if (off + 2 > len)
					return FRAME_MALFORMED;
				hdr_len = (byte_at(d, off + 1) + 2) * 4;
				break;
			case NEXTHDR_FRAGMENT:
				if (off + 8 > len)
					return FRAME_MALFORMED;
				if (be16_at(d, off + 2) >> 3)
					return FRAME_NON_TCP;
				hdr_len = 8;
				break;
			default:
				goto transport;
			}
			if (limit && off - ip6 + hdr_len > limit + 40)
				return FRAME_MALFORMED;
			next = byte_at(d, off);
			off += hdr_len;
			/* Past the copy: a chain longer than the snap length
			 * cannot be judged here. */
			if (off > len)
				return FRAME_MALFORMED;
		}
		return FRAME_MALFORMED;
transport:
		if (limit)
			l4_room = limit + 40 - (off - ip6);
		if (next != IPPROTO_TCP)
			return FRAME_NON_TCP;
	} else {
		return FRAME_NON_TCP;
	}

	/* The flags byte within the copy and the IP length; a data offset of
	 * at least five words. */
	if (off + RSTWALL_TCP_FLAGS_END > len || l4_room < RSTWALL_TCP_FLAGS_END)
		return FRAME_MALFORMED;
	if (byte_at(d, off + 12) >> 4 < 5)
		return FRAME_MALFORMED;
	s->tcp = off;
	s->flags = byte_at(d, off + 13);
	s->hdr_end = off + (byte_at(d, off + 12) >> 4) * 4;
	if (s->hdr_end > wire)
		s->hdr_end = wire;
	return FRAME_TCP;
}

/* The ring of a segment's flow: the same for both directions (XOR of the
 * two addresses, XOR of the two ports), spread by a multiplicative hash. */
static __always_inline __u32 ring_of(const __u8 *d, const struct seg *s)
{
	__u32 h = 0;

	if (RSTWALL_CFG_HOST_RINGS <= 1)
		return 0;
	if (s->v6) {
#pragma unroll
		for (int i = 0; i < 16; i += 4)
			h ^= be32_at(d, s->l3 + 8 + i) ^ be32_at(d, s->l3 + 24 + i);
	} else {
		h = be32_at(d, s->l3 + 12) ^ be32_at(d, s->l3 + 16);
	}
	h ^= be16_at(d, s->tcp) ^ be16_at(d, s->tcp + 2);
	h *= 0x9e3779b1;
	return (h >> 16) % RSTWALL_CFG_HOST_RINGS;
}

static __always_inline int observe(struct __sk_buff *skb, int ethernet, __u8 direction)
{
	__u32 zero = 0, wire = skb->len, ring;
	/* 64-bit: a 32-bit copy would be zero-extended into another register
	 * after the bounds check, and the verifier would lose the bounds. */
	__u64 len;
	struct host_scratch *scratch;
	struct seg s = {};
	void *rb;

	scratch = bpf_map_lookup_elem(&host_scratch, &zero);
	if (!scratch)
		return TC_ACT_UNSPEC;
	len = wire < RSTWALL_HOST_SNAPLEN ? wire : RSTWALL_HOST_SNAPLEN;
	/* Checked again on the register the call takes: clang may copy it
	 * after the first check, and the verifier must see 1..SNAPLEN. */
	barrier_var(len);
	if (len < 1 || len > RSTWALL_HOST_SNAPLEN ||
	    bpf_skb_load_bytes(skb, 0, scratch->data, len) < 0) {
		count(RSTWALL_HOST_CNT_MALFORMED);
		return TC_ACT_UNSPEC;
	}

	switch (parse(scratch->data, len, wire, ethernet, bpf_ntohs(skb->protocol), &s)) {
	case FRAME_TCP:
		break;
	case FRAME_NON_TCP:
		count(RSTWALL_HOST_CNT_NON_TCP);
		return TC_ACT_UNSPEC;
	default:
		count(RSTWALL_HOST_CNT_MALFORMED);
		return TC_ACT_UNSPEC;
	}
	count(flag_class(s.flags));

	scratch->rec.ts_ns = bpf_ktime_get_ns();
	scratch->rec.ifindex = skb->ifindex;
	scratch->rec.wire_len = wire;
	scratch->rec.caplen = s.hdr_end < len ? s.hdr_end : len;
	scratch->rec.direction = direction;
	scratch->rec.link = ethernet ? RSTWALL_HOST_LINK_ETHERNET : RSTWALL_HOST_LINK_RAW;
	scratch->rec.reserved = 0;

	ring = ring_of(scratch->data, &s);
	rb = bpf_map_lookup_elem(&RSTWALL_MAP_HOST_RINGS, &ring);
	if (rb) {
		__u32 size = sizeof(scratch->rec) + (scratch->rec.caplen & (RSTWALL_HOST_SNAPLEN * 2 - 1));

		if (size > sizeof(*scratch))
			size = sizeof(*scratch);
		/* No wakeup per record: the worker reads a batch every few
		 * milliseconds, which costs the traffic far less than a wakeup
		 * per packet; only a ring a quarter full wakes it at once. */
		__u64 wake = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA) >
					     bpf_ringbuf_query(rb, BPF_RB_RING_SIZE) / 4 ?
				     BPF_RB_FORCE_WAKEUP :
				     BPF_RB_NO_WAKEUP;

		if (bpf_ringbuf_output(rb, scratch, size, wake) == 0) {
			count(RSTWALL_HOST_CNT_RECORDS);
			return TC_ACT_UNSPEC;
		}
	}
	count(RSTWALL_HOST_CNT_RECORDS_LOST);
	return TC_ACT_UNSPEC;
}

/* The four programs: observe() with its link kind (1: Ethernet header) and
 * direction as constants. */
#define OBSERVER(name, eth, dir)                                               \
	SEC("tc") int name(struct __sk_buff *skb)                              \
	{                                                                      \
		return observe(skb, eth, dir);                                 \
	}

OBSERVER(RSTWALL_HOST_ETH_IN, 1, RSTWALL_HOST_DIR_IN)
OBSERVER(RSTWALL_HOST_ETH_OUT, 1, RSTWALL_HOST_DIR_OUT)
OBSERVER(RSTWALL_HOST_RAW_IN, 0, RSTWALL_HOST_DIR_IN)
OBSERVER(RSTWALL_HOST_RAW_OUT, 0, RSTWALL_HOST_DIR_OUT)

/* Uses no GPL-only helper, so the project's own license applies. */
char LICENSE[] SEC("license") = "Apache-2.0";
