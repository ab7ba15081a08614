/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RST guard of rstwall.bpf.c: a RST judged against the acceptance state
 * userspace exported for its flow (the `guard` map), and that state kept
 * moving with the flow's other segments. The contract, and why each rule
 * errs towards passing, is in rstwall_shared.h ("The RST guard").
 *
 * Included by rstwall.bpf.c after its maps, struct frame and count(); kept
 * apart because it is the one part of the program that judges a RST rather
 * than a frame.
 */
#ifndef RSTWALL_GUARD_H
#define RSTWALL_GUARD_H

/* Sequence-space comparisons (RFC 793 modular arithmetic), as
 * rstwall_engine::seq. */
static __always_inline int seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline int seq_after(__u32 a, __u32 b)
{
	return seq_before(b, a);
}

static __always_inline __u32 seq_max(__u32 a, __u32 b)
{
	return seq_before(a, b) ? b : a;
}

static __always_inline __u32 seq_min(__u32 a, __u32 b)
{
	return seq_before(a, b) ? a : b;
}

static __always_inline __u32 load_be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

static __always_inline __u16 load_be16(const __u8 *p)
{
	return ((__u16)p[0] << 8) | p[1];
}

/* Whether (a, a_port) sorts after (b, b_port): the order of FlowKey, which
 * names the lower endpoint `lo`. */
static __always_inline int endpoint_after(const __u8 *a, __u16 a_port, const __u8 *b,
					  __u16 b_port)
{
#pragma unroll
	for (int i = 0; i < RSTWALL_ADDR_LEN; i++) {
		if (a[i] != b[i])
			return a[i] > b[i];
	}
	return a_port > b_port;
}

/* The counter of a class the guard drops. */
static __always_inline __u32 guard_counter(int class)
{
	switch (class) {
	case RSTWALL_GUARD_CLASS_IN_WINDOW:
		return RSTWALL_CNT_GUARD_IN_WINDOW;
	case RSTWALL_GUARD_CLASS_OUT_OF_WINDOW:
		return RSTWALL_CNT_GUARD_OUT_OF_WINDOW;
	default:
		return RSTWALL_CNT_GUARD_SYN_SENT_BAD_ACK;
	}
}

/* The fields of a TCP header the guard reads. */
struct guard_segment {
	__u32 seq;
	__u32 ack;
	__u32 payload_len;
	__u16 window;
	__u8 flags;
	/* The whole header, options included, was captured: the engine takes
	 * an ack and window only from such a segment (Segment::header_complete). */
	__u8 complete;
};

static __always_inline void mark_stale(struct rstwall_guard_entry *e)
{
	if (e->mode != RSTWALL_GUARD_STALE) {
		e->mode = RSTWALL_GUARD_STALE;
		count(RSTWALL_CNT_GUARD_STALE);
	}
}

/*
 * A segment other than a RST from endpoint `from`: what Flow::update_other
 * does to the fields the entry holds. peer_end of the other half advances to
 * the segment's end; the sender's ack and window edge follow its ACK unless
 * the ack goes backwards.
 */
static __always_inline void guard_follow(struct rstwall_guard_entry *e, __u32 from,
					 const struct guard_segment *s)
{
	struct rstwall_guard_half *own = from ? &e->half[1] : &e->half[0];
	struct rstwall_guard_half *other = from ? &e->half[0] : &e->half[1];
	__u32 end_seq = s->seq + s->payload_len;

	if ((s->flags & (TCP_SYN | TCP_FIN)) || e->mode == RSTWALL_GUARD_SYN_SENT) {
		mark_stale(e);
		return;
	}
	if (e->mode != RSTWALL_GUARD_SYNCED)
		return;
	if (seq_after(end_seq, other->peer_end))
		other->peer_end = end_seq;
	if ((s->flags & TCP_ACK) && s->complete && !seq_before(s->ack, own->ack)) {
		own->ack = s->ack;
		own->win_edge = s->ack + ((__u32)s->window << (own->wscale & 0x1f));
	}
}

/*
 * A RST without SYN and FIN to endpoint `to`: the RstClass index the
 * guard drops it as, or -1 to pass it on (to userspace).
 */
