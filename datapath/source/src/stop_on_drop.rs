//! A thread that runs until its owner is dropped.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A named thread whose loop polls a stop flag: dropping this handle
/// raises the flag and joins the thread, so the thread never outlives
/// what owns it (an interface watcher, a lab's sniffer).
pub struct StopOnDrop<T = ()> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<T>>,
}

impl<T: Send + 'static> StopOnDrop<T> {
    /// Spawn `name` running `body(stop)`; `body` should return soon after
    /// `stop` reads true.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) -> T + Send + 'static,
    ) -> io::Result<StopOnDrop<T>> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))?;
        Ok(StopOnDrop {
            stop,
            thread: Some(thread),
        })
    }
}

impl<T> Drop for StopOnDrop<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn dropping_stops_and_joins_the_thread() {
        let rounds = Arc::new(AtomicU32::new(0));
        let seen = rounds.clone();
        let t = StopOnDrop::spawn("stop-on-drop-test", move |stop| {
            assert_eq!(std::thread::current().name(), Some("stop-on-drop-test"));
            while !stop.load(Ordering::Relaxed) {
                seen.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
            seen.store(u32::MAX, Ordering::Relaxed);
        })
        .unwrap();
        drop(t);
        // Joined: the loop has ended and written its last word.
        assert_eq!(rounds.load(Ordering::Relaxed), u32::MAX);
    }
}
