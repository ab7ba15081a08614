//! `rstwall run --inline A,B | --tap P`: AF_XDP workers behind rstwall's
//! XDP program.
//!
//! Start-up ([`Plan::check`], then [`Plan::start`]): check the ports and
//! their queues; attach rstwall's XDP program to each port (replacing a
//! stale one left by a previous run); fill its deny map from the policy
//! (enforce mode); open the AF_XDP sockets and start the workers; register
//! every socket in its port's XSKMAP. From then on TCP goes through the
//! workers.
//!
//! Running: the policy's share of the kernel is kept in step with the
//! policy ([`KernelDrops`]): the deny list in every port's deny map, and the
//! sources the workers' policies ask to block in every port's block map.
//! With `rst_guard` (inline), every program's RST guard drops the classes
//! the policy drops (its `guard_cfg`, set again with every policy), and the
//! workers keep its per-flow entries for the flows under attack.
//!
//! Shutdown: unregister the sockets (traffic falls back to the kernel
//! bypass for the moment it takes), stop the workers, close the sockets,
//! detach the programs. Nothing is left behind. A crash or SIGKILL skips
//! all of it: the kernel closes the sockets, which removes them from the
//! XSKMAPs, and the programs keep forwarding in the kernel (fail-open)
//! until the next start replaces them (with the RST guard on, its entries
//! stay too: the programs keep following those flows and mark an entry
//! stale at a FIN or SYN, so nothing the kernel accepts is dropped; an
//! entry of a flow reset meanwhile keeps dropping spoofed RSTs to a side
//! that holds no socket any more). A failing worker, a start-up that
//! fails after attaching, or a panic end the same way on purpose: only a
//! clean stop detaches (`Attached`), so rstwall failing never cuts an
//! inline wire.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::{anyhow, Context};
use rstwall_afxdp::{
    sys, Datapath, DatapathConfig, Place, SocketInfo, SocketStats, Topology, XskMode, XskStats,
    XskTotals,
};
use rstwall_api::stats::{SourceTotals, SourceWorker};
use rstwall_api::{status, Failure};
use rstwall_bpf::shared::guard::{margin_for, GuardCfg};
use rstwall_bpf::{DenyChange, KernelDrops, PortProgram, PortRole};
use rstwall_engine::policy::{Mode, PolicyConfig};
use rstwall_source::{Source, WorkerError, WorkerStats};

use super::{KernelView, PortView, Running, SourceView};
use crate::metrics::family::{l1, l2, Kind, MetricFamily};
use crate::settings::Settings;

/// The ports, checked: they exist, and how many queues the workers get.
/// Nothing is attached yet.
pub struct Plan {
    topology: Topology,
    ports: Vec<String>,
    ifindexes: Vec<u32>,
    queues: u32,
    /// Where the workers hand every RST (the fleet exporter), if anywhere.
    pub rsts: Option<rstwall_source::RstSink>,
}

impl Plan {
    pub fn check(settings: &Settings, topology: &Topology) -> Result<Plan, Failure> {
        let ports: Vec<String> = topology.ports().into_iter().map(String::from).collect();
        let mut ifindexes = Vec::new();
        let mut queue_limit = u32::MAX;
        for port in &ports {
            let index = sys::ifindex(port)
                .map_err(|_| Failure::usage(anyhow!("port {port}: no such network interface")))?;
            ifindexes.push(index);
            let n = sys::rx_queue_count(port)
                .with_context(|| format!("port {port}: cannot count its RX queues"))
                .map_err(Failure::runtime)?;
            queue_limit = queue_limit.min(n.max(1));
        }
        let queues = match settings.queues {
            Some(q) if q > queue_limit => {
                return Err(Failure::usage(anyhow!(
                    "--queues {q}: the port{} {} only {queue_limit} RX queue{}",
                    if ports.len() > 1 { "s" } else { "" },
                    if ports.len() > 1 { "have" } else { "has" },
                    if queue_limit > 1 { "s" } else { "" },
                )))
            }
            Some(q) => q,
            None => queue_limit,
        };
        Ok(Plan {
            topology: topology.clone(),
            ports,
            ifindexes,
            queues,
            rsts: None,
        })
    }

