//! Signals for the lab's long-running commands, through `signal-hook`:
//! remove this process's namespaces when it is told to stop, or turn a
//! stop request into a flag.

use std::io;
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
        eprintln!("signal {sig}: deleting this process's network namespaces");
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
