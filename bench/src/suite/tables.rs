//! The report's section for each phase: throughput and CPU, drop accuracy
//! by kind of frame, latency percentiles, goodput round by round.

use std::fmt::Write as _;

use super::accuracy::{is_legitimate, is_spoofed};
use super::latency::us;
use super::options::Contender;
use super::options::Phase;
use super::report::{opt, Ratio, Report, Summary};
use super::throughput::Tput;
use crate::stats::{median, pct};
use crate::traffic::Label;

/// `**median** (lo–hi)`, or a dash.
fn ratio(r: Option<Ratio>) -> String {
    r.map_or("—".into(), |r| {
        format!("**{:.2}** ({:.2}–{:.2})", r.median, r.lo, r.hi)
    })
}

impl Report<'_> {
    pub(super) fn throughput_tables(&self, o: &mut String, sums: &[Summary]) {
        let _ = writeln!(
            o,
            "Throughput (medians over rounds; ratios are each round's against the same \
             round's bare loop, median and range):\n\n\
             | contender | forwarded Mpps (min–max) | ÷ bare | forwarder CPU ns/frame \
             (user + sys) | bare's ns ÷ this (frames per CPU-second) |\n\
             |---|---:|---:|---:|---:|"
        );
        for x in sums.iter().filter(|x| x.mpps.is_some()) {
            let split = match (x.cpu_ns, x.cpu_sys_pct) {
                (Some(ns), Some(sys)) => format!(
                    "{ns:.0} ({:.0} + {:.0})",
                    ns * (100.0 - sys) / 100.0,
                    ns * sys / 100.0
                ),
                (Some(ns), None) => format!("{ns:.0}"),
                _ => "in the kernel".into(),
            };
            let (lo, hi) = x.mpps_range.unwrap_or((f64::NAN, f64::NAN));
            let _ = writeln!(
                o,
                "| {} | {} ({lo:.3}–{hi:.3}) | {} | {split} | {} |",
                x.c.name(),
                opt(x.mpps, 3),
                ratio(x.vs_bare),
                ratio(x.cpu_vs_bare),
            );
        }
        let _ = writeln!(o);
        for c in self.o.contenders_in(Phase::Throughput) {
            let runs = self.tput_of(c);
            if !c.is_rstwall() || runs.is_empty() {
                continue;
            }
            let judged: u64 = runs.iter().map(|t| t.stop.judged).sum();
            let dropped: u64 = runs.iter().map(|t| t.stop.dropped).sum();
            let flows = runs.iter().map(|t| t.stop.active_flows).max().unwrap_or(0);
            let _ = writeln!(
                o,
                "- {}: the engine judged {judged} frames over all rounds, its policy dropped \
                 {dropped} ({:.2}%); {flows} flows tracked at the end.",
                c.name(),
                pct(dropped, judged),
            );
        }
        self.export_paragraph(o);
        let (g, f) = (self.o.gen_cpu, self.o.fwd_cpu);
        let _ = writeln!(
            o,
            "\nLoad and CPU (medians over rounds; CPU in per cent of one CPU):\n\n\
             | contender | offered Mpps | arrived at A Mpps | dropped by policy Mpps | lost \
             before the forwarder | dropped by B | forwarder thread CPU | generator threads \
             CPU | CPU {g} busy (sys, irq) | CPU {f} busy (sys, irq) | steal | other \
             processes |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for c in self.o.contenders_in(Phase::Throughput) {
            if self.tput_of(c).is_empty() {
                continue;
            }
            let m = |f: &dyn Fn(&Tput) -> Option<f64>| self.med(c, f);
            let cpu = |i: usize| {
                format!(
                    "{}% ({}, {})",
                    opt(m(&|x| x.cpus.get(i).map(|c| c.busy())), 0),
                    opt(m(&|x| x.cpus.get(i).map(|c| c.system)), 0),
                    opt(m(&|x| x.cpus.get(i).map(|c| c.irq)), 0)
                )
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {}% | {} | {} | {}% | {} | {} | {}% | {}% |",
                c.name(),
                opt(m(&|x| Some(x.offered)), 3),
                opt(m(&|x| Some(x.arrived)), 3),
                opt(m(&|x| x.policy_dropped), 3),
                opt(m(&|x| Some(x.lost_pct)), 1),
                opt(m(&|x| Some(x.b_dropped as f64)), 0),
                m(&|x| x.fwd_util).map_or("in the kernel".into(), |v| format!("{v:.0}%")),
                opt(m(&|x| x.gen_util), 0),
                cpu(g),
                cpu(f),
                opt(m(&|x| Some(x.cpus.iter().map(|c| c.steal).sum())), 1),
                opt(m(&|x| Some(x.outside)), 0),
            );
        }
        let _ = writeln!(
            o,
            "\n\"Dropped by policy\": rstwall's engine (enforce: the spoofed RSTs, about 1% of the \
             pass) or the nftables rules. At saturation a forwarder sees only a random part of \
             each flow's segments, which for conntrack means segments outside the window it \
             knows: it marks them invalid and drops them (at the accuracy phase's rate it drops \
             nothing legitimate). \"Lost before the forwarder\": A's AF_XDP socket's drops (its \
             RX ring full) for AF_XDP contenders; for the bridge, every frame that arrived and \
             was neither forwarded nor dropped by a rule. \"Forwarder CPU ns/frame\": the \
             forwarding thread's CPU time (its own and the kernel's work done in it: the \
             copy-mode copies, B's transmit and the sink's receive) per frame it took in.\n"
        );
    }

    pub(super) fn accuracy_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Drop accuracy by kind of frame (frames counted at the sink ÷ frames sent, all \
             rounds together):\n"
        );
        let contenders = self.o.contenders_in(Phase::Accuracy);
        let mut head = "| frames | kind | sent |".to_string();
        let mut rule = "|---|---|---:|".to_string();
        for c in &contenders {
            head += &format!(" {} |", c.name());
            rule += "---:|";
        }
        let _ = writeln!(o, "{head}\n{rule}");
        let first = contenders.first().copied().unwrap_or(Contender::Bare);
        for label in Label::ALL {
            let sent: u64 = self.acc_of(first).iter().map(|a| a.sent.of(label)).sum();
            if sent == 0 {
                continue;
            }
            let kind = if is_spoofed(label) {
                "spoofed"
            } else if is_legitimate(label) {
                "legitimate"
            } else {
                "judgement call"
            };
            let mut row = format!("| {} | {kind} | {sent} |", label.name());
            for &c in &contenders {
                let runs = self.acc_of(c);
                let s: u64 = runs.iter().map(|a| a.sent.of(label)).sum();
                let a: u64 = runs.iter().map(|a| a.arrived[label.code() as usize]).sum();
                row += &if s == 0 {
                    " — |".to_string()
                } else {
                    format!(" {:.1}% |", pct(a, s))
                };
            }
            let _ = writeln!(o, "{row}");
        }
        let _ = writeln!(o);
        for c in contenders {
            let runs = self.acc_of(c);
            if runs.is_empty() {
                continue;
            }
            let judged: u64 = runs.iter().map(|a| a.stop.judged).sum();
            let dropped: u64 = runs.iter().map(|a| a.stop.dropped).sum();
            let nft = runs
                .iter()
                .filter_map(|a| a.stop.nft)
                .fold((0, 0), |(i, r), n| (i + n.invalid, r + n.rst_limited));
            if judged > 0 {
                let _ = writeln!(
                    o,
                    "- {}: the engine judged {judged} frames, its policy dropped {dropped}.",
                    c.name()
                );
            } else if c == Contender::Nftables {
                let _ = writeln!(
                    o,
                    "- {}: `ct state invalid` dropped {}, the RST limit {}.",
                    c.name(),
                    nft.0,
                    nft.1
                );
            }
        }
        let _ = writeln!(o);
    }

    pub(super) fn latency_table(&self, o: &mut String, sums: &[Summary]) {
        let _ = writeln!(
            o,
            "One-way latency, generator to sink, at {} frames/s (µs; every round's samples in \
             one hdrhistogram per contender; \"added\" is rstwall's minus the bare loop's, at \
             each percentile; frames not received include those a policy dropped: the pass has \
             spoofed RSTs):\n",
            self.o.latency_pps
        );
        let with: Vec<&Summary> = sums.iter().filter(|x| x.latency.is_some()).collect();
        let bare = with
            .iter()
            .find(|x| x.c == Contender::Bare)
            .and_then(|x| x.latency.as_ref());
        let added: Vec<&&Summary> = match bare {
            Some(_) => with.iter().filter(|x| x.c.is_rstwall()).collect(),
            None => Vec::new(),
        };
        let mut head = "| percentile |".to_string();
        for x in &with {
            head += &format!(" {} |", x.c.name());
        }
        for x in &added {
            head += &format!(" added by {} |", x.c.name());
        }
        let rule = "---:|".repeat(with.len() + added.len());
        let _ = writeln!(o, "{head}\n|---|{rule}");
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            let mut row = format!("| {name} |");
            for x in &with {
                row += &format!(" {:.1} |", us(x.latency.as_ref().expect("some"), q));
            }
            if let Some(b) = bare {
                for x in &added {
                    let h = x.latency.as_ref().expect("some");
                    row += &format!(" **{:+.1}** |", us(h, q) - us(b, q));
                }
            }
            let _ = writeln!(o, "{row}");
        }
        // Each round against the same round's kernel redirect, p99 over
        // p99: the median of the rounds' ratios.
        if !self.lat_of(Contender::Kernel).is_empty() {
            let mut row = "| p99 ÷ kernel's (median of rounds) |".to_string();
            for x in &with {
                let ratios: Vec<f64> = self
                    .lat_of(x.c)
                    .iter()
                    .filter_map(|l| {
                        let k = self
                            .lat_of(Contender::Kernel)
                            .into_iter()
                            .find(|k| k.round == l.round)?;
                        Some(us(&l.hist, 0.99) / us(&k.hist, 0.99))
                    })
                    .collect();
                row += &match crate::stats::median(ratios) {
                    Some(r) => format!(" {r:.2}× |"),
                    None => " |".into(),
                };
            }
            row += &" |".repeat(added.len());
            let _ = writeln!(o, "{row}");
        }
        let mut row = "| samples (not received) |".to_string();
        for x in &with {
            let lost: u64 = self
                .lat_of(x.c)
                .iter()
                .map(|l| l.sent.saturating_sub(l.received))
                .sum();
            row += &format!(" {} ({lost}) |", x.latency.as_ref().expect("some").len());
        }
        row += &" |".repeat(added.len());
        let _ = writeln!(
            o,
            "{row}\n\nPer round (p50 / p99 / p99.9 µs, other processes' CPU during the \
             window):\n"
        );
        for x in &with {
            let rounds: Vec<String> = self
                .lat_of(x.c)
                .iter()
                .map(|l| {
                    let worker = l.worker();
                    format!(
                        "{:.1} / {:.1} / {:.1} ({:.0}%{}{worker})",
                        us(&l.hist, 0.5),
                        us(&l.hist, 0.99),
                        us(&l.hist, 0.999),
                        l.other,
                        if worker.is_empty() { "" } else { "; " }
                    )
                })
                .collect();
            let _ = writeln!(o, "- {}: {}", x.c.name(), rounds.join("; "));
        }
        let _ = writeln!(o);
    }

    pub(super) fn goodput_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Goodput per round (Mbit/s alone → under the flood; flood RSTs that reached the \
             server / sent; the server's challenge ACKs during the flood; then the same under \
             the heavier flood):\n"
        );
        for c in self.o.contenders_in(Phase::Goodput) {
            let rounds: Vec<String> = self
                .good_of(c)
                .iter()
                .map(|g| {
                    format!(
                        "{:.0} → {:.0} ({}/{} RSTs, {} challenge ACKs{}{}){}{}",
                        g.calm.mbps(),
                        g.flood.mbps(),
                        g.flood.flood_arrived,
                        g.flood.flood_sent,
                        g.flood.challenge_acks,
                        g.dropped_by(),
                        g.reset
                            .as_ref()
                            .map_or(String::new(), |e| format!(", connection broke: {e}")),
                        g.flood_high.map_or(String::new(), |w| format!(
                            "; → {:.0} ({}/{} RSTs, {} challenge ACKs)",
                            w.mbps(),
                            w.flood_arrived,
                            w.flood_sent,
                            w.challenge_acks
                        )),
                        g.flood_void.map_or(String::new(), |w| format!(
                            "; dropped at parse → {:.0} ({:.2}×)",
                            w.mbps(),
                            g.void_ratio().unwrap_or(0.0),
                        )),
                    )
                })
                .collect();
            if !rounds.is_empty() {
                let _ = writeln!(o, "- {}: {}", c.name(), rounds.join("; "));
            }
        }
        let void: Vec<String> = self
            .o
            .contenders_in(Phase::Goodput)
            .into_iter()
            .filter_map(|c| {
                let good = self.good_of(c);
                let alone = median(good.iter().filter_map(|g| g.void_ratio()).collect())?;
                let real = median(good.iter().filter_map(|g| g.flood_vs_void()).collect())?;
                Some(format!("{} {alone:.2} and {real:.2}", c.name()))
            })
            .collect();
        if !void.is_empty() {
            let _ = writeln!(
                o,
                "\nUnder the same flood made malformed, which rstwall's XDP program drops at \
                 parse on every contender but nftables (`--flood-void`: what the flood costs \
                 the transfer on this machine before any contender judges it), medians over \
                 rounds of goodput ÷ alone, and of the real flood's goodput ÷ this one's: {}.",
                void.join(", ")
            );
        }
        let _ = writeln!(o);
    }
}
