//! The few system facts the datapath needs: interfaces, queues, root; and
//! (from [`rstwall_source::sys`], where every source finds them) CPUs and
//! time.

use std::io;
use std::path::Path;

pub use rstwall_source::sys::{allowed_cpus, now_ns, pin_current_thread};

/// The interface index of `ifname`, or `NotFound`.
pub fn ifindex(ifname: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(ifname)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name has a NUL"))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {ifname:?}"),
        ));
    }
    Ok(index)
}

/// RX queues of `ifname`, counted in `/sys/class/net/IF/queues` (`rx-N`
/// directories). That is what the driver registered (`real_num_rx_queues`),
/// the same number `ethtool -l` reports as combined + rx channels in use.
pub fn rx_queue_count(ifname: &str) -> io::Result<u32> {
    let dir = Path::new("/sys/class/net").join(ifname).join("queues");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
    {
        if entry?.file_name().to_string_lossy().starts_with("rx-") {
            n += 1;
        }
    }
    Ok(n)
}

/// Whether the effective user is root (AF_XDP and XDP need CAP_NET_ADMIN,
/// CAP_BPF and CAP_NET_RAW; root has them).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
