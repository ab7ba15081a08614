//! Kernel TCP sockets as a lab drives and inspects them: a socket bound to
//! a chosen port before it connects or listens, and what the kernel says
//! about it — the TCP state (`TCP_INFO`), the pending error (`SO_ERROR`),
//! the bytes queued, what a `recv()` would return right now — and the
//! linger-0 abort.
//!
//! Every `unsafe` block is one system call on a descriptor the caller
//! owns, with buffers of the size the call expects.

use std::fmt;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub(crate) fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int-sized buffer.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// A `sockaddr_storage` for `addr`, and its length.
pub(crate) fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A TCP socket bound to `local` (SO_REUSEADDR, TCP_NODELAY), in the
/// calling thread's namespace, ready to [`listen`] or connect.
pub fn bound_tcp(local: SocketAddr) -> io::Result<OwnedFd> {
    let domain = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = socket(domain, libc::SOCK_STREAM, 0)?;
    setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32)?;
    setsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, &1i32)?;
    let (ss, len) = sockaddr(local);
    // SAFETY: a valid sockaddr of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    } != 0
    {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("binding {local}: {e}")));
    }
    Ok(fd)
}

/// Listen on a [`bound_tcp`] socket with an accept queue of `backlog`.
pub fn listen(fd: OwnedFd, backlog: i32) -> io::Result<TcpListener> {
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// Connect a [`bound_tcp`] socket to `dst`, waiting at most `timeout`.
pub fn connect(fd: OwnedFd, dst: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = connect_start(fd, dst)?;
    if !wait_writable(stream.as_raw_fd(), timeout)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connecting to {dst}"),
        ));
    }
    if let Some(e) = so_error(stream.as_raw_fd())? {
        return Err(e);
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Start connecting a [`bound_tcp`] socket to `dst` and return at once: the
/// stream is non-blocking, and writable once the handshake is done.
pub fn connect_start(fd: OwnedFd, dst: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(true)?;
    let (ss, len) = sockaddr(dst);
    // SAFETY: a valid sockaddr of `len` bytes.
    let rc = unsafe {
        libc::connect(
            stream.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(stream)
}

/// The kernel's TCP states (`include/net/tcp_states.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A number this list does not know.
    Other(u8),
}

impl TcpState {
    pub fn from_kernel(n: u8) -> TcpState {
        use TcpState::*;
        match n {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            n => Other(n),
        }
    }

    /// The kernel's name (`ESTABLISHED`, `CLOSE_WAIT`...).
    pub fn as_str(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            Other(_) => "?",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpState::Other(n) => write!(f, "?{n}"),
            s => f.write_str(s.as_str()),
        }
    }
}

/// The kernel's TCP state of a socket (`TCP_INFO`'s first byte).
pub fn tcp_state(fd: RawFd) -> io::Result<TcpState> {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpState::from_kernel(info[0]))
}

/// Read and clear the socket's pending error (`SO_ERROR`).
pub fn so_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let err = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR)?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// Bytes waiting in a socket's receive queue (FIONREAD).
pub fn bytes_queued(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// SO_LINGER {on, 0}: the next close() aborts the connection with a RST.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger)
}

/// What a non-blocking `recv()` returns right now.
#[derive(Debug)]
pub enum RecvNow {
    WouldBlock,
    Eof,
    Data(usize),
    Error(io::Error),
}

/// A non-blocking `recv()` (of at most 4 KiB, consumed).
pub fn try_recv(fd: RawFd) -> RecvNow {
    let mut buf = [0u8; 4096];
    // SAFETY: a valid buffer of the given length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match n {
        0 => RecvNow::Eof,
        n if n > 0 => RecvNow::Data(n as usize),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                RecvNow::WouldBlock
            } else {
                RecvNow::Error(e)
            }
        }
    }
}

/// One TCP socket of a namespace, as `/proc/net/tcp` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: TcpState,
}

/// Every IPv4 and IPv6 TCP socket of the calling thread's namespace
/// (`/proc/thread-self/net/tcp{,6}`, what `ss -tan` reads), TIME_WAIT
/// ones included.
pub fn tcp_sockets() -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for file in ["tcp", "tcp6"] {
        let text = match std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound && file == "tcp6" => continue,
            Err(e) => return Err(e),
        };
        out.extend(text.lines().skip(1).filter_map(parse_proc_tcp_line));
    }
    Ok(out)
}

/// `sl local_address rem_address st ...`, addresses as `HEXADDR:HEXPORT`.
fn parse_proc_tcp_line(line: &str) -> Option<Listed> {
    let mut cols = line.split_whitespace().skip(1);
    let port = |a: &str| u16::from_str_radix(a.rsplit_once(':')?.1, 16).ok();
    let local_port = port(cols.next()?)?;
    let remote_port = port(cols.next()?)?;
    let state = TcpState::from_kernel(u8::from_str_radix(cols.next()?, 16).ok()?);
    Some(Listed {
        local_port,
        remote_port,
        state,
    })
}

