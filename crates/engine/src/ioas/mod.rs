//! The IO page table of one IOAS (Linux `io_pagetable.c`): which IOVA ranges
//! are mapped to which pages, which are reserved, which are allowed for
//! automatic allocation, and the IOVA alignment every mapping must keep.
//!
//! Ranges are inclusive `[start, last]` throughout: an IOVA can be `u64::MAX`,
//! so `last + 1` may overflow and every sum is checked.
//!
//! Invariants:
//! - areas never overlap each other or a reserved range;
//! - allowed ranges never overlap a reserved range;
//! - `free` holds exactly (allowed spans, or the default span) minus reserved
//!   minus areas — the holes automatic allocation may use;
//! - every area's start, length and page offset are multiples of `iova_alignment`.
//!
//! One deliberate difference from Linux: an unmap that would only partly cover
//! some area fails with `ENOENT` *before* removing anything. Linux removes the
//! fully covered areas it meets first and then fails, leaving the IOAS half
//! changed; the errno is the same.

use crate::errno::{Errno, Result};
use crate::fail_nth::FailNth;
use crate::limits::RangeBudget;
use crate::memory::PAGE_SIZE;
use crate::pages::{AccountOwner, Pages};
use crate::sync::Locked;
use softiommu_pt::{AnyPageTable, MapErrorKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

mod alignment;
mod alloc;
mod domains;
pub mod holes;
mod map;
mod pins;
mod ranges;
mod stand_ins;

use holes::FreeSpace;
pub use stand_ins::OwnedPages;

/// The largest alignment automatic allocation asks for (x86-64 `HPAGE_SIZE`).
pub const HPAGE_SIZE: u64 = 2 << 20;
/// Linux's `ULONG_MAX` on 64-bit.
pub const ULONG_MAX: u64 = u64::MAX;

/// Access rights of a mapping: one type with the page tables' own.
pub use softiommu_pt::Prot;

/// Who reserved an IOVA range; removal is by owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservedOwner {
    /// Reserved by user space (the selftest's `ADD_RESERVED`): lives as long as the IOAS.
    User,
    /// The aperture of the domain a HWPT holds, by the HWPT's object id.
    Hwpt(u32),
    /// A device's reserved regions, by device id.
    Device(u32),
}

/// A slice of pages to map: `length` bytes from byte `start_byte` of `pages`.
#[derive(Clone, Debug)]
pub struct PagesSlice {
    /// The pages the slice is cut from.
    pub pages: Arc<Pages>,
    /// Byte offset of the slice's first byte in `pages`.
    pub start_byte: u64,
    /// Length of the slice in bytes.
    pub length: u64,
}

/// A mapped range.
#[derive(Clone, Debug)]
pub struct Area {
    /// First IOVA.
    pub start: u64,
    /// Inclusive last IOVA.
    pub last: u64,
    /// The pages it maps; shared with areas `IOAS_COPY` made from it.
    pub pages: Arc<Pages>,
    /// Byte offset of `start` in `pages`.
    pub start_byte: u64,
    /// Access rights of the mapping.
    pub prot: Prot,
    /// Pins taken through this area that are still held.
    pub num_pins: u32,
}