    /// Attach, fill the kernel's maps from `policy` (the policy the workers
    /// start with), start the workers and register their sockets.
    pub fn start(self, settings: &Settings, policy: &PolicyConfig) -> Result<AfXdp, Failure> {
        let runtime = |e: anyhow::Error| Failure::runtime(e);
        // From here on only a clean stop detaches: any failure or panic
        // leaves the programs forwarding in the kernel (see `Attached`).
        let mut programs = Attached(Vec::new());
        for (i, port) in self.ports.iter().enumerate() {
            let role = match self.topology {
                Topology::Inline { .. } => PortRole::Inline {
                    peer_ifindex: self.ifindexes[1 - i],
                },
                Topology::Tap { .. } => PortRole::Tap,
            };
            // Every port shares the first one's RST guard map: the two
            // directions of a flow arrive on different ports, and both
            // programs must keep the one entry.
            let program = PortProgram::attach_sharing_guard(
                port,
                role,
                settings.xdp_mode,
                settings.replace_foreign,
                programs.first().map(|p| p.guard()),
            )
            .map_err(|e| runtime(anyhow!(e)))?;
            programs.0.push(program);
        }

        // The policy's share of the kernel goes in before any socket is
        // registered: from the first packet, denied sources die in XDP.
        let mut kernel = KernelDrops::new(programs.len());
        let change = kernel.apply(policy, &programs);
        log_kernel_drops(policy, &change, kernel.stats().deny_entries);

        let mut engine = settings.engine.clone();
        engine.policy = policy.clone();
        let mut cfg = DatapathConfig::new(self.topology.clone(), self.queues, engine);
        cfg.bind = settings.bind;
        cfg.poll = settings.poll;
        let guard = match (&self.topology, settings.rst_guard) {
            (Topology::Inline { .. }, true) => {
                let g = RstGuard {
                    margin: margin_for(cfg.ring_size, cfg.frame_size),
                };
                g.apply(policy, &programs);
                Some(g)
            }
            (Topology::Tap { .. }, true) => {
                tracing::warn!("rst_guard: a tap drops nothing; the RST guard is off");
                None
            }
            _ => None,
        };
        // The ports share one guard map: the workers need its handle once.
        let maps: Vec<&rstwall_bpf::GuardMaps> = match guard {
            Some(_) => programs.first().map(|p| p.guard()).into_iter().collect(),
            None => Vec::new(),
        };
        cfg.rsts = self.rsts.clone();
        let datapath = Datapath::start_with_guard(&cfg, &maps).map_err(|e| runtime(anyhow!(e)))?;
        for s in datapath.sockets() {
            let i = self
                .ports
                .iter()
                .position(|p| *p == s.port)
                .expect("a port of ours");
            programs[i]
                .register_xsk(s.queue, s.fd)
                .map_err(|e| runtime(anyhow!(e)))?;
        }
        Ok(AfXdp {
            topology: self.topology,
            queues: self.queues,
            datapath,
            programs,
            kernel,
            guard,
        })
    }
}

/// The running AF_XDP source: the workers, the programs in front of them
/// and what those programs drop for the policy.
pub struct AfXdp {
    topology: Topology,
    queues: u32,
    datapath: Datapath,
    programs: Attached,
    kernel: KernelDrops,
    guard: Option<RstGuard>,
}

/// The RST guard switched on: its setting follows the policy.
struct RstGuard {
    /// For frames that passed before a flow's entry existed (see
    /// [`margin_for`]).
    margin: u32,
}

impl RstGuard {
    fn apply(&self, policy: &PolicyConfig, programs: &[PortProgram]) {
        let cfg = GuardCfg::for_policy(policy, self.margin);
        for p in programs {
            if let Err(e) = p.guard().configure(cfg) {
                tracing::warn!("port {}: RST guard: {e}", p.ifname());
            }
        }
        tracing::info!(
            "RST guard: {} dropped in XDP for flows under attack",
            match cfg.drop_classes {
                0 => "nothing (monitor mode, an allow list, or no class dropped)".to_string(),
                m => rstwall_bpf::shared::guard::CLASSES
                    .iter()
                    .filter(|c| m & (1 << c.index()) != 0)
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        );
    }

    /// Off: the programs drop nothing more, whatever entries are left.
    fn off(programs: &[PortProgram]) {
        for p in programs {
            if let Err(e) = p.guard().configure(GuardCfg::OFF) {
                tracing::warn!("port {}: RST guard: {e}", p.ifname());
            }
        }
    }
}

impl Running for AfXdp {
    type Source = Datapath;

    fn source(&self) -> &Datapath {
        &self.datapath
    }

    fn source_mut(&mut self) -> &mut Datapath {
        &mut self.datapath
    }

