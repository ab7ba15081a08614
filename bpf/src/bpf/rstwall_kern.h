/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kernel-only helpers of the two packet programs, rstwall.bpf.c (XDP) and
 * rstwall_host_tc.bpf.c (host mode's tc programs): the numbers their
 * parsers walk by, the one definition of a segment's flag class and of
 * counting in a per-CPU counter array. Included after <bpf/bpf_helpers.h>.
 * Userspace never sees these; the contract with it is rstwall_shared.h.
 */
#ifndef RSTWALL_KERN_H
#define RSTWALL_KERN_H

#include <linux/types.h>

#include "rstwall_shared.h"

/* Ethertypes of the VLAN tags the userspace parser walks. */
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88a8
#define ETH_P_QINQ_LEGACY 0x9100

/* IPv6 extension headers (IANA "IPv6 Extension Header Types"), the same set
 * wire::ipv6 walks. ESP (50) ends the walk as another transport there too. */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define NEXTHDR_MOBILITY 135
#define NEXTHDR_HIP 139
#define NEXTHDR_SHIM6 140

/* The case labels of the extension headers whose length is byte 1 in
 * 8-octet units, the first 8 not counted (AH counts 4-octet units, less 2;
 * a fragment header is 8 octets). */
#define CASE_EXT_HDR_LEN_8                                                     \
	case NEXTHDR_HOP:                                                      \
	case NEXTHDR_ROUTING:                                                  \
	case NEXTHDR_DEST:                                                     \
	case NEXTHDR_MOBILITY:                                                 \
	case NEXTHDR_HIP:                                                      \
	case NEXTHDR_SHIM6

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static __always_inline int is_vlan(__u32 ethertype)
{
	return ethertype == ETH_P_8021Q_ || ethertype == ETH_P_8021AD_ ||
	       ethertype == ETH_P_QINQ_LEGACY;
}

/* The exclusive classes of rstwall_engine::class::FlagClass::of, as the
 * index of the class: also its counter's index in both programs' counter
 * maps, which start with the six classes in this order. */
static __always_inline __u32 flag_class(__u8 flags)
{
	if (flags & TCP_RST)
		return (flags & TCP_ACK) ? RSTWALL_CNT_RSTACK : RSTWALL_CNT_RST;
	if (flags & TCP_SYN)
		return (flags & TCP_ACK) ? RSTWALL_CNT_SYNACK : RSTWALL_CNT_SYN;
	if (flags & TCP_FIN)
		return RSTWALL_CNT_FIN;
	return RSTWALL_CNT_OTHER;
}

/* One more in slot `index` of `counters`, a PERCPU_ARRAY of __u64: no other
 * CPU writes the slot, so no atomic is needed. */
static __always_inline void count_in(void *counters, __u32 index)
{
	__u64 *value = bpf_map_lookup_elem(counters, &index);

	if (value)
		*value += 1;
}

#endif /* RSTWALL_KERN_H */