impl Area {
    /// Length in bytes (`last - start + 1`; never 0).
    pub fn length(&self) -> u64 {
        self.last - self.start + 1
    }
    /// Offset of `start` within its page of `pages` (below `PAGE_SIZE`).
    pub fn page_offset(&self) -> u64 {
        self.start_byte % PAGE_SIZE
    }
    /// Byte offset in the pages of IOVA `iova` (which must be in the area).
    pub fn byte_at(&self, iova: u64) -> u64 {
        self.start_byte + (iova - self.start)
    }
    /// Where the area starts in its source (an address, or a file offset),
    /// the same on a stand-in as on pages of its own.
    pub fn source_byte(&self) -> u64 {
        self.pages.source().base().wrapping_add(self.start_byte)
    }
    /// Which pages the area shares with others, for comparisons: the
    /// address of pages something else also holds (areas `IOAS_COPY` made),
    /// 0 for pages of its own or a stand-in.
    pub fn pages_identity(&self) -> usize {
        if self.pages.is_stand_in() || Arc::strong_count(&self.pages) == 1 {
            0
        } else {
            Arc::as_ptr(&self.pages) as *const () as usize
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Reserved {
    start: u64,
    last: u64,
    owner: ReservedOwner,
}

/// A domain this page table keeps filled: a HWPT's real page table.
#[derive(Clone, Debug)]
pub struct DomainRef {
    /// The HWPT object id, which also owns the aperture reservations.
    pub hwpt: u32,
    /// The domain's page table, shared with the HWPT object.
    pub table: Arc<Mutex<AnyPageTable>>,
}

impl DomainRef {
    fn lock(&self) -> MutexGuard<'_, AnyPageTable> {
        self.table.locked()
    }
}

fn map_errno(kind: MapErrorKind) -> Errno {
    match kind {
        MapErrorKind::InvalidArgument | MapErrorKind::OutOfRange => Errno::EINVAL,
        MapErrorKind::Overflow => Errno::EOVERFLOW,
        MapErrorKind::AddressInUse => Errno::EEXIST,
        MapErrorKind::NoMemory => Errno::ENOMEM,
    }
}

/// A pin taken by [`IoPagetable::pin`]: per area, the page indexes pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pieces: Vec<(u64, u64, u64)>,
}

/// Everything visible about an IO page table, for comparisons in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `(start, last, source byte, prot, pages identity)`; see
    /// [`Area::source_byte`] and [`Area::pages_identity`].
    pub areas: Vec<(u64, u64, u64, Prot, usize)>,
    /// Reserved ranges as `(start, last, owner)`, sorted.
    pub reserved: Vec<(u64, u64, ReservedOwner)>,
    /// Allowed ranges as `(start, last)`, exactly as given.
    pub allowed: Vec<(u64, u64)>,
    /// As [`IoPagetable::iova_alignment`].
    pub iova_alignment: u64,
    /// As [`IoPagetable::large_pages_disabled`].
    pub disable_large_pages: bool,
}

/// One IOAS's page table (Linux `struct io_pagetable`). Owned by its IOAS.
#[derive(Debug)]
pub struct IoPagetable {
    areas: BTreeMap<u64, Area>,
    reserved: Vec<Reserved>,
    /// Union of the reserved ranges, merged.
    reserved_spans: BTreeMap<u64, u64>,
    /// Allowed ranges exactly as given.
    allowed: BTreeMap<u64, u64>,
    /// Where automatic allocation searches: allowed ranges merged and clipped to
    /// `[PAGE_SIZE, ULONG_MAX - PAGE_SIZE]`, or that whole span if none are given.
    alloc_spans: BTreeMap<u64, u64>,
    /// The holes automatic allocation may use; `None` until an automatic
    /// allocation first needs it, and again after the allowed or reserved
    /// ranges change. A table only ever mapped at fixed IOVAs (a VMM's
    /// vIOMMU) so never pays for it.
    free: Option<FreeSpace>,
    iova_alignment: u64,
    disable_large_pages: bool,
    pins: BTreeMap<u64, Pin>,
    next_pin: u64,
    /// The stand-in pages of this table's unpinned areas, one per source,
    /// access and owner; weak, so that a stand-in goes with its last area.
    stand_ins: Vec<Weak<Pages>>,
    /// Domains mirroring this table. While any exists, every area holds one
    /// pin on its pages and is mapped in every domain.
    domains: Vec<DomainRef>,
    /// Accesses that pin pages: while any exists the alignment is PAGE_SIZE.
    pinning_accesses: u32,
    fail_nth: FailNth,
    /// The context's count of IOVA ranges, which holds this table's areas,
    /// reserved and allowed ranges (each entry of `areas`, `reserved` and
    /// `allowed` counts one) until the table drops.
    budget: RangeBudget,
}

/// Whether an interval of a disjoint map intersects `[start, last]`: only
/// the one with the greatest start ≤ `last` can (any before it ends before
/// it begins), so one descent answers.
fn any_intersecting<V>(
    map: &BTreeMap<u64, V>,
    start: u64,
    last: u64,
    last_of: impl Fn(&V) -> u64,
) -> bool {
    map.range(..=last)
        .next_back()
        .is_some_and(|(_, v)| last_of(v) >= start)
}

/// First key-ordered interval of a disjoint map that intersects `[start, last]`.
fn first_intersecting<V>(
    map: &BTreeMap<u64, V>,
    start: u64,
    last: u64,
    last_of: impl Fn(&V) -> u64,
) -> Option<u64> {
    if let Some((&s, v)) = map.range(..=start).next_back() {
        if last_of(v) >= start {
            return Some(s);
        }
    }
    map.range(start..=last).next().map(|(&s, _)| s)
}

/// Linux `__alloc_iova_check_range`: aligns `start` up, ORs in the page offset,
/// and checks that `length` bytes still fit before `last`.
fn fit_in(start: u64, last: u64, length: u64, align: u64, page_offset: u64) -> Option<u64> {
    let aligned = (start.checked_add(align - 1)? & !(align - 1)) | page_offset;
    if aligned >= last || last - aligned < length - 1 {
        None
    } else {
        Some(aligned)
    }
}

