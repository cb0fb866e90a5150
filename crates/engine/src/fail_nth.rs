//! Fault injection: one hook that every fallible allocation and pin calls.
//!
//! The idea of the kernel's `iommufd_fail_nth`: arm the hook to fail the n-th
//! call, run an operation, and check that it unwound to exactly the state it
//! started from. Sweeping n = 1, 2, … until the operation succeeds visits
//! every failure point.
//!
//! Two counters: the engine's own ([`FailNth::fail_nth`], shared by every
//! context, for the library's tests) and a task's (the thread's
//! [`set_task_fail_nth`]), which is what Linux's `/proc/<pid>/task/<tid>/
//! fail-nth` arms. The server serves each program thread's calls on one
//! thread of its own, so the program's per-task counter is that thread's.

use crate::errno::{Errno, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Shared fail-nth counter. Cheap to clone; disarmed by default.
#[derive(Clone, Debug, Default)]
pub struct FailNth {
    state: Arc<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Calls left before the failing one; 0 = disarmed.
    countdown: AtomicU64,
    /// Every hook call since creation, armed or not.
    calls: AtomicU64,
}

impl FailNth {
    /// Makes the `n`-th hook call from now fail (n ≥ 1); `n = 0` disarms.
    pub fn fail_nth(&self, n: u64) {
        self.state.countdown.store(n, Ordering::SeqCst);
    }

    /// Whether an armed failure is still pending (the operation did not reach it).
    pub fn pending(&self) -> bool {
        self.state.countdown.load(Ordering::SeqCst) != 0
    }

    /// Total hook calls so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }

    /// The hook: `Err(ENOMEM)` when this is the armed call. A task's
    /// armed counter counts first, as Linux's `should_fail` consults
    /// `current->fail_nth` before anything else.
    pub fn check(&self) -> Result<()> {
        self.state.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = TASK_COUNTDOWN.with(|c| {
            let left = c.get();
            (left != 0).then(|| {
                c.set(left - 1);
                left == 1
            })
        }) {
            return if hit { Err(Errno::ENOMEM) } else { Ok(()) };
        }
        let hit = self
            .state
            .countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                if c == 0 {
                    None
                } else {
                    Some(c - 1)
                }
            })
            .map(|before| before == 1)
            .unwrap_or(false);
        if hit {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }
}

thread_local! {
    /// The calling task's countdown: hook calls left before the failing
    /// one; 0 = disarmed (a new task starts disarmed, as in Linux).
    static TASK_COUNTDOWN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Arms this thread's counter: the `n`-th hook call it makes from now on
/// fails (n ≥ 1); `n = 0` disarms.
pub fn set_task_fail_nth(n: u64) {
    TASK_COUNTDOWN.with(|c| c.set(n));
}

/// What is left of this thread's counter: 0 once the armed call failed
/// (or when it was never armed).
pub fn task_fail_nth() -> u64 {
    TASK_COUNTDOWN.with(std::cell::Cell::get)
}
