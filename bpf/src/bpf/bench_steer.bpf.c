// SPDX-License-Identifier: Apache-2.0
/*
 * CPU steering for the bench's kernel contender (rstwall-bench: Linux
 * bridging with nftables): an XDP program on each port of the bridge that
 * sends every frame to one CPU through a cpumap, whose kernel thread there
 * builds the socket buffer and hands it to the stack. The XDP equivalent
 * of steering a NIC queue's interrupts to a core: the port's receive runs
 * where the frame arrives, everything after it on target_cpu, where
 * rstwall's worker runs for the other contenders.
 *
 * One program serves both ports (one cpumap, so one kernel thread); the
 * loader sizes the cpumap to the possible CPUs and sets target_cpu.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_cpu = 0;

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_cpumap_val);
} steer_cpus SEC(".maps");

SEC("xdp")
int bench_steer(struct xdp_md *ctx __attribute__((unused)))
{
	return bpf_redirect_map(&steer_cpus, target_cpu, 0);
}

char LICENSE[] SEC("license") = "GPL";
