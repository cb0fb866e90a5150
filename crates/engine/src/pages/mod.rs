//! Pages: the memory behind IOAS areas, pinned lazily and charged to a
//! locked-memory account (Linux `pages.c`).
//!
//! A [`Pages`] covers whole CPU pages of one source: a range of a process's
//! address space, or a range of a file. Areas reference a byte slice of it;
//! `IOMMU_IOAS_COPY` makes several areas (in several IOAS) share one `Pages`,
//! and so one pin per page. Nothing is pinned when an area is mapped: pages
//! are pinned when something needs their frames (a domain, an access) and
//! unpinned when the last such user lets go.
//!
//! Accounting follows the pages' mode: `None` (the mapper could lock memory
//! freely, Linux's `CAP_IPC_LOCK`), `User` (charged to the user, like
//! io_uring) or `Mm` (charged to the process's `locked_vm`, like VFIO). Every
//! mode also counts `pinned_vm`. A charge past the limit is `ENOMEM`.

use crate::errno::{Errno, Result};
use crate::memory::{AddressSpace, FileBacking, IdentityRun, PAGE_SIZE};
use crate::sync::Locked;
use physical::Backing;
use runs::{PinRun, PinRuns};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// `Pages` alive in this process; the fail-nth test checks nothing leaks.
static LIVE_PAGES: AtomicUsize = AtomicUsize::new(0);

/// Number of `Pages` currently alive (all engines).
pub fn live_pages() -> usize {
    LIVE_PAGES.load(Ordering::SeqCst)
}

mod account;
mod engine_state;
pub mod physical;
mod pin_table;
mod runs;
mod rw;
mod stand_in;

pub use account::{AccountMode, AccountOwner, Accounting, MmCounters};
pub use engine_state::EngineState;
pub use physical::Frame;

/// Where a `Pages` takes its memory from.
#[derive(Clone)]
pub enum Source {
    /// A process address range starting at a page-aligned `base`.
    User {
        /// The address space.
        mm: Arc<dyn AddressSpace>,
        /// Page-aligned address of the first page.
        base: u64,
        /// Device memory mapped in the range (a VFIO BAR) may be pinned, as
        /// the legacy type1 container follows such mappings; iommufd
        /// refuses them (`EFAULT`).
        allow_device: bool,
    },
    /// A file range starting at a page-aligned offset `base`.
    File {
        /// The file.
        file: Arc<dyn FileBacking>,
        /// Page-aligned byte offset of the first page in the file.
        base: u64,
    },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::User { mm, base, .. } => write!(f, "user(mm {}, {base:#x})", mm.id()),
            Source::File { file, base } => write!(f, "file({}, {base:#x})", file.id()),
        }
    }
}

impl Source {
    /// The source's first byte: the page-aligned address or file offset
    /// that byte 0 of the pages lies at.
    pub fn base(&self) -> u64 {
        match self {
            Source::User { base, .. } | Source::File { base, .. } => *base,
        }
    }
}

/// Pinned memory of one source (Linux `struct iopt_pages`).
///
/// Invariants: `pins` gives the number of users (accesses, domains) of each
/// page, and a page with users is charged once to `owner` and counted once
/// in the engine's global pin table. A stand-in (see [`Pages::stand_in`])
/// never has users. Lock order: `state` before the accounting and
/// pin-table locks of [`EngineState`].
#[derive(Debug)]
pub struct Pages {
    source: Source,
    /// The exporter revoked the memory (a dma-buf): domains must not map it.
    revoked: std::sync::atomic::AtomicBool,
    npages: u64,
    writable: bool,
    /// Whether this is a stand-in that areas nothing pins share.
    stand_in: bool,
    shared: Arc<EngineState>,
    state: Mutex<PagesState>,
}

#[derive(Debug)]
struct PagesState {
    owner: AccountOwner,
    /// The pinned pages, in runs: their users and identities, taken when
    /// they were pinned.
    pins: PinRuns,
}

impl Pages {
    /// Pages covering `length` bytes at byte offset `start_byte` of the first
    /// page of `source` (Linux `iopt_alloc_pages`).
    pub fn new(
        source: Source,
        start_byte: u64,
        length: u64,
        writable: bool,
        owner: AccountOwner,
        shared: &Arc<EngineState>,
    ) -> Result<Arc<Pages>> {
        Self::check_new(length, shared)?;
        let npages = (length + start_byte).div_ceil(PAGE_SIZE);
        Ok(Self::build(source, npages, writable, false, owner, shared))
    }

    /// What [`Pages::new`] checks, for a map that takes a stand-in instead:
    /// the length (`EINVAL`), and the allocation fault injection may fail.
    pub fn check_new(length: u64, shared: &EngineState) -> Result<()> {
        if length == 0 || length > u64::MAX - PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        shared.fail_nth.check()
    }

