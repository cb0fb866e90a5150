//! Locks that outlive a panicked holder.
//!
//! Every engine lock guards state that each operation leaves consistent
//! before it can panic (operations validate, then change), so a poisoned
//! lock still holds good state: taking it anyway keeps one panicking call
//! from failing every later one, as a kernel lock has no poison either.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Taking a lock whether or not an earlier holder panicked.
pub trait Locked<T> {
    /// The guard, recovered from poison.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
