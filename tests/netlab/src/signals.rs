//! Signals for the lab's long-running commands, through `signal-hook`:
//! remove this process's namespaces when it is told to stop, or turn a
//! stop request into a flag.

use std::io::{self, Write};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The signals that ask a command to stop.
const STOP: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Run `then` with the first SIGINT, SIGTERM or SIGHUP, on a thread of its
/// own named `name`. The signals no longer kill the process by themselves.
pub fn on_stop_signal(name: &str, then: impl FnOnce(i32) + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new(STOP)?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                then(sig);
            }
        })?;
    Ok(())
}

/// On SIGINT, SIGTERM or SIGHUP, delete every namespace this process's
/// [`crate::Namespaces`] guards still hold, then exit with 128 + the
/// signal: an interrupted benchmark or lab leaves nothing behind.
pub fn remove_on_signal() -> io::Result<()> {
    on_stop_signal("netlab-signals", |sig| {
        // Not eprintln!: it panics when stderr cannot be written (EPIPE:
        // the lab's output piped to a reader that went away; EIO: a
        // terminal that hung up), and a panic here would end the only
        // thread that listens for the signals, leaving the process deaf
        // to SIGTERM with its namespaces in place.
        let _ = writeln!(
            io::stderr(),
            "signal {sig}: deleting this process's network namespaces"
        );
        crate::netns::delete_live();
        std::process::exit(128 + sig);
    })
}

/// From now on SIGINT (Ctrl-C) and SIGTERM set the returned flag instead
/// of killing the process — once: a second one ends it (exit status 130).
/// The flag is the process's one; later calls return it again.
pub fn catch_stop_signals() -> io::Result<&'static AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    if let Some(flag) = FLAG.get() {
        return Ok(flag);
    }
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(FLAG.get_or_init(|| flag))
}

/// Send `sig` to process `pid`; false if there is no such process.
pub fn signal_process(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Run by the test below in a child process: signals armed, then
    /// waiting to be stopped.
    #[test]
    #[ignore = "a helper: run as a child process by a_stop_signal_ends_the_process_with_stderr_broken"]
    fn child_waits_for_a_stop_signal() {
        if std::env::var_os("NETLAB_SIGNAL_CHILD").is_none() {
            return;
        }
        remove_on_signal().unwrap();
        println!("armed");
        io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(30));
    }

    /// The signal thread reports on stderr; with nobody reading stderr any
    /// more (a pipe whose reader went away: writes fail with EPIPE) it
    /// still removes the namespaces and exits.
    #[test]
    fn a_stop_signal_ends_the_process_with_stderr_broken() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "signals::tests::child_waits_for_a_stop_signal",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("NETLAB_SIGNAL_CHILD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stderr.take());
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|l| l.is_ok_and(|l| l.contains("armed"))),
            "the child armed its signals"
        );
        assert!(signal_process(child.id(), libc::SIGTERM));
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("SIGTERM did not end a process whose stderr is a broken pipe");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status}");
    }
}
