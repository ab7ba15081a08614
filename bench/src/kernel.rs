//! The kernel contender: Linux forwarding with nftables, in the appliance
//! namespace, as a bridge.
//!
//! A bridge, not a router, because rstwall inline is a bump in the wire:
//! the same frames, MACs untouched, reach the sink, no TTL is decremented
//! and no neighbour lookup happens — only the firewall differs. The bridge
//! hands IPv4 and IPv6 to netfilter's inet hooks (`nf_call_iptables`,
//! `nf_call_ip6tables`: br_netfilter; this kernel has no bridge-family
//! conntrack), where conntrack tracks every connection and one table holds
//! the two rules an operator would write to stop spoofed resets:
//!
//! ```text
//! table inet rstwall_bench {
//!   chain forward {
//!     type filter hook forward priority filter; policy accept;
//!     ct state invalid counter drop
//!     tcp flags & rst == rst limit rate over R/second burst B packets counter drop
//!   }
//! }
//! ```
//!
//! Conntrack's TCP window tracking marks RSTs outside the window invalid
//! (and, since Linux 5.19, lets an in-window RST through without closing
//! the connection unless its sequence number is exact); the limit caps
//! all RSTs together, by default at the global rate and burst of rstwall's
//! `[ratelimit]` section.
//!
//! Both ports get an XDP program ([`rstwall_bpf::bench::CpuSteer`], one
//! for the two) that hands every frame to the forwarder's CPU through a
//! cpumap — the XDP
//! equivalent of steering a NIC queue's interrupts to a core. So, as for
//! rstwall, the ports' receive (the XDP program) runs where the frame
//! arrives, and everything else — building the socket buffer, bridging,
//! conntrack, nftables, the transmit on the other port — on the forwarder's
//! CPU, where rstwall's worker runs. (RPS would do the same but queue in
//! the per-CPU backlog that the sink's own receive, on the same CPU in
//! this lab, needs too.) The program also makes the veths run NAPI and
//! takes TSO off their peers exactly as rstwall's does, so every contender
//! sees the same frames; the lab has GRO off on both ports.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rstwall_bpf::bench::CpuSteer;

use crate::frame::DST_MAC;
use crate::lab::{InNs, Lab, Netns};

const TABLE: &str = "rstwall_bench";
const BRIDGE: &str = "rwbr0";

/// The RST limit of the nftables rules.
#[derive(Clone, Copy, Debug)]
pub struct RstLimit {
    pub rate: u64,
    pub burst: u64,
}

/// What the rules counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct NftCounters {
    /// Dropped as `ct state invalid`.
    pub invalid: u64,
    /// Dropped by the RST limit.
    pub rst_limited: u64,
}

/// The bridge and its rules, up; taken down by [`KernelBridge::stop`] (or,
/// failing that, when dropped).
pub struct KernelBridge {
    ns: Arc<Netns>,
    _steer: InNs<CpuSteer>,
    up: bool,
}

pub fn ruleset(limit: RstLimit) -> String {
    format!(
        "table inet {TABLE} {{\n  chain forward {{\n    type filter hook forward priority \
         filter; policy accept;\n    ct state invalid counter drop\n    tcp flags & rst == \
         rst limit rate over {}/second burst {} packets counter drop\n  }}\n}}\n",
        limit.rate, limit.burst
    )
}

