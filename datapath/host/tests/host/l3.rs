//! An L3 device without a link header (tun): host mode reads its frames
//! as bare IP, and a refused connect through it is judged and agreed on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use rstwall_engine::class::RstClass;
use rstwall_host::{Agreement, Direction, LinkKind, Received};

use crate::support::{ipv4_rst, HostRun};

const IFF_TUN: i16 = 0x0001;
const IFF_NO_PI: i16 = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// A tun device named `name` in the calling thread's namespace, and the
/// file its packets come out of.
fn tun(name: &str) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("/dev/net/tun");
    let mut req = [0u8; 40];
    req[..name.len()].copy_from_slice(name.as_bytes());
    req[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF with an ifreq-sized buffer.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, req.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    f
}

/// The RST|ACK a closed port answers `syn` (a bare IPv4 SYN) with.
fn refusal(syn: &[u8]) -> Vec<u8> {
    let ihl = usize::from(syn[0] & 0x0f) * 4;
    let t = &syn[ihl..];
    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    ipv4_rst(
        SocketAddrV4::new(ip(&syn[16..20]), port(&t[2..4])),
        SocketAddrV4::new(ip(&syn[12..16]), port(&t[0..2])),
        0,
        Some(seq.wrapping_add(1)),
    )
}

#[test]
fn a_refused_connect_through_tun_is_judged() {
    let run = HostRun::start("host-tun");
    let mut dev = run.ns.run(|| tun("rwtun0")).unwrap();
    run.ns.add_addr("rwtun0", "198.19.0.1/24").unwrap();
    run.ns.set_up("rwtun0").unwrap();
    // The device appeared after host mode started: it is observed too.
    std::thread::sleep(Duration::from_millis(300));
    let iface = run
        .source()
        .interfaces()
        .into_iter()
        .find(|i| i.name == "rwtun0")
        .expect("the new interface is observed");
    assert_eq!(iface.link, Some(LinkKind::RawIp), "{iface:?}");

    let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 2)), 7600);
    let client = run
        .ns
        .spawn(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))
        .unwrap();
    // Answer the first SYN that comes out of the device.
    let mut buf = [0u8; 2048];
    loop {
        let n = dev.read(&mut buf).unwrap();
        let p = &buf[..n];
        if n >= 40 && p[0] >> 4 == 4 && p[9] == 6 && p[20 + 13] & 0x02 != 0 {
            dev.write_all(&refusal(p)).unwrap();
            break;
        }
    }
    let e = client.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);

    let events = run.events_until(Duration::from_secs(3), |e| !e.is_empty());
    let e = events.first().expect("an event for the refusal");
    assert_eq!((e.iface.as_str(), e.direction), ("rwtun0", Direction::In));
    assert_eq!(e.rst.class, RstClass::Refused);
    assert_eq!(
        e.kernel.received,
        Some(Received::Reset { state: "SYN-SENT" })
    );
    assert_eq!(e.agreement, Agreement::Agrees);
}
