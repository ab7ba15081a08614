//! The figures as `results.json`: the machine and the settings, one
//! summary per contender (the report's first table), then every
//! measurement of every round.

use serde_json::{json, Value};

use super::latency::us;
use super::report::Report;
use crate::traffic::Label;

impl Report<'_> {
    /// The figures as `results.json`.
    pub fn json(&self) -> Value {
        let m = &self.machine;
        let s = self.o;
        let summary: Vec<Value> = self
            .summaries()
            .iter()
            .map(|x| {
                let c = x.c;
                json!({
                    "contender": c.key(),
                    "name": c.name(),
                    "mpps": x.mpps,
                    "mpps_min": x.mpps_range.map(|r| r.0),
                    "mpps_max": x.mpps_range.map(|r| r.1),
                    "mpps_vs_bare": x.vs_bare.map(|r| r.median),
                    "mpps_vs_bare_min": x.vs_bare.map(|r| r.lo),
                    "mpps_vs_bare_max": x.vs_bare.map(|r| r.hi),
                    "forwarder_cpu_ns_per_frame": x.cpu_ns,
                    "forwarder_cpu_sys_pct": x.cpu_sys_pct,
                    "frames_per_cpu_second_vs_bare": x.cpu_vs_bare.map(|r| r.median),
                    "spoofed_rst_dropped_pct": x.spoofed_dropped,
                    "legitimate_passed_pct": x.legit_passed,
                    "latency_us": x.latency.as_ref().map(|h| json!({
                        "p50": us(h, 0.5), "p90": us(h, 0.9), "p99": us(h, 0.99),
                        "p999": us(h, 0.999), "max": h.max() as f64 / 1000.0,
                        "samples": h.len(),
                    })),
                    "goodput_mbps": {
                        "alone": x.calm_mbps, "flood": x.flood_mbps, "ratio": x.flood_ratio,
                        "flood_high": x.flood_high_mbps, "ratio_high": x.flood_high_ratio,
                    },
                    "connection_broke_rounds": x.broke,
                })
            })
            .collect();
        let tput: Vec<Value> = self
            .r
            .tput
            .iter()
            .map(|t| {
                json!({
                    "contender": t.contender.key(), "round": t.round + 1,
                    "offered_mpps": t.offered, "arrived_mpps": t.arrived,
                    "forwarded_mpps": t.forwarded, "b_tx_mpps": t.b_tx,
                    "handled_mpps": t.handled,
                    "policy_dropped_mpps": t.policy_dropped,
                    "lost_before_forwarder_pct": t.lost_pct, "b_tx_dropped": t.b_dropped,
                    "forwarder_cpu_ns_per_frame": t.fwd_ns, "forwarder_cpu_pct": t.fwd_util,
                    "forwarder_cpu_sys_pct": t.fwd_sys_pct, "generator_cpu_pct": t.gen_util,
                    "cpu_busy_pct": t.cpus.iter().map(|c| c.busy()).collect::<Vec<_>>(),
                    "cpu_steal_pct": t.cpus.iter().map(|c| c.steal).sum::<f64>(),
                    "other_processes_pct": t.outside,
                    "rest_cpu_pct": t.rest_cpu(),
                    "export_events_per_s": t.export.map(|x| json!({
                        "handed": x.handed, "acked": x.acked, "dropped": x.dropped,
                    })),
                    "export_at_stop": t.stop.export.map(|x| json!({
                        "handed": x.handed(), "acked": x.acked, "queued": x.queued,
                        "spooled": x.spooled, "dropped": x.dropped,
                    })),
                })
            })
            .collect();
        let acc: Vec<Value> = self
            .r
            .acc
            .iter()
            .map(|a| {
                let by: serde_json::Map<String, Value> = Label::ALL
                    .iter()
                    .filter(|l| a.sent.of(**l) > 0)
                    .map(|l| {
                        (
                            l.name().to_string(),
                            json!({"sent": a.sent.of(*l), "arrived": a.arrived[l.code() as usize]}),
                        )
                    })
                    .collect();
                json!({
                    "contender": a.contender.key(), "round": a.round + 1,
                    "spoofed_rst_dropped_pct": a.spoofed_dropped(),
                    "legitimate_passed_pct": a.legit_passed(),
                    "by_kind": by,
                    "engine_judged": a.stop.judged, "engine_dropped": a.stop.dropped,
                    "nft_invalid_dropped": a.stop.nft.map(|n| n.invalid),
                    "nft_rst_limit_dropped": a.stop.nft.map(|n| n.rst_limited),
                    "other_processes_pct": a.other,
                })
            })
            .collect();
        let lat: Vec<Value> = self
            .r
            .lat
            .iter()
            .map(|l| {
                json!({
                    "contender": l.contender.key(), "round": l.round + 1,
                    "p50_us": us(&l.hist, 0.5), "p90_us": us(&l.hist, 0.9),
                    "p99_us": us(&l.hist, 0.99),
                    "p999_us": us(&l.hist, 0.999), "samples": l.hist.len(),
                    "sent": l.sent, "received": l.received, "other_processes_pct": l.other,
                })
            })
            .collect();
        let good: Vec<Value> = self
            .r
            .good
            .iter()
            .map(|g| {
                json!({
                    "contender": g.contender.key(), "round": g.round + 1,
                    "alone_mbps": g.calm.mbps(), "flood_mbps": g.flood.mbps(),
                    "ratio": g.ratio(),
                    "flood_sent": g.flood.flood_sent, "flood_at_server": g.flood.flood_arrived,
                    "challenge_acks": g.flood.challenge_acks,
                    "flood_high": g.flood_high.map(|w| json!({
                        "mbps": w.mbps(), "ratio": g.high_ratio(),
                        "flood_sent": w.flood_sent, "flood_at_server": w.flood_arrived,
                        "challenge_acks": w.challenge_acks,
                    })),
                    "flood_void": g.flood_void.map(|w| json!({
                        "mbps": w.mbps(), "ratio": g.void_ratio(),
                        "flood_sent": w.flood_sent, "flood_at_server": w.flood_arrived,
                    })),
                    "connection_broke": g.reset,
                    "other_processes_pct": g.other,
                })
            })
            .collect();
        json!({
            "machine": {
                "date": m.date, "commit": m.commit, "dirty": m.dirty, "cpu": m.cpu_model,
                "cpus": m.cpus, "kernel": m.kernel,
                "load_before": self.load.0, "load_after": self.load.1,
            },
            "command": self.command,
            "minutes": self.minutes,
            "settings": {
                "rounds": s.rounds, "flows": self.traffic.flows,
                "pass_frames": self.traffic.steady.len(),
                "contenders": s.contenders.iter().map(|c| c.key()).collect::<Vec<_>>(),
                "phases": s.phases.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "throughput_secs": s.round.as_secs_f64(), "warmup_secs": s.warmup.as_secs_f64(),
                "handshake_pps": s.handshake_pps,
                "latency_pps": s.latency_pps, "latency_secs": s.latency.as_secs_f64(),
                "accuracy_pps": s.accuracy_pps, "goodput_secs": s.goodput.as_secs_f64(),
                "flood_pps": s.flood_pps, "flood_high_pps": s.flood_high_pps,
                "flood_void": s.flood_void,
                "nft_rst_rate": s.rst_limit.rate, "nft_rst_burst": s.rst_limit.burst,
                "gen_cpu": s.gen_cpu, "sink_cpu": s.sink_cpu, "fwd_cpu": s.fwd_cpu, "max_other_pct": s.max_other,
                "xdp_mode": self.xdp_mode,
            },
            "remeasured": self.r.repeats,
            "summary": summary,
            "export_vs_monitor": self.export_vs_monitor().map(|r| json!({
                "median": r.median, "min": r.lo, "max": r.hi,
            })),
            "throughput": tput,
            "accuracy": acc,
            "latency": lat,
            "goodput": good,
        })
    }
}