impl KernelBridge {
    /// Bridge A and B, their receive steered to `cpu`, with the rules.
    pub fn start(lab: &Lab, cpu: usize, limit: RstLimit) -> Result<KernelBridge> {
        let ns = &lab.app;
        let steer = InNs::make(ns, || {
            let mut steer = CpuSteer::load(cpu as u32, CPUMAP_QSIZE)?;
            for port in [&lab.port_a, &lab.port_b] {
                let ifindex = rstwall_afxdp::sys::ifindex(port)?;
                steer
                    .attach(ifindex)
                    .with_context(|| format!("XDP steering program on {port}"))?;
            }
            Ok(steer)
        })?;
        let k = KernelBridge {
            ns: ns.clone(),
            _steer: steer,
            up: true,
        };
        let n = ns.name();
        run(&[
            "ip",
            "-n",
            n,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "nf_call_iptables",
            "1",
            "nf_call_ip6tables",
            "1",
        ])?;
        for port in [&lab.port_a, &lab.port_b] {
            run(&["ip", "-n", n, "link", "set", port, "master", BRIDGE])?;
        }
        run(&["ip", "-n", n, "link", "set", BRIDGE, "up"])?;
        // The bench's frames go to DST_MAC: known behind B, as a real
        // sink's address would be once learnt (not flooded).
        let mac = DST_MAC.map(|b| format!("{b:02x}")).join(":");
        run(&[
            "bridge",
            "-n",
            n,
            "fdb",
            "add",
            &mac,
            "dev",
            &lab.port_b,
            "master",
            "static",
        ])?;
        // Entries of an earlier run would judge this run's handshakes.
        ns.run(flush_conntrack)?
            .context("flushing conntrack in the appliance namespace")?;
        nft(n, Some(&ruleset(limit)), &["-f", "-"]).context("loading the nftables rules")?;
        Ok(k)
    }

    /// What the rules counted so far.
    pub fn counters(&self) -> Result<NftCounters> {
        let text = nft(self.ns.name(), None, &["list", "table", "inet", TABLE])?;
        let counts: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let rest = &l[l.find("counter packets ")? + "counter packets ".len()..];
                rest.split_whitespace().next()?.parse().ok()
            })
            .collect();
        match counts[..] {
            [invalid, rst_limited] => Ok(NftCounters {
                invalid,
                rst_limited,
            }),
            _ => bail!("unexpected nft listing:\n{text}"),
        }
    }

    /// Take the rules and the bridge down; the ports go back to plain
    /// veths (the steering programs are detached when `self` drops).
    pub fn stop(mut self) -> Result<()> {
        self.up = false;
        self.teardown()
    }

    fn teardown(&self) -> Result<()> {
        let n = self.ns.name();
        let rules = nft(n, None, &["delete", "table", "inet", TABLE]);
        let bridge = run(&["ip", "-n", n, "link", "del", BRIDGE]);
        rules.and(bridge).map(|_| ())
    }
}

impl Drop for KernelBridge {
    fn drop(&mut self) {
        if self.up {
            let _ = self.teardown();
        }
    }
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("run {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `nft ARGS` in namespace `ns`, `stdin` fed; its output.
fn nft(ns: &str, stdin: Option<&str>, args: &[&str]) -> Result<String> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run nft (Debian package nftables: scripts/setup installs it)")?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Delete every conntrack entry of the calling thread's namespace (what
/// `conntrack -F` does: an IPCTNL_MSG_CT_DELETE without a tuple).
fn flush_conntrack() -> Result<()> {
    const NETLINK_NETFILTER: i32 = 12;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    const NLMSG_ERROR: u16 = 2;
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink socket");
    }
    // SAFETY: a new fd we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // nlmsghdr (16 bytes) + nfgenmsg (family AF_UNSPEC: all; version 0).
    let mut msg = [0u8; 20];
    msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // SAFETY: an all-zero sockaddr_nl is the kernel's address.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: valid buffer and address of the sizes given.
    let rc = unsafe {
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("netlink send");
    }
    let mut buf = [0u8; 4096];
    // SAFETY: valid buffer.
    let n = unsafe {
        libc::recv(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
        )
    };
    if n < 20 {
        return Err(std::io::Error::last_os_error()).context("netlink receive");
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    let error = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    // ENOENT: nothing to flush.
    if kind != NLMSG_ERROR || (error != 0 && error != -libc::ENOENT) {
        bail!(
            "conntrack flush: {}",
            std::io::Error::from_raw_os_error(-error)
        );
    }
    Ok(())
}

/// Frames a cpumap entry queues for its CPU.
const CPUMAP_QSIZE: u32 = 2048;