    fn build(
        source: Source,
        npages: u64,
        writable: bool,
        stand_in: bool,
        owner: AccountOwner,
        shared: &Arc<EngineState>,
    ) -> Arc<Pages> {
        LIVE_PAGES.fetch_add(1, Ordering::SeqCst);
        Arc::new(Pages {
            source,
            revoked: std::sync::atomic::AtomicBool::new(false),
            npages,
            writable,
            stand_in,
            shared: shared.clone(),
            state: Mutex::new(PagesState {
                owner,
                pins: PinRuns::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PagesState> {
        self.state.locked()
    }

    /// Number of pages covered.
    pub fn npages(&self) -> u64 {
        self.npages
    }
    /// Whether the memory may be mapped for device writes.
    pub fn writable(&self) -> bool {
        self.writable
    }
    /// Where the memory comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }
    /// Whether the exporter revoked the memory: domains must not map it.
    pub fn revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }

    /// Records that the exporter revoked the memory, or restored it.
    pub fn set_revoked(&self, revoked: bool) {
        self.revoked.store(revoked, Ordering::SeqCst);
    }

    /// The identity of the file behind these pages, if any.
    pub fn file_id(&self) -> Option<u64> {
        match &self.source {
            Source::File { file, .. } => Some(file.id()),
            Source::User { .. } => None,
        }
    }

    /// Whether the memory is a file's.
    pub fn is_file(&self) -> bool {
        matches!(self.source, Source::File { .. })
    }

    /// Whether the memory is a dma-buf's, which accesses may not reach.
    pub fn is_dmabuf(&self) -> bool {
        matches!(&self.source, Source::File { file, .. } if file.is_dmabuf())
    }
    /// Who its pins are charged to.
    pub fn owner(&self) -> AccountOwner {
        self.lock().owner
    }

    /// Checks that pages `first..=last` can be pinned (`EFAULT` otherwise)
    /// and gives the identities of the pages of `gaps` (each `(first,
    /// last)`, inside it), as runs with no users yet, in one look at the
    /// source.
    fn present_runs(
        &self,
        first: u64,
        last: u64,
        write: bool,
        gaps: &[(u64, u64)],
    ) -> Result<Vec<(u64, PinRun)>> {
        let (Some(&(lo, _)), Some(&(_, hi))) = (gaps.first(), gaps.last()) else {
            return Ok(Vec::new());
        };
        let ids: Vec<IdentityRun> = match &self.source {
            Source::File { file, base } => {
                self.check_present(first, last, write)?;
                vec![IdentityRun {
                    first: crate::memory::PageIdentity {
                        space: file.id(),
                        page: base / PAGE_SIZE + lo,
                        va_delta: 0,
                        device: false,
                        gigantic: false,
                    },
                    count: hi - lo + 1,
                }]
            }
            Source::User {
                mm,
                base,
                allow_device,
            } => {
                let ids = mm.probe_and_identify_runs(
                    base + first * PAGE_SIZE,
                    (last - first + 1) * PAGE_SIZE,
                    write,
                    base + lo * PAGE_SIZE,
                    hi - lo + 1,
                )?;
                if !allow_device && ids.iter().any(|id| id.first.device) {
                    return Err(Errno::EFAULT);
                }
                ids
            }
        };
        // The identity runs cover lo..=hi in order; cut out the gaps.
        let mut out = Vec::new();
        let mut at = lo;
        let mut gaps = gaps.iter().copied().peekable();
        for id in ids {
            let end = at + id.count;
            while let Some(&(g0, g1)) = gaps.peek() {
                let (from, to) = (g0.max(at), g1.min(end - 1));
                if from <= to {
                    let page = id.nth(from - at);
                    out.push((
                        from,
                        PinRun {
                            len: to - from + 1,
                            users: 0,
                            frame: Frame {
                                space: page.space,
                                page: page.page,
                            },
                            va_delta: page.va_delta,
                            gigantic: page.gigantic,
                        },
                    ));
                }
                if g1 < end {
                    gaps.next();
                } else {
                    break;
                }
            }
            at = end;
        }
        Ok(out)
    }

    fn backing(&self, va_delta: u64) -> Backing {
        match &self.source {
            Source::User { mm, .. } => Backing::Memory {
                mm: mm.clone(),
                va_delta,
            },
            Source::File { file, .. } => Backing::File(file.clone()),
        }
    }

    /// The frame of pinned page `index`.
    pub fn frame(&self, index: u64) -> Option<Frame> {
        let (start, run) = self.lock().pins.find(index)?;
        Some(run.frame_at(index - start))
    }

    /// The physical address of pinned page `index`.
    pub fn address(&self, index: u64) -> Option<u64> {
        self.shared.address_of(self.frame(index)?)
    }

    /// The physical addresses of pages `first..=last`, as runs of pages
    /// whose addresses follow one another: `(first page, address, pages)`.
    /// `None` when one of the pages is not pinned.
    pub fn address_runs(&self, first: u64, last: u64) -> Option<Vec<(u64, u64, u64)>> {
        let st = self.lock();
        let phys = self.shared.phys.locked();
        let mut pieces = Vec::new();
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        let mut next = first;
        for (start, run) in st.pins.overlapping(first, last) {
            if start > next {
                return None;
            }
            let from = next - start;
            let len = (start + run.len).min(last + 1) - next;
            pieces.clear();
            if !phys.address_runs(run.frame_at(from), len, &mut pieces) {
                return None;
            }
            for &(pa, n) in &pieces {
                match out.last_mut() {
                    Some((i, at, count))
                        if *at + *count * PAGE_SIZE == pa && *i + *count == next =>
                    {
                        *count += n;
                    }
                    _ => out.push((next, pa, n)),
                }
                next += n;
            }
        }
        (next > last).then_some(out)
    }

    /// Pages with at least one pin.
    pub fn pinned(&self) -> u64 {
        self.lock().pins.pinned()
    }

    /// Pins pages `[first, last]` (indexes) for one more user: pages not yet
    /// pinned are checked in the source (`EFAULT` if missing, or read-only when
    /// `write`) and charged (`ENOMEM` past the limit). All or nothing.
    pub fn pin(&self, first: u64, last: u64, write: bool) -> Result<()> {
        if last >= self.npages || first > last {
            return Err(Errno::EINVAL);
        }
        // Areas take pages of their own before they pin.
        debug_assert!(!self.stand_in, "a stand-in is never pinned");
        if self.stand_in {
            return Err(Errno::EINVAL);
        }
        self.shared.fail_nth.check()?;
        let mut st = self.lock();
        let gaps = st.pins.gaps(first, last);
        let fresh = if gaps.is_empty() {
            Vec::new()
        } else {
            let fresh = self.present_runs(first, last, write, &gaps)?;
            let newly = gaps.iter().map(|&(a, b)| b - a + 1).sum();
            // Every page charged must be pinned: an address space that
            // identified fewer pages than asked pins none.
            if fresh.iter().map(|(_, r)| r.len).sum::<u64>() != newly {
                return Err(Errno::EFAULT);
            }
            self.shared.accounting.charge(&st.owner, newly)?;
            fresh
        };
        st.pins.add_user(first, last, &fresh);
        // Pages of a shared mapping are reached through its file, so they stay
        // readable after the mapping process is gone.
        for &(i, run) in &fresh {
            let mut backing = self.backing(run.va_delta);
            if let Source::User { mm, base, .. } = &self.source {
                if run.frame.space != mm.id() {
                    if let Some(f) = mm.shared_file(base + i * PAGE_SIZE) {
                        if f.id() == run.frame.space {
                            backing = Backing::File(f);
                        }
                    }
                }
            }
            self.shared
                .pin_frames(run.frame, run.len, &backing, run.gigantic);
        }
        Ok(())
    }

    /// Drops one user of pages `[first, last]`; pages left with none are
    /// unpinned and uncharged. Never fails: teardown paths call it.
    pub fn unpin(&self, first: u64, last: u64) {
        let last = last.min(self.npages.saturating_sub(1));
        if first > last {
            return;
        }
        let mut st = self.lock();
        let released = st.pins.remove_user(first, last);
        self.release(&st.owner, &released);
    }

    /// Uncharges and unpins runs no longer used.
    fn release(&self, owner: &AccountOwner, released: &[PinRun]) {
        let pages: u64 = released.iter().map(|r| r.len).sum();
        if pages > 0 {
            self.shared.accounting.uncharge(owner, pages);
            for run in released {
                self.shared.unpin_frames(run.frame, run.len);
            }
        }
    }

    fn check_present(&self, first: u64, last: u64, write: bool) -> Result<()> {
        let offset = first * PAGE_SIZE;
        let len = (last - first + 1) * PAGE_SIZE;
        match &self.source {
            Source::User { mm, base, .. } => mm.probe(base + offset, len, write),
            Source::File { file, base } => {
                if write && !file.writable() {
                    return Err(Errno::EFAULT);
                }
                // A page past the end of the file cannot be pinned.
                let end = base.checked_add(offset + len).ok_or(Errno::EFAULT)?;
                if file.size()?.div_ceil(PAGE_SIZE) * PAGE_SIZE < end {
                    return Err(Errno::EFAULT);
                }
                Ok(())
            }
        }
    }

    /// Moves the charge of every pinned page to `owner` (Linux
    /// `IOAS_CHANGE_PROCESS`). All or nothing: `ENOMEM` if the new owner is
    /// over its limit.
    pub fn change_owner(&self, owner: AccountOwner) -> Result<()> {
        let mut st = self.lock();
        let n = st.pins.pinned();
        if n > 0 {
            self.shared.accounting.charge(&owner, n)?;
            self.shared.accounting.uncharge(&st.owner, n);
        }
        st.owner = owner;
        Ok(())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        LIVE_PAGES.fetch_sub(1, Ordering::SeqCst);
        // Users unpin before they let go; releasing here keeps the counters
        // right even if one forgot, and destroy never fails.
        let mut st = self.lock();
        let released = st.pins.take_all();
        let owner = st.owner;
        drop(st);
        self.release(&owner, &released);
    }
}
