//! The bench's three network namespaces and two veth pairs:
//!
//! ```text
//!   gen ns (client)        appliance ns                        sink ns (server)
//!   rwg<pid> ─veth─ rwa<pid> ══ forwarder ══ rwb<pid> ─veth─ rws<pid>
//!   198.18.250.1/24                                          198.18.250.2/24
//! ```
//!
//! Built with rstwall-netlab. Names carry this process's id. [`Lab`]
//! deletes the namespaces (and with them the veths and the programs on
//! them) when dropped, on a panic too; [`delete_on_signal`] does it when
//! the run is interrupted. Nothing outside these namespaces is touched,
//! and only addresses of 198.18.0.0/15 are used.
//!
//! The generator's and the sink's veths are also the hosts of a real
//! kernel TCP connection ([`CLIENT`] to [`SERVER`]; one /24, so whatever
//! sits in the appliance namespace is a bump in the wire). Their neighbour
//! entries are static: ARP would need the appliance's non-TCP path, which
//! needs NAPI on the hosts' veths, which would put GRO in front of the
//! sink's counter. Like the end-to-end tests' lab, the hosts do no TX
//! checksum offload (a frame handed to AF_XDP would keep a partial
//! checksum). The appliance's ports have GRO off: no contender gets to
//! merge segments (it has no effect on frames that XDP redirects).

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rstwall_netlab::ethtool::{self, Offload};
pub use rstwall_netlab::{on_stop_signal, Netns};
use rstwall_netlab::{Mac, Namespaces, Veth};

/// The real TCP connection's client (in the generator's namespace) and
/// server (in the sink's).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 2);
/// The hosts' MACs.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x72, 0x77, 0x63, 0, 1];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x72, 0x77, 0x63, 0, 2];

/// The namespaces and the names of the four veth ends.
pub struct Lab {
    pub gen: Arc<Netns>,
    pub app: Arc<Netns>,
    pub sink: Arc<Netns>,
    /// The generator's end, in `gen`.
    pub gen_if: String,
    /// The appliance's ports, in `app`: A faces the generator.
    pub port_a: String,
    pub port_b: String,
    /// The sink's end, in `sink`.
    pub sink_if: String,
    /// Deletes the namespaces when the lab is dropped.
    _namespaces: Namespaces,
}

impl Lab {
    /// The lab, its namespaces named after `tag` and this process.
    pub fn new(tag: &str) -> Result<Lab> {
        let pid = std::process::id();
        // From here on every namespace created is deleted when
        // `namespaces` goes, also when a later step fails.
        let mut namespaces = Namespaces::unique(tag);
        let gen = namespaces.add("gen")?;
        let app = namespaces.add("app")?;
        let sink = namespaces.add("sink")?;
        let (gen_if, port_a, port_b, sink_if) = (
            format!("rwg{pid}"),
            format!("rwa{pid}"),
            format!("rwb{pid}"),
            format!("rws{pid}"),
        );
        let (client_mac, server_mac) = (Mac(CLIENT_MAC), Mac(SERVER_MAC));
        for (ns, a, a_mac, b) in [
            (&gen, &gen_if, client_mac, &port_a),
            (&sink, &sink_if, server_mac, &port_b),
        ] {
            let end = Veth {
                mac: Some(a_mac),
                ..Veth::default()
            };
            ns.add_veth(a, &app, b, &end)?;
        }
        for (ns, dev, addr, peer, peer_mac) in [
            (&gen, &gen_if, CLIENT, SERVER, server_mac),
            (&sink, &sink_if, SERVER, CLIENT, client_mac),
        ] {
            ns.add_addr(dev, &format!("{addr}/24"))?;
            ns.add_neighbour(dev, &peer.to_string(), peer_mac)?;
            ns.run(|| ethtool::set(dev, Offload::TxChecksum, false))?
                .with_context(|| format!("TX checksum offload off on {dev}"))?;
        }
        for port in [&port_a, &port_b] {
            app.run(|| ethtool::set(port, Offload::Gro, false))?
                .with_context(|| format!("GRO off on {port}"))?;
        }
        for (ns, dev) in [
            (&gen, &gen_if),
            (&app, &port_a),
            (&app, &port_b),
            (&sink, &sink_if),
        ] {
            ns.set_up(dev)?;
        }
        Ok(Lab {
            gen,
            app,
            sink,
            gen_if,
            port_a,
            port_b,
            sink_if,
            _namespaces: namespaces,
        })
    }
}

/// Delete the namespaces of every [`Lab`] of this process when SIGINT,
/// SIGTERM or SIGHUP arrives, then exit (call it before [`Lab::new`]).
pub fn delete_on_signal() -> Result<()> {
    rstwall_netlab::remove_on_signal().context("catching stop signals")
}

/// Something that must go where it was made: a BPF program attached to an
/// interface of `ns`, or a hook on one (an ifindex means nothing in
/// another namespace). Dropped from inside `ns`.
pub struct InNs<T> {
    ns: Arc<Netns>,
    inner: Option<T>,
}

impl<T> InNs<T> {
    /// Make it inside `ns`.
    pub fn make(ns: &Arc<Netns>, make: impl FnOnce() -> Result<T>) -> Result<InNs<T>> {
        let inner = ns.run(make)??;
        Ok(InNs {
            ns: ns.clone(),
            inner: Some(inner),
        })
    }
}

impl<T> std::ops::Deref for InNs<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for InNs<T> {
    fn drop(&mut self) {
        let inner = self.inner.take();
        // Dropped here anyway if the namespace cannot be entered: better
        // a detach that misses than a leak.
        let _ = self.ns.run(move || drop(inner));
    }
}
