//! Fault injection: one hook that every fallible allocation and pin calls.
//!
//! The idea of the kernel's `iommufd_fail_nth`: arm the hook to fail the n-th
//! call, run an operation, and check that it unwound to exactly the state it
//! started from. Sweeping n = 1, 2, … until the operation succeeds visits
//! every failure point.

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

    /// The hook: `Err(ENOMEM)` when this is the armed call.
    pub fn check(&self) -> Result<()> {
        self.state.calls.fetch_add(1, Ordering::Relaxed);
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