fn poll_one(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0 && p.revents & (events | libc::POLLERR | libc::POLLHUP) != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Wait until `fd` is readable (a listener: a connection to accept), at
/// most `timeout`. True if it is.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    poll_one(fd, libc::POLLIN, timeout)
}

/// Wait until `fd` is writable (a connecting socket: the handshake ended,
/// either way), at most `timeout`.
pub fn wait_writable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    poll_one(fd, libc::POLLOUT, timeout)
}

/// The symbolic name of an errno (`ECONNRESET`), as the kernel's headers
/// spell it, for reports; `errno N` for the ones a lab never meets.
pub fn errno_name(e: &io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::ECONNRESET) => "ECONNRESET",
        Some(libc::ECONNREFUSED) => "ECONNREFUSED",
        Some(libc::ECONNABORTED) => "ECONNABORTED",
        Some(libc::EPIPE) => "EPIPE",
        Some(libc::ETIMEDOUT) => "ETIMEDOUT",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::EINPROGRESS) => "EINPROGRESS",
        Some(libc::ENOTCONN) => "ENOTCONN",
        Some(libc::EHOSTUNREACH) => "EHOSTUNREACH",
        Some(libc::ENETUNREACH) => "ENETUNREACH",
        Some(libc::EBADF) => "EBADF",
        Some(n) => return format!("errno {n}"),
        None => return e.to_string(),
    };
    name.to_string()
}

/// Close `stream` with linger 0: the kernel aborts the connection with a
/// RST and keeps no TIME_WAIT.
pub fn abort(stream: TcpStream) -> io::Result<()> {
    set_linger_zero(stream.as_raw_fd())?;
    drop(stream);
    Ok(())
}

/// Name the calling thread (its `comm`, at most 15 bytes), as a program
/// names itself: what host mode reports as the process behind a socket.
pub fn set_comm(name: &str) -> io::Result<()> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: PR_SET_NAME with a NUL-terminated string (the kernel keeps
    // at most 15 bytes of it).
    if unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The classic case of host mode: the calling thread, named `comm`,
/// connects to `to` (where nothing listens) `n` times, `every` apart, and
/// each connect must be refused (ECONNREFUSED); anything else is an error.
pub fn refused_connects(comm: &str, to: SocketAddr, n: usize, every: Duration) -> io::Result<()> {
    set_comm(comm)?;
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(every);
        }
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "connect {} to {to}: accepted, not refused",
                    i + 1
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn states_and_queues_of_a_loopback_connection() {
        let lfd = bound_tcp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let listener = listen(lfd, 4).unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(tcp_state(listener.as_raw_fd()).unwrap(), TcpState::Listen);
        let cfd = bound_tcp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let mut c = connect(cfd, addr, Duration::from_secs(5)).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        assert_eq!(tcp_state(c.as_raw_fd()).unwrap(), TcpState::Established);
        c.write_all(b"hello").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while bytes_queued(s.as_raw_fd()).unwrap() < 5 {
            assert!(std::time::Instant::now() < deadline, "bytes never queued");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(try_recv(c.as_raw_fd()), RecvNow::WouldBlock));
        abort(c).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), 5);
        let e = s
            .read(&mut buf)
            .expect_err("the abort resets the server side");
        assert_eq!(errno_name(&e), "ECONNRESET");
        assert_eq!(tcp_state(s.as_raw_fd()).unwrap(), TcpState::Close);
        assert_eq!(TcpState::from_kernel(8).to_string(), "CLOSE_WAIT");
        assert_eq!(TcpState::from_kernel(99).to_string(), "?99");
    }

    #[test]
    fn proc_net_tcp_lines_parse() {
        let l = "   3: 020012C6:1F90 010012C6:A7F9 06 00000000:00000000 03:00000F9E 00000000     0        0 0 3 0000000000000000";
        assert_eq!(
            parse_proc_tcp_line(l),
            Some(Listed {
                local_port: 8080,
                remote_port: 0xa7f9,
                state: TcpState::TimeWait
            })
        );
        assert_eq!(parse_proc_tcp_line("  sl  local_address"), None);
        let listed = tcp_sockets().expect("/proc/thread-self/net/tcp");
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let listed_after = tcp_sockets().unwrap();
        assert!(!listed
            .iter()
            .any(|s| s.local_port == port && s.state == TcpState::Listen));
        assert!(listed_after
            .iter()
            .any(|s| s.local_port == port && s.state == TcpState::Listen));
    }

    #[test]
    fn a_refused_connect_reports_econnrefused() {
        // Bind and close a listener: its port is then (almost surely) closed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let cfd = bound_tcp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let e = connect(cfd, port, Duration::from_secs(5)).expect_err("nobody listens");
        assert_eq!(errno_name(&e), "ECONNREFUSED");
    }
}