    fn describe(&self) -> String {
        let xdp: Vec<String> = self
            .programs
            .iter()
            .map(|p| format!("{} {}", p.ifname(), p.attached_mode()))
            .collect();
        let xsk: Vec<String> = self
            .datapath
            .sockets()
            .iter()
            .map(|s| s.to_string())
            .collect();
        format!(
            "{}: {} queue{}, xdp [{}], xsk [{}]",
            self.topology,
            self.queues,
            if self.queues > 1 { "s" } else { "" },
            xdp.join(", "),
            xsk.join(", "),
        )
    }

    fn sockets(&self) -> Vec<status::Socket> {
        self.datapath.sockets().iter().map(socket_status).collect()
    }

    fn apply_policy(&mut self, policy: &PolicyConfig) {
        let change = self.kernel.apply(policy, &self.programs);
        log_kernel_drops(policy, &change, self.kernel.stats().deny_entries);
        if let Some(g) = &self.guard {
            g.apply(policy, &self.programs);
        }
    }

    fn block(&mut self, src: IpAddr, now: Instant) {
        self.kernel.block(src, now, &self.programs);
    }

    fn expire(&mut self, now: Instant) {
        self.kernel.expire(now, &self.programs);
    }

    fn kernel(&self) -> KernelView {
        KernelView {
            ports: self
                .programs
                .iter()
                .map(|p| PortView {
                    port: p.ifname().to_string(),
                    xdp_mode: p.attached_mode().to_string(),
                    counters: p.counters().ok(),
                })
                .collect(),
            drops: self.kernel.stats(),
            ..KernelView::default()
        }
    }

    fn stop_workers(&mut self) -> Result<Vec<WorkerStats<XskStats>>, WorkerError> {
        // Nobody keeps the entries any more: the guard goes first.
        if self.guard.is_some() {
            RstGuard::off(&self.programs);
        }
        for s in self.datapath.sockets() {
            if let Some(p) = self.programs.iter().find(|p| p.ifname() == s.port) {
                if let Err(e) = p.unregister_xsk(s.queue) {
                    tracing::warn!("{e}");
                }
            }
        }
        self.datapath.stop()
    }

