//! Charging pinned pages to a locked-memory account (Linux `iopt_pages_update_pinned`,
//! `incr_user_locked_vm`): per user or per process, against a limit.

use crate::errno::{Errno, Result};
use crate::memory::PAGE_SIZE;
use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// How pinned pages are charged (`IOPT_PAGES_ACCOUNT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountMode {
    /// Not charged: the caller has `CAP_IPC_LOCK` (`IOPT_PAGES_ACCOUNT_NONE`).
    None,
    /// Charged to the user's locked memory (`IOPT_PAGES_ACCOUNT_USER`).
    User,
    /// Charged to the address space's `locked_vm` (`IOPT_PAGES_ACCOUNT_MM`).
    Mm,
}

/// Who a charge goes to, and the limit it must stay under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountOwner {
    /// How the charge is made.
    pub mode: AccountMode,
    /// The user charged in `User` mode.
    pub uid: u32,
    /// The address space charged in `Mm` mode and for `pinned_vm`.
    pub mm: u64,
    /// `RLIMIT_MEMLOCK` in bytes of the charged task.
    pub limit_bytes: u64,
}

/// Locked-memory counters per user and per address space, in pages.
#[derive(Debug, Default)]
pub struct Accounting {
    state: Mutex<AccountingState>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct AccountingState {
    user_locked: HashMap<u32, u64>,
    mm: HashMap<u64, MmCounters>,
}

/// Per address space counters, as `/proc/<pid>/status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmCounters {
    /// Pages charged in `Mm` mode (`VmLck`).
    pub locked_vm: u64,
    /// Pages pinned in any mode (`VmPin`).
    pub pinned_vm: u64,
}

impl Accounting {
    fn lock(&self) -> MutexGuard<'_, AccountingState> {
        self.state.locked()
    }

    /// Charges `npages` to `owner`, or changes nothing and returns `ENOMEM`.
    pub fn charge(&self, owner: &AccountOwner, npages: u64) -> Result<()> {
        let limit = owner.limit_bytes / PAGE_SIZE;
        let mut st = self.lock();
        match owner.mode {
            AccountMode::None => {}
            AccountMode::User => {
                let cur = st.user_locked.entry(owner.uid).or_default();
                let new = cur
                    .checked_add(npages)
                    .filter(|&n| n <= limit)
                    .ok_or(Errno::ENOMEM)?;
                *cur = new;
            }
            AccountMode::Mm => {
                let cur = st.mm.entry(owner.mm).or_default();
                let new = cur
                    .locked_vm
                    .checked_add(npages)
                    .filter(|&n| n <= limit)
                    .ok_or(Errno::ENOMEM)?;
                cur.locked_vm = new;
            }
        }
        st.mm.entry(owner.mm).or_default().pinned_vm += npages;
        Ok(())
    }

    /// Undoes [`charge`](Self::charge).
    pub fn uncharge(&self, owner: &AccountOwner, npages: u64) {
        let mut st = self.lock();
        match owner.mode {
            AccountMode::None => {}
            AccountMode::User => {
                let cur = st.user_locked.entry(owner.uid).or_default();
                *cur = cur.saturating_sub(npages);
                if *cur == 0 {
                    st.user_locked.remove(&owner.uid);
                }
            }
            AccountMode::Mm => {
                let cur = st.mm.entry(owner.mm).or_default();
                cur.locked_vm = cur.locked_vm.saturating_sub(npages);
            }
        }
        let cur = st.mm.entry(owner.mm).or_default();
        cur.pinned_vm = cur.pinned_vm.saturating_sub(npages);
        if *cur == MmCounters::default() {
            st.mm.remove(&owner.mm);
        }
    }

    /// Pages a user has locked in `User` mode.
    pub fn user_locked(&self, uid: u32) -> u64 {
        self.lock().user_locked.get(&uid).copied().unwrap_or(0)
    }

    /// An address space's counters.
    pub fn mm(&self, mm: u64) -> MmCounters {
        self.lock().mm.get(&mm).copied().unwrap_or_default()
    }

    /// Whether nothing is charged anywhere.
    pub fn is_idle(&self) -> bool {
        let st = self.lock();
        st.user_locked.is_empty() && st.mm.is_empty()
    }
}
