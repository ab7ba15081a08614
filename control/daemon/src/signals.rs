//! The signals the daemon answers: SIGINT and SIGTERM stop it, SIGHUP
//! reloads. `signal-hook` turns each into a byte on a self-pipe, so the
//! main loop can wait for one with a timeout (it must wake regularly to
//! collect the workers' statistics anyway) and handle it in its own time,
//! outside the signal handler.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

/// What a signal asks of the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM (its name).
    Stop(&'static str),
    /// SIGHUP.
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP, caught from installation until dropped.
pub struct Signals(SignalDelivery<UnixStream, SignalOnly>);

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        Ok(Signals(SignalDelivery::with_pipe(
            read,
            write,
            SignalOnly,
            [SIGINT, SIGTERM, SIGHUP],
        )?))
    }

    /// The signals that arrived, waiting up to `timeout` for the first; a
    /// stop comes before a reload that arrived with it.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<Signal>> {
        self.0.get_read().set_read_timeout(Some(timeout))?;
        let arrived = |pipe: &mut UnixStream| match pipe.read(&mut [0u8]) {
            Ok(n) => Ok(n > 0),
            Err(e) if rstwall_api::http::nothing_yet(&e) => Ok(false),
            Err(e) => Err(e),
        };
        let Some(pending) = self.0.poll_pending(&mut { arrived })? else {
            return Ok(None);
        };
        let mut got = None;
        for sig in pending {
            match sig {
                SIGINT => return Ok(Some(Signal::Stop("SIGINT"))),
                SIGTERM => return Ok(Some(Signal::Stop("SIGTERM"))),
                SIGHUP => got = Some(Signal::Reload),
                _ => {}
            }
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_signal_wakes_the_wait_and_none_times_out() {
        let mut s = Signals::install().unwrap();
        let t = Instant::now();
        assert_eq!(s.wait(Duration::from_millis(30)).unwrap(), None);
        assert!(
            t.elapsed() >= Duration::from_millis(25),
            "{:?}",
            t.elapsed()
        );
        signal_hook::low_level::raise(SIGHUP).unwrap();
        let t = Instant::now();
        assert_eq!(
            s.wait(Duration::from_secs(5)).unwrap(),
            Some(Signal::Reload)
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(
            s.wait(Duration::from_millis(1)).unwrap(),
            None,
            "taken once"
        );
    }
}