    fn release(self, clean: bool) -> anyhow::Result<()> {
        if clean {
            // A clean stop: nothing is left behind.
            self.programs.detach_all()
        } else {
            // The datapath failed: keep the wire up. `programs` drops here
            // and leaves the XDP programs forwarding in the kernel.
            drop(self.programs);
            Ok(())
        }
    }
}

/// The ports, as the documents show them.
pub fn topology_document(t: &Topology) -> status::Topology {
    match t {
        Topology::Inline { a, b } => status::Topology::Inline([a.clone(), b.clone()]),
        Topology::Tap { port } => status::Topology::Tap(port.clone()),
    }
}

/// A socket as the status document lists it.
fn socket_status(s: &SocketInfo) -> status::Socket {
    status::Socket {
        port: s.port.clone(),
        queue: s.queue,
        xsk_mode: s.mode,
        poll: s.poll,
        poll_fallback: s.poll_fallback.clone(),
    }
}

/// Tell the operator what the kernel drops on the policy's behalf, and which
/// deny entries it could not take.
fn log_kernel_drops(policy: &PolicyConfig, change: &DenyChange, entries: usize) {
    const SHOWN: usize = 5;
    for e in change.errors.iter().take(SHOWN) {
        tracing::warn!("{e:#} (userspace still denies it)");
    }
    if change.errors.len() > SHOWN {
        tracing::warn!(
            "{} more deny map errors not shown",
            change.errors.len() - SHOWN
        );
    }
    let networks = policy.deny().len();
    let seconds = policy.ratelimit().block_seconds;
    match policy.mode() {
        Mode::Enforce => {
            if networks > 0 {
                tracing::info!(
                    "deny list: {networks} networks, {entries} entries in XDP on every port"
                );
            }
            if seconds > 0 {
                tracing::info!(
                    "sources over their RST rate limit are blocked in XDP for {seconds} s \
                     (ratelimit.block_seconds)"
                );
            }
        }
        Mode::Monitor => {
            if networks > 0 {
                tracing::info!(
                    "deny list: {networks} networks, reported as would-drop \
                     (monitor mode: none in XDP)"
                );
            }
            if seconds > 0 {
                tracing::info!(
                    "sources over their RST rate limit are counted as would-block \
                     (monitor mode: none blocked)"
                );
            }
        }
    }
}

/// The attached programs. Dropped without [`Attached::detach_all`] — a
/// start-up that failed half way, a worker that died, a panic — they stay
/// attached: with no sockets registered the program forwards every packet
/// in the kernel (inline) so a failing rstwall never cuts the wire, and the
/// next start replaces it. Only a clean stop detaches.
struct Attached(Vec<PortProgram>);

impl Attached {
    fn detach_all(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for p in std::mem::take(&mut self.0) {
            let name = p.ifname().to_string();
            if let Err(e) = p.detach() {
                first_error.get_or_insert(anyhow!(e).context(format!("port {name}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::ops::Deref for Attached {
    type Target = [PortProgram];
    fn deref(&self) -> &[PortProgram] {
        &self.0
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.0) {
            tracing::warn!(
                "leaving rstwall's XDP program on {} forwarding in the kernel (fail-open); \
                 a restart takes over, `ip link set dev {} xdp off` removes it",
                p.ifname(),
                p.ifname()
            );
            p.leave_attached();
        }
    }
}

impl SourceView for XskStats {
    fn worker_label(&self) -> (&'static str, String) {
        ("queue", self.queue.to_string())
    }

    fn mode(t: &XskTotals) -> String {
        t.xsk_mode()
    }

    fn line(t: &XskTotals) -> String {
        format!(
            "ring rx_full {} fill_empty {} rx_drop {} tx_invalid {} | frames leaked {} \
             ledger_errors {}",
            t.ring.rx_ring_full,
            t.ring.rx_fill_ring_empty_descs,
            t.ring.rx_dropped,
            t.ring.tx_invalid_descs,
            t.frames.leaked,
            t.frames.ledger_errors,
        )
    }

    fn document(&self) -> SourceWorker {
        SourceWorker {
            afxdp: Some(self.0.clone()),
            host: None,
        }
    }

    fn totals_document(t: &XskTotals) -> SourceTotals {
        SourceTotals {
            afxdp: Some(t.clone()),
            host: None,
        }
    }

    fn families(workers: &[WorkerStats<XskStats>]) -> Vec<MetricFamily> {
        use Kind::{Counter as C, Gauge as G};
        let mut tx_full = MetricFamily::new(
            C,
            "queue_tx_ring_full_drops",
            "Frames passed by the engine but dropped for lack of room on the TX ring.",
        );
        let mut umem = MetricFamily::new(
            G,
            "umem_frames",
            "UMEM frames of each queue by place: free, receive (with the kernel for \
             receiving), in_hand (being judged), transmit (with the kernel for sending).",
        );
        let mut leaked = MetricFamily::new(
            G,
            "umem_frames_leaked",
            "UMEM frames the kernel will not give back (stuck in transmit over two quiet audits).",
        );
        let mut ledger = MetricFamily::new(
            C,
            "umem_ledger_errors",
            "Frame addresses handed back that were not where the ledger had them.",
        );
        let mut guarded = MetricFamily::new(
            G,
            "guard_flows",
            "Flows whose acceptance state is in the in-kernel RST guard's map (--rst-guard): \
             their spoofed RSTs die in XDP.",
        );
        let mut guard_ops = MetricFamily::new(
            C,
            "guard_entries",
            "The RST guard's map entries by what happened: inserted, removed, replaced (the \
             flow's state moved), error (a map operation failed: the flow stays unguarded), \
             full (no room: unguarded).",
        );
        let mut xsk = XskFamilies::new();
        for w in workers {
            let s = &w.source;
            let q = || l1("queue", s.queue);
            tx_full.add(q(), s.tx_ring_full_drops);
            for place in Place::ALL {
                umem.add(
                    l2("queue", s.queue, "place", place.as_str()),
                    place.count_in(&s.frames),
                );
            }
            leaked.add(q(), s.frames.leaked);
            ledger.add(q(), s.frames.ledger_errors);
            for sock in &s.sockets {
                xsk.add(sock);
            }
            if let Some(g) = &s.guard {
                guarded.add(q(), g.guarded);
                for (op, n) in [
                    ("inserted", g.inserted),
                    ("removed", g.removed),
                    ("replaced", g.replaced),
                    ("error", g.errors),
                    ("full", g.full),
                ] {
                    guard_ops.add(l2("queue", s.queue, "op", op), n);
                }
            }
        }
        // Without --rst-guard the two guard families have no samples and
        // are left out.
        let mut out = vec![tx_full, umem, leaked, ledger, guarded, guard_ops];
        out.extend(xsk.into_families());
        out
    }
}

/// The AF_XDP socket families, per port and queue.
struct XskFamilies([MetricFamily; 13]);

impl XskFamilies {
    fn new() -> XskFamilies {
        use Kind::{Counter as C, Gauge as G};
        XskFamilies([
            MetricFamily::new(
                C,
                "xsk_rx_frames",
                "Frames taken from the socket's RX ring.",
            ),
            MetricFamily::new(
                C,
                "xsk_tx_frames",
                "Frames submitted on the socket's TX ring.",
            ),
            MetricFamily::new(
                C,
                "xsk_wakeups",
                "Kernel wake-ups (syscalls) by ring: tx (sendto) or fill (recvfrom).",
            ),
            MetricFamily::new(
                C,
                "xsk_rx_dropped",
                "Received frames the kernel dropped for other reasons (e.g. too large).",
            ),
            MetricFamily::new(C, "xsk_rx_invalid_descriptors", "Invalid RX descriptors."),
            MetricFamily::new(C, "xsk_tx_invalid_descriptors", "Invalid TX descriptors."),
            MetricFamily::new(
                C,
                "xsk_rx_ring_full",
                "Frames the kernel dropped because the RX ring was full: the worker fell behind.",
            ),
            MetricFamily::new(
                C,
                "xsk_fill_ring_empty",
                "Times the kernel found the fill ring empty.",
            ),
            MetricFamily::new(
                C,
                "xsk_tx_ring_empty",
                "Times the kernel found the TX ring empty when woken.",
            ),
            MetricFamily::new(
                G,
                "xsk_zerocopy",
                "1 when the socket is bound in zero-copy mode, 0 in copy mode.",
            ),
            MetricFamily::new(
                G,
                "xsk_poll_mode",
                "1 for the poll mode in effect on the socket (wakeup, spin, busy).",
            ),
            MetricFamily::new(
                G,
                "xsk_poll_fallback",
                "1 when the socket does not run the configured poll mode (busy polling \
                 refused by the kernel, or no NAPI behind it): the status says why.",
            ),
            MetricFamily::new(
                C,
                "xsk_busy_polls",
                "recvfrom() calls that ran the driver's NAPI (poll mode busy).",
            ),
        ])
    }

    fn add(&mut self, sock: &SocketStats) {
        let l = || l2("port", &sock.port, "queue", sock.queue);
        let r = &sock.ring;
        let [rx, tx, wake, rx_drop, rx_inv, tx_inv, rx_full, fill_empty, tx_empty, zc, poll, fallback, busy] =
            &mut self.0;
        rx.add(l(), sock.rx_frames);
        tx.add(l(), sock.tx_frames);
        let mut w = l();
        w.push(("ring", "tx".into()));
        wake.add(w, sock.tx_wakeups);
        let mut w = l();
        w.push(("ring", "fill".into()));
        wake.add(w, sock.fill_wakeups);
        rx_drop.add(l(), r.rx_dropped);
        rx_inv.add(l(), r.rx_invalid_descs);
        tx_inv.add(l(), r.tx_invalid_descs);
        rx_full.add(l(), r.rx_ring_full);
        fill_empty.add(l(), r.rx_fill_ring_empty_descs);
        tx_empty.add(l(), r.tx_ring_empty_descs);
        zc.add(l(), u64::from(sock.mode == XskMode::ZeroCopy));
        let mut m = l();
        m.push(("mode", sock.poll.as_str().into()));
        poll.add(m, 1);
        fallback.add(l(), u64::from(sock.poll_fallback.is_some()));
        busy.add(l(), sock.busy_polls);
    }

    fn into_families(self) -> impl Iterator<Item = MetricFamily> {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwall_afxdp::PollMode;

    #[test]
    fn topology_and_sockets_as_the_documents_show_them() {
        fn json(v: &impl serde::Serialize) -> String {
            serde_json::to_string(v).unwrap()
        }
        let inline = Topology::Inline {
            a: "pa".into(),
            b: "pb".into(),
        };
        let tap = Topology::Tap { port: "t0".into() };
        assert_eq!(
            json(&topology_document(&inline)),
            r#"{"inline":["pa","pb"]}"#
        );
        assert_eq!(json(&topology_document(&tap)), r#"{"tap":"t0"}"#);
        let s = SocketInfo::example();
        assert_eq!(
            json(&socket_status(&s)),
            r#"{"port":"pa","queue":1,"xsk_mode":"zerocopy","poll":"wakeup"}"#
        );
        let s = SocketInfo {
            poll: PollMode::Spin,
            poll_fallback: Some("busy polling refused: SO_BUSY_POLL: EPERM".into()),
            ..s
        };
        assert_eq!(
            json(&socket_status(&s)),
            r#"{"port":"pa","queue":1,"xsk_mode":"zerocopy","poll":"spin","poll_fallback":"busy polling refused: SO_BUSY_POLL: EPERM"}"#
        );
    }
}
