// SPDX-License-Identifier: Apache-2.0
/*
 * The bench's flat-out generator (rstwall-bench): an XDP program that
 * BPF_PROG_TEST_RUN runs in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES,
 * the technique of xdp-trafficgen). Each run writes the next frame of a
 * table over the packet and redirects it out of one interface.
 *
 * On veth the frames enter the peer as XDP frames (ndo_xdp_xmit), the way a
 * native driver hands them to XDP: no socket buffer is built on either
 * side, which makes this several times cheaper per frame than an AF_XDP TX
 * socket in copy mode, so that the forwarder under test, not the
 * generator, is what limits the rate.
 *
 * The frames are replayed in table order, as the AF_XDP generator does;
 * each is frame_len bytes (zero-padded by the loader), a multiple of 8
 * from GEN_MIN_FRAME to GEN_MAX_FRAME. The loader sets frame_len, frame_count and
 * out_ifindex before loading, and sizes the table to match.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The longest frame: 1514 bytes (a 1500-byte MTU) rounded up to 8. */
#define GEN_MAX_FRAME 1520
#define GEN_MAX_WORDS (GEN_MAX_FRAME / 8)
/* The shortest frame: 60 bytes (a minimum Ethernet frame) rounded up to 8. */
#define GEN_MIN_FRAME 64
#define GEN_MIN_WORDS (GEN_MIN_FRAME / 8)

const volatile __u32 frame_len = 64;
const volatile __u32 frame_count = 1;
const volatile __u32 out_ifindex = 0;

/* Per CPU: the next frame's index, and the frames sent so far. A run is
 * never preempted, so two threads taking turns on one CPU keep it whole. */
struct gen_state {
	__u64 next;
	__u64 sent;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_state);
} gen_state SEC(".maps");

/* Frame i at key i. No BTF value type: the loader resizes the value to
 * frame_len and the entries to frame_count. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 64);
} gen_frames SEC(".maps");

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct gen_state *state = bpf_map_lookup_elem(&gen_state, &key);
	if (!state)
		goto out;
	state->sent++;
	__u64 i = state->next;
	state->next = i + 1 < frame_count ? i + 1 : 0;

	__u32 at = i;
	__u64 *frame = bpf_map_lookup_elem(&gen_frames, &at);
	if (!frame)
		goto out;
	__u64 *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	/* frame_len is a constant to the verifier (read-only settings): it
	 * keeps one of the two copies below and drops the other. The bench's
	 * throughput frames (64 bytes) take the first, a straight-line copy
	 * without a comparison per word: the generator must stay much
	 * cheaper per frame than the forwarders it feeds. */
	__u32 words = frame_len / 8;
	if (words == GEN_MIN_WORDS) {
		if ((void *)(data + GEN_MIN_WORDS) > data_end)
			goto out;
#pragma unroll
		for (__u32 w = 0; w < GEN_MIN_WORDS; w++)
			data[w] = frame[w];
	} else {
		if ((void *)(data + words) > data_end)
			goto out;
#pragma unroll
		for (__u32 w = 0; w < GEN_MAX_WORDS; w++)
			if (w < words)
				data[w] = frame[w];
	}
out:
	return bpf_redirect(out_ifindex, 0);
}

char LICENSE[] SEC("license") = "GPL";
