// SPDX-License-Identifier: Apache-2.0
/*
 * The bench sink's counter (rstwall-bench): a tc ingress program on the
 * sink's veth. A frame the bench marked (its source MAC is the bench's
 * marker prefix, then a one-byte code) is counted by its code, then
 * dropped — or, when the code has the deliver bit, handed on to the sink's
 * own stack (the blind-reset flood aimed at a real connection). Frames
 * without the marker (the real TCP transfer) go on untouched.
 *
 * tc, not XDP: the sink's veth then runs no NAPI, so a frame a forwarder
 * transmits is received with netif_rx, in softirq within the transmit
 * itself, on the forwarder's CPU — the cheapest receive a veth allows —
 * and no GRO merges frames before they are counted.
 *
 * The marker is the bench's (rstwall_bench::frame): the loader writes it
 * into the read-only settings below before loading.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* A code is one byte: one counter for each. */
#define SINK_CODES 256
#define MARKER_PREFIX_LEN 5
/* Source MAC: bytes 6..12 of the frame. */
#define SRC_MAC 6

/* Per CPU, the frames counted by code. */
struct sink_counts {
	__u64 by_code[SINK_CODES];
};

const volatile __u8 marker_prefix[MARKER_PREFIX_LEN] = {};
const volatile __u8 mark_deliver = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sink_counts);
} sink_counts SEC(".maps");

SEC("tc")
int bench_sink(struct __sk_buff *skb)
{
	__u8 *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 key = 0;

	if ((void *)(data + SRC_MAC + MARKER_PREFIX_LEN + 1) > data_end)
		return TC_ACT_OK;
#pragma unroll
	for (int i = 0; i < MARKER_PREFIX_LEN; i++)
		if (data[SRC_MAC + i] != marker_prefix[i])
			return TC_ACT_OK;
	__u8 code = data[SRC_MAC + MARKER_PREFIX_LEN];
	struct sink_counts *counts = bpf_map_lookup_elem(&sink_counts, &key);
	if (counts)
		counts->by_code[code]++;
	return code & mark_deliver ? TC_ACT_OK : TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
