//! [`GenShared`]: what the sending thread and the thread driving it share.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

/// What the generator and the thread driving it share.
#[derive(Default)]
pub struct GenShared {
    pub stop: AtomicBool,
    /// Frames sent (taken from the TX ring by the kernel, or counted by
    /// the live-frames program).
    pub sent: AtomicU64,
    /// The first frames (handshakes) are out; the main ones follow.
    pub steady: AtomicBool,
    /// When they started (CLOCK_MONOTONIC ns), and `sent` then.
    pub steady_ns: AtomicU64,
    pub steady_sent: AtomicU64,
    /// Everything asked for was sent (a limit was reached).
    pub done: AtomicBool,
    pub tid: AtomicI32,
    /// The second live-frames thread, when there is one.
    pub tid2: AtomicI32,
    /// The AF_XDP socket is in zero-copy mode.
    pub zero_copy: AtomicBool,
    pub error: Mutex<Option<String>>,
}

impl GenShared {
    /// The generator's error, if it had one (taken: asked once).
    pub fn take_error(&self) -> Result<()> {
        match self.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(e) => Err(anyhow!("generator: {e}")),
            None => Ok(()),
        }
    }
}
