//! Real kernel TCP in the lab's namespaces: threads that join a namespace,
//! listeners and connections, pacing, payloads that prove their integrity.
//!
//! A socket belongs to the namespace of the thread that created it, for
//! its whole life; any thread may use it afterwards.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rstwall_netlab::{sock, Netns, Rng};

/// Run `f` with the calling thread in network namespace `ns` (by name),
/// then bring it back; sockets `f` opens stay in `ns`.
pub fn in_netns<T>(ns: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    Netns::open(ns)?.run(f)?
}

/// Spawn a scoped thread that first joins network namespace `ns`.
pub fn spawn_in<'scope, T: Send + 'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    ns: &'scope str,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'scope,
) -> ScopedJoinHandle<'scope, anyhow::Result<T>> {
    s.spawn(move || {
        Netns::open(ns)?.enter()?;
        f()
    })
}

/// The result of a scoped thread; a panic becomes an error.
pub fn join<T>(h: ScopedJoinHandle<'_, anyhow::Result<T>>, what: &str) -> anyhow::Result<T> {
    h.join()
        .unwrap_or_else(|_| Err(anyhow!("{what}: thread panicked")))
}

/// Accept connections until `done` is set and hand each to `serve`, one at
/// a time (the scenarios' clients are sequential too).
pub fn serve_until(
    listener: &TcpListener,
    done: &AtomicBool,
    mut serve: impl FnMut(TcpStream),
) -> anyhow::Result<u64> {
    let mut n = 0;
    while !done.load(Ordering::Relaxed) {
        if let Some(s) = accept_within(listener, Duration::from_millis(50))? {
            n += 1;
            serve(s);
        }
    }
    Ok(n)
}

/// Sets a flag when dropped: threads waiting for it stop even when the
/// code that should have set it returned early with an error.
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A listener on `addr` in namespace `ns`.
pub fn listen(ns: &str, addr: SocketAddrV4) -> anyhow::Result<TcpListener> {
    in_netns(ns, || {
        TcpListener::bind(addr).map_err(|e| anyhow!("listening on {addr} in {ns}: {e}"))
    })
}

/// Accept one connection, waiting at most `timeout`; `None` on timeout.
pub fn accept_within(l: &TcpListener, timeout: Duration) -> io::Result<Option<TcpStream>> {
    if !sock::wait_readable(l.as_raw_fd(), timeout)? {
        return Ok(None);
    }
    let (s, _) = l.accept()?;
    // No server thread may hang on a client that went away.
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(Some(s))
}

/// Paces a loop at a fixed rate: `wait()` sleeps until the next tick and
/// says whether to go on.
pub struct Pacer<'a> {
    next: Instant,
    every: Duration,
    run: &'a Running<'a>,
}

impl<'a> Pacer<'a> {
    pub fn new(per_sec: f64, run: &'a Running<'a>) -> Pacer<'a> {
        Pacer {
            next: Instant::now(),
            every: Duration::from_secs_f64(1.0 / per_sec.max(0.001)),
            run,
        }
    }

    pub fn wait(&mut self) -> bool {
        let now = Instant::now();
        if self.next > now {
            thread::sleep(self.next - now);
        } else if now - self.next > Duration::from_secs(1) {
            // Far behind (a slow machine): do not burst to catch up.
            self.next = now;
        }
        self.next += self.every;
        self.run.going()
    }
}

/// Until when a scenario sends, and the Ctrl-C flag.
pub struct Running<'a> {
    pub until: Instant,
    pub stop: &'a AtomicBool,
}

impl Running<'_> {
    pub fn going(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.until
    }
}

/// FNV-1a over a byte stream, fed in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest(pub u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Read to the end of the stream; bytes and digest.
pub fn drain(s: &mut TcpStream) -> io::Result<(u64, Digest)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut n, mut d) = (0u64, Digest::default());
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((n, d)),
            Ok(k) => {
                n += k as u64;
                d.update(&buf[..k]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write `len` bytes of a request and read them back (an echo server on
/// the other side); an error says which step failed.
pub fn echo_round(s: &mut TcpStream, len: usize, rng: &mut Rng) -> Result<(), String> {
    let mut req = vec![0u8; len];
    rng.fill(&mut req);
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0u8; len];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    if back != req {
        return Err("the echo differs from the request".into());
    }
    Ok(())
}

/// Echo what arrives until the peer closes (or an error).
pub fn echo_until_eof(s: &mut TcpStream) -> io::Result<u64> {
    let mut buf = [0u8; 4096];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                s.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The first few distinct error texts, and how many errors in all.
#[derive(Debug, Default)]
pub struct Errors {
    pub count: u64,
    pub first: Vec<String>,
}

impl Errors {
    pub fn add(&mut self, e: impl std::fmt::Display) {
        self.count += 1;
        let text = e.to_string();
        if self.first.len() < 3 && !self.first.contains(&text) {
            self.first.push(text);
        }
    }

    /// " (first: ...)" or "".
    pub fn detail(&self) -> String {
        if self.first.is_empty() {
            String::new()
        } else {
            format!(" (first: {})", self.first.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_deterministic_and_digest_sees_every_byte() {
        let (mut a, mut b) = ([0u8; 100], [0u8; 100]);
        rstwall_netlab::rng::seeded(7).fill(&mut a);
        rstwall_netlab::rng::seeded(7).fill(&mut b);
        assert_eq!(a, b);
        let mut d1 = Digest::default();
        d1.update(&a[..50]);
        d1.update(&a[50..]);
        let mut d2 = Digest::default();
        d2.update(&a);
        assert_eq!(d1, d2);
        b[99] ^= 1;
        let mut d3 = Digest::default();
        d3.update(&b);
        assert_ne!(d2, d3);
    }
}