impl IoPagetable {
    /// An empty table: no areas, reservations, allowed ranges or domains,
    /// alignment 1. `fail_nth` is the fault-injection hook it consults.
    pub fn new(fail_nth: FailNth) -> Self {
        Self::with_budget(fail_nth, RangeBudget::unlimited())
    }

    /// An empty table whose ranges count against `budget` (its context's).
    pub fn with_budget(fail_nth: FailNth, budget: RangeBudget) -> Self {
        let mut t = IoPagetable {
            areas: BTreeMap::new(),
            reserved: Vec::new(),
            reserved_spans: BTreeMap::new(),
            allowed: BTreeMap::new(),
            alloc_spans: BTreeMap::new(),
            free: None,
            iova_alignment: 1,
            disable_large_pages: false,
            pins: BTreeMap::new(),
            next_pin: 1,
            stand_ins: Vec::new(),
            domains: Vec::new(),
            pinning_accesses: 0,
            fail_nth,
            budget,
        };
        t.rebuild_free_space();
        t
    }

    /// Alignment in bytes that every area's start, length and page offset
    /// keep (a power of two).
    pub fn iova_alignment(&self) -> u64 {
        self.iova_alignment
    }
    /// Whether domains map with base pages only
    /// (`IOMMU_OPTION_HUGE_PAGES` off).
    pub fn large_pages_disabled(&self) -> bool {
        self.disable_large_pages
    }
    /// The areas, by ascending IOVA.
    pub fn areas(&self) -> impl Iterator<Item = &Area> {
        self.areas.values()
    }
    /// Number of areas.
    pub fn area_count(&self) -> usize {
        self.areas.len()
    }

    /// The area containing `iova`.
    pub fn area_at(&self, iova: u64) -> Option<&Area> {
        self.areas
            .range(..=iova)
            .next_back()
            .map(|(_, a)| a)
            .filter(|a| a.last >= iova)
    }

    /// Whether any area intersects `[iova, iova + length)` (an empty or
    /// overflowing range counts as none).
    pub fn has_area_in(&self, iova: u64, length: u64) -> bool {
        match length.checked_sub(1).and_then(|l| iova.checked_add(l)) {
            Some(last) => self.area_intersects(iova, last),
            None => false,
        }
    }

    fn area_intersects(&self, start: u64, last: u64) -> bool {
        any_intersecting(&self.areas, start, last, |a| a.last)
    }

    fn reserved_intersects(&self, start: u64, last: u64) -> bool {
        any_intersecting(&self.reserved_spans, start, last, |&l| l)
    }

    fn allowed_intersects(&self, start: u64, last: u64) -> bool {
        first_intersecting(&self.allowed, start, last, |&l| l).is_some()
    }

    /// Everything visible about the table, for comparisons in tests.
    pub fn snapshot(&self) -> Snapshot {
        let mut reserved: Vec<_> = self
            .reserved
            .iter()
            .map(|r| (r.start, r.last, r.owner))
            .collect();
        reserved.sort_unstable();
        Snapshot {
            areas: self
                .areas
                .values()
                .map(|a| (a.start, a.last, a.source_byte(), a.prot, a.pages_identity()))
                .collect(),
            reserved,
            allowed: self.allowed(),
            iova_alignment: self.iova_alignment,
            disable_large_pages: self.disable_large_pages,
        }
    }

    /// The free-space index, where built, against a recomputation from
    /// scratch; for tests. An index not built yet is consistent.
    pub fn free_space_is_consistent(&self) -> bool {
        self.free
            .as_ref()
            .is_none_or(|free| free.to_vec() == self.build_free_space().to_vec())
    }

    /// Whether the hole index is built (an automatic allocation needed it).
    pub fn free_space_built(&self) -> bool {
        self.free.is_some()
    }

    /// Holes available to automatic allocation, for tests and `inspect`.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        match &self.free {
            Some(free) => free.to_vec(),
            None => self.build_free_space().to_vec(),
        }
    }

    /// Drops every pin (context teardown); never fails.
    pub fn release_all_pins(&mut self) {
        let ids: Vec<u64> = self.pins.keys().copied().collect();
        for id in ids {
            let _ = self.unpin(id);
        }
    }
}

impl Drop for IoPagetable {
    fn drop(&mut self) {
        self.release_all_pins();
        let hwpts: Vec<u32> = self.domains.iter().map(|d| d.hwpt).collect();
        for h in hwpts {
            self.remove_domain(h);
        }
        let held = self.areas.len() + self.reserved.len() + self.allowed.len();
        self.budget.remove(held as u64);
    }
}