static __always_inline int guard_judge(const struct rstwall_guard_entry *e, __u32 to,
				       const struct guard_segment *s, __u32 margin)
{
	const struct rstwall_guard_half *h = to ? &e->half[1] : &e->half[0];

	if (e->mode == RSTWALL_GUARD_SYN_SENT) {
		/* Only RSTs to the endpoint that sent the SYN: the responder's
		 * request socket is judged by userspace. */
		if (e->syn_sent != to)
			return -1;
		if ((s->flags & TCP_ACK) && seq_after(s->ack, h->isn) && !seq_after(s->ack, h->isn_end))
			return -1;
		return RSTWALL_GUARD_CLASS_SYN_SENT_BAD_ACK;
	}
	if (e->mode != RSTWALL_GUARD_SYNCED)
		return -1;

	__u32 lo = seq_min(h->peer_end, h->ack);
	__u32 hi = seq_max(h->peer_end, h->ack);

	/* Everything the receiving kernel could accept: RCV.NXT (between the
	 * receiver's ack and what its peer sent), RCV.NXT-1, a SACK edge, and
	 * what the peer sent before the entry existed (the margin). */
	if (!seq_before(s->seq, lo - 1) && !seq_after(s->seq, hi + margin))
		return -1;
	/* The engine's window: [RCV.WUP, max(edge, RCV.NXT)], tested with the
	 * RST's end on the left as tcp_sequence() does. */
	if (!seq_before(s->seq + s->payload_len, h->ack) && !seq_after(s->seq, seq_max(h->win_edge, hi)))
		return RSTWALL_GUARD_CLASS_IN_WINDOW;
	return RSTWALL_GUARD_CLASS_OUT_OF_WINDOW;
}

/*
 * The guard for one TCP segment: the RstClass index of a RST to drop, or -1
 * to go on. Segments of flows without an entry, and every segment while
 * drop_classes is 0, cost one array lookup and nothing else.
 */
static __always_inline int rst_guard(struct frame *f, void *end)
{
	__u32 zero = 0;
	struct rstwall_guard_cfg *cfg = bpf_map_lookup_elem(&RSTWALL_MAP_GUARD_CFG, &zero);
	struct rstwall_guard_key key = {};
	struct rstwall_guard_entry *e;
	struct guard_segment s;
	__u8 *tcp = f->tcp;
	__u32 tcp_len, hdr_len, from;
	__u16 sport, dport;
	int class;

	if (!cfg || !cfg->drop_classes || !f->has_src)
		return -1;
	if ((void *)(tcp + 20) > end)
		return -1;
	sport = load_be16(tcp);
	dport = load_be16(tcp + 2);
	from = endpoint_after(f->src.addr, sport, f->dst.addr, dport);
	if (from) {
		__builtin_memcpy(key.lo_addr, f->dst.addr, RSTWALL_ADDR_LEN);
		__builtin_memcpy(key.hi_addr, f->src.addr, RSTWALL_ADDR_LEN);
		key.lo_port = dport;
		key.hi_port = sport;
	} else {
		__builtin_memcpy(key.lo_addr, f->src.addr, RSTWALL_ADDR_LEN);
		__builtin_memcpy(key.hi_addr, f->dst.addr, RSTWALL_ADDR_LEN);
		key.lo_port = sport;
		key.hi_port = dport;
	}
	e = bpf_map_lookup_elem(&RSTWALL_MAP_GUARD, &key);
	if (!e)
		return -1;

	/* Payload: what the IP header announces past the TCP header, as
	 * wire::tcp computes it (saturating at 0). */
	hdr_len = (tcp[12] >> 4) * 4;
	tcp_len = f->l4_room == L4_ROOM_CAPTURED ? (__u32)((__u8 *)end - tcp) : f->l4_room;
	s.seq = load_be32(tcp + 4);
	s.ack = load_be32(tcp + 8);
	s.flags = tcp[13];
	s.window = load_be16(tcp + 14);
	s.payload_len = tcp_len > hdr_len ? tcp_len - hdr_len : 0;
	s.complete = (void *)(tcp + hdr_len) <= end;

	if (!(s.flags & TCP_RST)) {
		guard_follow(e, from, &s);
		return -1;
	}
	/* RST with SYN or FIN: invalid_flags, never the guard's. */
	if (s.flags & (TCP_SYN | TCP_FIN))
		return -1;
	class = guard_judge(e, !from, &s, cfg->margin);
	if (class < 0 || !(cfg->drop_classes & (1u << class)))
		return -1;
	return class;
}

#endif /* RSTWALL_GUARD_H */
