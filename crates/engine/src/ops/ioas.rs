//! IOAS operations (Linux `ioas.c`): allocate, map (user memory or a file),
//! copy, unmap, allowed and reserved ranges, change of accounting process.

use crate::context::{Caller, Context, MapArgs};
use crate::errno::{Errno, Result};
use crate::ioas::{IoPagetable, PagesSlice, ReservedOwner, ULONG_MAX};
use crate::memory::{FileBacking, PAGE_SIZE};
use crate::object::{Ioas, Object};
use crate::pages::{AccountOwner, EngineState, Pages, Source};
use std::sync::Arc;

impl Context {
    /// Allocates an IOAS (object creation can fail under fault injection).
    pub fn ioas_alloc(&mut self) -> Result<u32> {
        self.shared.fail_nth.check()?;
        let iopt = IoPagetable::with_budget(self.shared.fail_nth.clone(), self.ranges.clone());
        self.objects.insert(Object::Ioas(Box::new(Ioas { iopt })))
    }

    /// Makes sure the VFIO compatibility IOAS exists, allocating it if no
    /// IOAS holds that role (Linux `iommufd_vfio_compat_ioas_create`, what
    /// attaching a VFIO group to the context does). Returns its id.
    pub fn vfio_compat_ioas_create(&mut self) -> Result<u32> {
        if let Some(id) = self.vfio_ioas.filter(|&id| self.objects.ioas(id).is_ok()) {
            return Ok(id);
        }
        let id = self.ioas_alloc()?;
        self.vfio_ioas = Some(id);
        Ok(id)
    }

    /// Maps `length` bytes of the caller's memory at `user_va`. The area
    /// maps the table's stand-in pages for the caller's memory until
    /// something pins it (see [`Pages::stand_in`]).
    pub fn ioas_map(
        &mut self,
        caller: &Caller<'_>,
        ioas: u32,
        user_va: u64,
        args: MapArgs,
    ) -> Result<u64> {
        let owner = self.owner_for(caller);
        let allow_device = self.legacy_vfio_container;
        // An unknown IOAS fails before anything is built.
        let (shared, iopt) = self.ioas_with_state(ioas)?;
        user_va.checked_add(args.length).ok_or(Errno::EOVERFLOW)?;
        Pages::check_new(args.length, shared)?;
        let pages = iopt.stand_in(caller.mem, allow_device, args.prot.write, owner, shared);
        let slice = PagesSlice {
            pages,
            start_byte: user_va,
            length: args.length,
        };
        iopt.map_pages(&[slice], args.length, args.iova, args.prot)
    }

    /// Maps `length` bytes of `file` from byte `start`.
    pub fn ioas_map_file(
        &mut self,
        caller: &Caller<'_>,
        ioas: u32,
        file: Arc<dyn FileBacking>,
        start: u64,
        args: MapArgs,
    ) -> Result<u64> {
        let mut owner = self.owner_for(caller);
        if file.is_dmabuf() {
            // Linux charges no locked memory for a dma-buf's pages
            // (`IOPT_PAGES_ACCOUNT_NONE`): nothing of the program's is pinned.
            owner.mode = crate::pages::AccountMode::None;
        }
        let (shared, iopt) = self.ioas_with_state(ioas)?;
        if args.prot.write && !file.writable() {
            return Err(Errno::EPERM);
        }
        if args.length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(args.length - 1).ok_or(Errno::EOVERFLOW)?;
        if last >= file.size()? {
            return Err(Errno::EINVAL);
        }
        let base = start & !(PAGE_SIZE - 1);
        map_source(
            shared,
            iopt,
            Source::File { file, base },
            start - base,
            args,
            owner,
        )
    }

    /// The IOAS `id`'s page table beside the engine state its pages need,
    /// from one lookup.
    fn ioas_with_state(&mut self, id: u32) -> Result<(&Arc<EngineState>, &mut IoPagetable)> {
        let iopt = &mut self.objects.ioas_mut(id)?.iopt;
        Ok((&self.shared, iopt))
    }

    /// Shares the pages behind `[src_iova, +length)` of `src` into `dst`.
    pub fn ioas_copy(&mut self, dst: u32, src: u32, src_iova: u64, args: MapArgs) -> Result<u64> {
        let (slices, owned) = self
            .objects
            .ioas_mut(src)?
            .iopt
            .share_pages(src_iova, args.length)?;
        let copied = self
            .ioas_mut(dst)
            .and_then(|iopt| iopt.map_pages(&slices, args.length, args.iova, args.prot));
        if copied.is_err() {
            drop(slices);
            self.ioas_mut(src)?.give_back(owned);
        }
        copied
    }

    /// Unmaps `[iova, +length)`; `(0, u64::MAX)` unmaps everything.
    pub fn ioas_unmap(&mut self, ioas: u32, iova: u64, length: u64) -> Result<u64> {
        let all = iova == 0 && length == u64::MAX;
        let attempt = |ctx: &mut Context| -> Result<u64> {
            let iopt = ctx.ioas_mut(ioas)?;
            if all {
                return iopt.unmap_all();
            }
            if iova == ULONG_MAX || length == ULONG_MAX {
                return Err(Errno::EOVERFLOW);
            }
            iopt.unmap(iova, length)
        };
        match attempt(self) {
            // Areas pinned by accesses: they give their pins up, then retry.
            Err(Errno::EBUSY) => {
                let last = if all {
                    u64::MAX
                } else {
                    iova.saturating_add(length - 1)
                };
                if self.notify_accesses(ioas, if all { 0 } else { iova }, last) {
                    attempt(self)
                } else {
                    Err(Errno::EBUSY)
                }
            }
            other => other,
        }
    }

