//! DMA faults and the bounded log that records them.

use std::collections::VecDeque;

use crate::prot::Access;

/// Why a DMA access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultReason {
    /// No leaf translates the IOVA.
    NotPresent,
    /// The leaf does not grant the access.
    Permission,
    /// The access runs past the end of the IOVA space.
    OutOfRange,
    /// The translated PA is not backed by memory.
    BadPhysical,
}

/// One failed access: the first IOVA that could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fault {
    /// What went wrong.
    pub reason: FaultReason,
    /// The faulting IOVA.
    pub iova: u64,
    /// Direction of the access.
    pub access: Access,
}

/// The most recent faults, at most `capacity` of them.
///
/// Invariant: `faults.len() <= capacity`; when full, recording drops the
/// oldest fault and counts it in `lost`, so a misbehaving device cannot grow
/// the log without bound.
#[derive(Debug, Clone)]
pub struct FaultLog {
    faults: VecDeque<Fault>,
    capacity: usize,
    lost: u64,
}

impl FaultLog {
    /// A log keeping at most `capacity` faults (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            faults: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            lost: 0,
        }
    }

    /// Append `fault`, dropping the oldest when full.
    pub fn record(&mut self, fault: Fault) {
        if self.faults.len() == self.capacity {
            self.faults.pop_front();
            self.lost += 1;
        }
        self.faults.push_back(fault);
    }

    /// Remove and return the oldest fault.
    pub fn pop(&mut self) -> Option<Fault> {
        self.faults.pop_front()
    }

    /// The faults held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Fault> {
        self.faults.iter()
    }

    /// Number of faults held.
    pub fn len(&self) -> usize {
        self.faults.len()
    }

    /// Whether no fault is held.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Faults dropped because the log was full.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

impl Default for FaultLog {
    fn default() -> Self {
        Self::new(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_log_drops_oldest_and_counts() {
        let mut log = FaultLog::new(2);
        for iova in 0..5 {
            log.record(Fault {
                reason: FaultReason::NotPresent,
                iova,
                access: Access::Read,
            });
        }
        assert_eq!(log.len(), 2);
        assert_eq!(log.lost(), 3);
        assert_eq!(log.iter().map(|f| f.iova).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(log.pop().map(|f| f.iova), Some(3));
    }
}
