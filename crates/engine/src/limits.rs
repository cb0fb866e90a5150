//! Per-context limits: how many objects and IOVA ranges one context may hold.
//!
//! Linux has no such counts: it charges every object and range to the
//! caller's memory cgroup (`GFP_KERNEL_ACCOUNT`), and an allocation past the
//! cgroup's limit fails with `ENOMEM`. The engine serves many programs from
//! one process with no cgroup between them, so it counts instead, and a call
//! that would pass a limit fails the same way, with nothing changed.

use crate::errno::{Errno, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What one context may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextLimits {
    /// Live objects (IOASes, devices, HWPTs, queues, accesses, …).
    pub objects: u32,
    /// IOVA ranges over all its IOASes: areas, reserved and allowed ranges.
    pub ranges: u64,
}

impl ContextLimits {
    /// No limit but the id space.
    pub const UNLIMITED: ContextLimits = ContextLimits {
        objects: u32::MAX,
        ranges: u64::MAX,
    };
}

impl Default for ContextLimits {
    /// 2^20 objects and 2^22 ranges: far past what a VMM or the kernel's
    /// selftests make (a VMM holds a few objects per device and an area per
    /// guest memory region), and at a few hundred bytes each, a context's
    /// bookkeeping stays around a gigabyte at worst.
    fn default() -> Self {
        ContextLimits {
            objects: 1 << 20,
            ranges: 1 << 22,
        }
    }
}

/// The IOVA ranges one context holds, shared by its IO page tables. Each
/// table checks [`room`](Self::room) before it adds ranges, so a call that
/// would pass the limit changes nothing. Calls on one context are
/// serialised, so a check and the adds that follow it cannot interleave
/// with another's; the count is atomic only so that tables stay `Send`.
#[derive(Clone, Debug)]
pub struct RangeBudget {
    state: Arc<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    used: AtomicU64,
    limit: u64,
}

impl RangeBudget {
    /// A budget of `limit` ranges.
    pub fn new(limit: u64) -> Self {
        RangeBudget {
            state: Arc::new(BudgetState {
                used: AtomicU64::new(0),
                limit,
            }),
        }
    }

    /// A budget with no limit.
    pub fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    /// `ENOMEM` unless `more` ranges fit.
    pub fn room(&self, more: u64) -> Result<()> {
        let used = self.state.used.load(Ordering::Relaxed);
        if used.saturating_add(more) > self.state.limit {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// How many more ranges fit.
    pub fn available(&self) -> u64 {
        self.state.limit.saturating_sub(self.used())
    }

    /// Counts `n` ranges added.
    pub fn add(&self, n: u64) {
        self.state.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` ranges removed.
    pub fn remove(&self, n: u64) {
        let before = self.state.used.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "more ranges removed than added");
    }

    /// Ranges counted now.
    pub fn used(&self) -> u64 {
        self.state.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_checked_against_what_is_held() {
        let budget = RangeBudget::new(3);
        let shared = budget.clone();
        budget.room(3).unwrap();
        budget.add(2);
        assert_eq!(shared.used(), 2);
        assert_eq!(shared.room(2), Err(Errno::ENOMEM));
        shared.room(1).unwrap();
        budget.remove(2);
        budget.room(3).unwrap();
        assert_eq!(RangeBudget::unlimited().room(u64::MAX), Ok(()));
    }
}