    /// Replaces the allowed ranges; each must have `start < last` and none may
    /// overlap another (`EINVAL`), nor a reserved range (`EADDRINUSE`).
    pub fn ioas_allow_iovas(&mut self, ioas: u32, ranges: &[(u64, u64)]) -> Result<()> {
        self.objects.ioas(ioas)?;
        let mut checked = DisjointRanges::default();
        for &(s, l) in ranges {
            if s >= l || !checked.insert(s, l) {
                return Err(Errno::EINVAL);
            }
            self.shared.fail_nth.check()?;
        }
        self.ioas_mut(ioas)?.set_allowed(ranges)
    }

    /// Reserves `[start, start + length)` (the selftest's `ADD_RESERVED`).
    pub fn ioas_add_reserved(&mut self, ioas: u32, start: u64, length: u64) -> Result<()> {
        // The range is checked before the IOAS is looked up, as in Linux.
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.ioas_mut(ioas)?
            .reserve(start, last, ReservedOwner::User)
    }

    /// `IOMMU_IOAS_CHANGE_PROCESS`: charge every file-backed map to the caller.
    pub fn ioas_change_process(&mut self, caller: &Caller<'_>) -> Result<()> {
        let owner = self.owner_for(caller);
        let ids = self.objects.ids();
        let ioas_ids: Vec<u32> = ids
            .into_iter()
            .filter(|&id| self.objects.ioas(id).is_ok())
            .collect();
        for &id in &ioas_ids {
            if self
                .objects
                .ioas(id)?
                .iopt
                .areas()
                .any(|a| !a.pages.is_file())
            {
                return Err(Errno::EINVAL);
            }
        }
        let mut done: Vec<(Arc<Pages>, AccountOwner)> = Vec::new();
        for &id in &ioas_ids {
            let previous: Vec<(Arc<Pages>, AccountOwner)> = self
                .objects
                .ioas(id)?
                .iopt
                .areas()
                .map(|a| (a.pages.clone(), a.pages.owner()))
                .collect();
            if let Err(e) = self.ioas_mut(id)?.change_owner(owner) {
                for (pages, prev) in done.into_iter().rev() {
                    let _ = pages.change_owner(prev);
                }
                return Err(e);
            }
            done.extend(previous);
        }
        Ok(())
    }
}

/// The tail every map shares: pages over `length` bytes of `source` from
/// byte `start_byte`, mapped all or nothing.
fn map_source(
    shared: &Arc<EngineState>,
    iopt: &mut IoPagetable,
    source: Source,
    start_byte: u64,
    args: MapArgs,
    owner: AccountOwner,
) -> Result<u64> {
    let pages = Pages::new(
        source,
        start_byte,
        args.length,
        args.prot.write,
        owner,
        shared,
    )?;
    let slice = PagesSlice {
        pages,
        start_byte,
        length: args.length,
    };
    iopt.map_pages(&[slice], args.length, args.iova, args.prot)
}

/// Inclusive ranges that do not overlap, kept by start, so that each new
/// range is checked in O(log n) (Linux keeps allowed ranges in an interval
/// tree for the same reason).
#[derive(Debug, Default)]
pub struct DisjointRanges {
    by_start: std::collections::BTreeMap<u64, u64>,
}

impl DisjointRanges {
    /// Adds `[start, last]` unless it overlaps a range already held; returns
    /// whether it was added.
    pub fn insert(&mut self, start: u64, last: u64) -> bool {
        // Only the range starting last at or before `last` can overlap: the
        // ranges held are disjoint, so any earlier one ends before it.
        if let Some((_, &l)) = self.by_start.range(..=last).next_back() {
            if l >= start {
                return false;
            }
        }
        self.by_start.insert(start, last);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::DisjointRanges;

    #[test]
    fn a_range_that_touches_or_covers_one_held_is_refused() {
        let mut r = DisjointRanges::default();
        assert!(r.insert(10, 20));
        assert!(r.insert(30, 40));
        for (s, l) in [
            (20, 25),
            (0, 10),
            (15, 35),
            (25, 30),
            (0, u64::MAX),
            (40, 40),
        ] {
            assert!(!r.insert(s, l), "[{s}, {l}]");
        }
        assert!(r.insert(21, 29));
        assert!(r.insert(41, u64::MAX));
        assert!(r.insert(0, 9));
    }

    #[test]
    fn many_disjoint_ranges_go_in_without_rescanning() {
        let mut r = DisjointRanges::default();
        for i in (0..100_000u64).rev() {
            assert!(r.insert(i * 16, i * 16 + 7));
        }
        assert!(!r.insert(8 * 16 + 3, 8 * 16 + 3));
    }
}
