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
use crate::memory::{AddressSpace, FileBacking, PAGE_SIZE};
use crate::sync::Locked;
use physical::Backing;
use std::collections::BTreeMap;
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
    fn base(&self) -> u64 {
        match self {
            Source::User { base, .. } | Source::File { base, .. } => *base,
        }
    }
}

/// Pinned memory of one source (Linux `struct iopt_pages`).
///
/// Invariants: `pins[i]` is the number of users (accesses, domains) of page
/// `i`, and a page with a non-zero count is charged once to `owner` and
/// counted once in the engine's global pin table. Lock order: `state` before
/// the accounting and pin-table locks of [`EngineState`].
#[derive(Debug)]
pub struct Pages {
    source: Source,
    /// The exporter revoked the memory (a dma-buf): domains must not map it.
    revoked: std::sync::atomic::AtomicBool,
    npages: u64,
    writable: bool,
    shared: Arc<EngineState>,
    state: Mutex<PagesState>,
}

#[derive(Debug)]
struct PagesState {
    owner: AccountOwner,
    /// Per pinned page: its users and its identity, taken when it was pinned.
    pins: BTreeMap<u64, (u32, Frame, u64)>,
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
        if length == 0 || length > u64::MAX - PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        shared.fail_nth.check()?;
        let npages = (length + start_byte).div_ceil(PAGE_SIZE);
        LIVE_PAGES.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(Pages {
            source,
            revoked: std::sync::atomic::AtomicBool::new(false),
            npages,
            writable,
            shared: shared.clone(),
            state: Mutex::new(PagesState {
                owner,
                pins: BTreeMap::new(),
            }),
        }))
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
    /// and gives the identities of pages `idxs` among them (frame, and the
    /// address-space delta), in one look at the source.
    fn present_identities(
        &self,
        first: u64,
        last: u64,
        write: bool,
        idxs: &[u64],
    ) -> Result<Vec<(Frame, u64, bool)>> {
        match &self.source {
            Source::File { file, base } => {
                self.check_present(first, last, write)?;
                Ok(idxs
                    .iter()
                    .map(|&i| {
                        (
                            Frame {
                                space: file.id(),
                                page: base / PAGE_SIZE + i,
                            },
                            0,
                            false,
                        )
                    })
                    .collect())
            }
            Source::User {
                mm,
                base,
                allow_device,
            } => {
                let (Some(&lo), Some(&hi)) = (idxs.iter().min(), idxs.iter().max()) else {
                    return Ok(Vec::new());
                };
                let all = mm.probe_and_identify(
                    base + first * PAGE_SIZE,
                    (last - first + 1) * PAGE_SIZE,
                    write,
                    base + lo * PAGE_SIZE,
                    hi - lo + 1,
                )?;
                if !allow_device && all.iter().any(|id| id.device) {
                    return Err(Errno::EFAULT);
                }
                Ok(idxs
                    .iter()
                    .map(|&i| {
                        let id = all[(i - lo) as usize];
                        (
                            Frame {
                                space: id.space,
                                page: id.page,
                            },
                            id.va_delta,
                            id.gigantic,
                        )
                    })
                    .collect())
            }
        }
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
        self.lock().pins.get(&index).map(|&(_, f, _)| f)
    }

    /// The physical address of pinned page `index`.
    pub fn address(&self, index: u64) -> Option<u64> {
        self.shared.address_of(self.frame(index)?)
    }

    /// Pages with at least one pin.
    pub fn pinned(&self) -> u64 {
        self.lock().pins.len() as u64
    }

    /// Pins pages `[first, last]` (indexes) for one more user: pages not yet
    /// pinned are checked in the source (`EFAULT` if missing, or read-only when
    /// `write`) and charged (`ENOMEM` past the limit). All or nothing.
    pub fn pin(&self, first: u64, last: u64, write: bool) -> Result<()> {
        if last >= self.npages || first > last {
            return Err(Errno::EINVAL);
        }
        self.shared.fail_nth.check()?;
        let mut st = self.lock();
        let newly: Vec<u64> = (first..=last)
            .filter(|i| !st.pins.contains_key(i))
            .collect();
        let ids = if newly.is_empty() {
            Vec::new()
        } else {
            let ids = self.present_identities(first, last, write, &newly)?;
            self.shared
                .accounting
                .charge(&st.owner, newly.len() as u64)?;
            ids
        };
        for (&i, &(frame, delta, _)) in newly.iter().zip(&ids) {
            st.pins.insert(i, (0, frame, delta));
        }
        for i in first..=last {
            if let Some(p) = st.pins.get_mut(&i) {
                p.0 += 1;
            }
        }
        // Pages of a shared mapping are reached through its file, so they stay
        // readable after the mapping process is gone.
        let mut files: Vec<(u64, Arc<dyn FileBacking>)> = Vec::new();
        for (&i, &(frame, delta, gigantic)) in newly.iter().zip(&ids) {
            let mut backing = self.backing(delta);
            if let Source::User { mm, base, .. } = &self.source {
                if frame.space != mm.id() {
                    let known = files
                        .iter()
                        .find(|(s, _)| *s == frame.space)
                        .map(|(_, f)| f.clone());
                    let file = known.or_else(|| mm.shared_file(base + i * PAGE_SIZE));
                    if let Some(f) = file {
                        if f.id() == frame.space {
                            files.push((frame.space, f.clone()));
                            backing = Backing::File(f);
                        }
                    }
                }
            }
            self.shared
                .add_pins(std::iter::once(frame), true, &backing, gigantic);
        }
        Ok(())
    }

    /// Drops one user of pages `[first, last]`; pages left with none are
    /// unpinned and uncharged. Never fails: teardown paths call it.
    pub fn unpin(&self, first: u64, last: u64) {
        let mut st = self.lock();
        let mut released = Vec::new();
        for i in first..=last.min(self.npages.saturating_sub(1)) {
            if let Some(p) = st.pins.get_mut(&i) {
                p.0 -= 1;
                if p.0 == 0 {
                    let (_, frame, delta) = *p;
                    st.pins.remove(&i);
                    released.push((frame, delta));
                }
            }
        }
        if !released.is_empty() {
            self.shared
                .accounting
                .uncharge(&st.owner, released.len() as u64);
            for (frame, delta) in released {
                self.shared
                    .add_pins(std::iter::once(frame), false, &self.backing(delta), false);
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
        let n = st.pins.len() as u64;
        if n > 0 {
            self.shared.accounting.charge(&owner, n)?;
            self.shared.accounting.uncharge(&st.owner, n);
        }
        st.owner = owner;
        Ok(())
    }

    /// Reads bytes at byte offset `offset` of the source; pinned pages stay
    /// readable after their process is gone.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self
            .source
            .base()
            .checked_add(offset)
            .ok_or(Errno::EFAULT)?;
        let direct = match &self.source {
            Source::User { mm, .. } => mm.read(at, buf),
            Source::File { file, .. } => file.read_at(at, buf),
        };
        direct.or_else(|_| {
            self.through_frames(offset, buf.len(), |backing, pos, range| {
                let dst = &mut buf[range];
                match backing {
                    Backing::Memory { mm, va_delta } => mm.read(pos.wrapping_add(*va_delta), dst),
                    Backing::File(file) => file.read_at(pos, dst),
                }
            })
        })
    }

    /// Writes bytes at byte offset `offset` of the source; pinned pages stay
    /// writable after their process is gone.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let at = self
            .source
            .base()
            .checked_add(offset)
            .ok_or(Errno::EFAULT)?;
        let direct = match &self.source {
            Source::User { mm, .. } => mm.write(at, buf),
            Source::File { file, .. } => file.write_at(at, buf),
        };
        direct.or_else(|_| {
            self.through_frames(offset, buf.len(), |backing, pos, range| {
                let src = &buf[range];
                match backing {
                    Backing::Memory { mm, va_delta } => mm.write(pos.wrapping_add(*va_delta), src),
                    Backing::File(file) => file.write_at(pos, src),
                }
            })
        })
    }

    /// Runs `f` on each page piece of `[offset, offset + len)` through the
    /// backing its pinned frame records (`EFAULT` for an unpinned page).
    fn through_frames(
        &self,
        offset: u64,
        len: usize,
        mut f: impl FnMut(&Backing, u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let mut done = 0usize;
        while done < len {
            let byte = offset + done as u64;
            let n = ((PAGE_SIZE - byte % PAGE_SIZE) as usize).min(len - done);
            let pa = self.address(byte / PAGE_SIZE).ok_or(Errno::EFAULT)? + byte % PAGE_SIZE;
            let resolved = self.shared.phys.locked().resolve(pa);
            let (backing, pos) = resolved.ok_or(Errno::EFAULT)?;
            f(&backing, pos, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        LIVE_PAGES.fetch_sub(1, Ordering::SeqCst);
        // Users unpin before they let go; releasing here keeps the counters
        // right even if one forgot, and destroy never fails.
        let npages = self.npages;
        if npages > 0 && !self.lock().pins.is_empty() {
            loop {
                let Some(first) = self.lock().pins.keys().next().copied() else {
                    break;
                };
                self.unpin(first, first);
            }
        }
    }
}
