//! Which devices' DMA a thread's calls moved, for a watcher such as a
//! trace that wants them without every caller passing [`Affected`] along.
//!
//! Off by default; while on, every group move is noted on the thread that
//! made it, and that thread takes its notes after each call. A thread that
//! never takes them keeps at most [`KEPT_MAX`].
//!
//! [`Affected`]: crate::Affected

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The most devices one thread keeps noted before it takes them.
pub const KEPT_MAX: usize = 4096;

static RECORDING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static MOVED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Starts (or stops) noting group moves, for every thread.
pub fn record_dma_changes(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// Whether group moves are being noted.
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// Notes that the devices named `names` now translate through another
/// domain (by name: a hot-unplugged device's id is reused).
pub(crate) fn note<'a>(names: impl Iterator<Item = &'a str>) {
    if !recording() {
        return;
    }
    MOVED.with(|m| {
        let mut m = m.borrow_mut();
        for name in names {
            if m.len() < KEPT_MAX && !m.iter().any(|n| n == name) {
                m.push(name.to_owned());
            }
        }
    });
}

/// The names of the devices this thread's calls moved since it last took
/// them, each once, in the order first moved.
pub fn take_dma_changes() -> Vec<String> {
    MOVED.with(|m| std::mem::take(&mut *m.borrow_mut()))
}
