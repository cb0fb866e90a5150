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
use crate::fault::FaultInjector;
use crate::free_space::FreeSpace;
use crate::memory::PAGE_SIZE;
use crate::pages::{AccountOwner, Pages};
use softiommu_pt::{AnyPageTable, MapErrorKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The largest alignment automatic allocation asks for (x86-64 `HPAGE_SIZE`).
pub const HPAGE_SIZE: u64 = 2 << 20;
/// Linux's `ULONG_MAX` on 64-bit.
pub const ULONG_MAX: u64 = u64::MAX;

/// Access rights of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
}

/// Who reserved an IOVA range; removal is by owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReservedOwner {
    /// Reserved by user space (the selftest's `ADD_RESERVED`): lives as long as the IOAS.
    User,
    /// A domain's aperture, by domain id.
    Domain(u32),
    /// A device's reserved regions, by device id.
    Device(u32),
}

/// A slice of pages to map: `length` bytes from byte `start_byte` of `pages`.
#[derive(Clone, Debug)]
pub struct PagesSlice {
    pub pages: Arc<Pages>,
    pub start_byte: u64,
    pub length: u64,
}

/// A mapped range.
#[derive(Clone, Debug)]
pub struct Area {
    pub start: u64,
    pub last: u64,
    pub pages: Arc<Pages>,
    /// Byte offset of `start` in `pages`.
    pub start_byte: u64,
    pub prot: Prot,
    /// Pins taken through this area that are still held.
    pub num_pins: u32,
}

impl Area {
    pub fn length(&self) -> u64 {
        self.last - self.start + 1
    }
    pub fn page_offset(&self) -> u64 {
        self.start_byte % PAGE_SIZE
    }
    /// Byte offset in the pages of IOVA `iova` (which must be in the area).
    pub fn byte_at(&self, iova: u64) -> u64 {
        self.start_byte + (iova - self.start)
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
    pub table: Arc<Mutex<AnyPageTable>>,
}

impl DomainRef {
    fn lock(&self) -> MutexGuard<'_, AnyPageTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
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
    /// `(start, last, start_byte, prot, pages identity)`.
    pub areas: Vec<(u64, u64, u64, Prot, usize)>,
    pub reserved: Vec<(u64, u64, ReservedOwner)>,
    pub allowed: Vec<(u64, u64)>,
    pub iova_alignment: u64,
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
    free: FreeSpace,
    iova_alignment: u64,
    disable_large_pages: bool,
    pins: BTreeMap<u64, Pin>,
    next_pin: u64,
    /// Domains mirroring this table. While any exists, every area holds one
    /// pin on its pages and is mapped in every domain.
    domains: Vec<DomainRef>,
    /// Accesses that pin pages: while any exists the alignment is PAGE_SIZE.
    pinning_accesses: u32,
    faults: FaultInjector,
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
    pub fn new(faults: FaultInjector) -> Self {
        let mut t = IoPagetable {
            areas: BTreeMap::new(),
            reserved: Vec::new(),
            reserved_spans: BTreeMap::new(),
            allowed: BTreeMap::new(),
            alloc_spans: BTreeMap::new(),
            free: FreeSpace::new(),
            iova_alignment: 1,
            disable_large_pages: false,
            pins: BTreeMap::new(),
            next_pin: 1,
            domains: Vec::new(),
            pinning_accesses: 0,
            faults,
        };
        t.rebuild_free_space();
        t
    }

    pub fn iova_alignment(&self) -> u64 {
        self.iova_alignment
    }
    pub fn large_pages_disabled(&self) -> bool {
        self.disable_large_pages
    }
    pub fn areas(&self) -> impl Iterator<Item = &Area> {
        self.areas.values()
    }
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
        first_intersecting(&self.areas, start, last, |a| a.last).is_some()
    }

    fn reserved_intersects(&self, start: u64, last: u64) -> bool {
        first_intersecting(&self.reserved_spans, start, last, |&l| l).is_some()
    }

    fn allowed_intersects(&self, start: u64, last: u64) -> bool {
        first_intersecting(&self.allowed, start, last, |&l| l).is_some()
    }

    // ---- free-space bookkeeping -------------------------------------------------

    fn rebuild_free_space(&mut self) {
        self.alloc_spans.clear();
        let (lo, hi) = (PAGE_SIZE, ULONG_MAX - PAGE_SIZE);
        if self.allowed.is_empty() {
            self.alloc_spans.insert(lo, hi);
        } else {
            let mut cur: Option<(u64, u64)> = None;
            for (&s, &l) in &self.allowed {
                let (s, l) = (s.max(lo), l.min(hi));
                if s > l {
                    continue;
                }
                cur = match cur {
                    Some((cs, cl)) if cl.checked_add(1).is_some_and(|n| n >= s) => {
                        Some((cs, cl.max(l)))
                    }
                    Some(prev) => {
                        self.alloc_spans.insert(prev.0, prev.1);
                        Some((s, l))
                    }
                    None => Some((s, l)),
                };
            }
            if let Some((s, l)) = cur {
                self.alloc_spans.insert(s, l);
            }
        }
        // Used = reserved ∪ areas, both sorted and disjoint among themselves.
        let mut used: Vec<(u64, u64)> = self.reserved_spans.iter().map(|(&s, &l)| (s, l)).collect();
        used.extend(self.areas.values().map(|a| (a.start, a.last)));
        used.sort_unstable();
        self.free.clear();
        for (&ss, &sl) in &self.alloc_spans {
            let mut next = Some(ss);
            let begin = used.partition_point(|&(_, l)| l < ss);
            for &(us, ul) in &used[begin..] {
                let Some(n) = next else { break };
                if us > sl {
                    break;
                }
                if us > n {
                    self.free.insert(n, us - 1);
                }
                next = ul.checked_add(1).map(|x| x.max(n));
            }
            if let Some(n) = next {
                if n <= sl {
                    self.free.insert(n, sl);
                }
            }
        }
    }

    fn free_released(&mut self, start: u64, last: u64) {
        let spans: Vec<(u64, u64)> = self
            .alloc_spans
            .range(..=last)
            .rev()
            .take_while(|(_, &l)| l >= start)
            .map(|(&s, &l)| (s.max(start), l.min(last)))
            .collect();
        for (s, l) in spans {
            if s <= l {
                self.free.release(s, l);
            }
        }
    }

    fn insert_area(&mut self, area: Area) {
        self.free.carve(area.start, area.last);
        self.areas.insert(area.start, area);
    }

    fn remove_area(&mut self, start: u64) -> Option<Area> {
        let area = self.areas.remove(&start)?;
        self.free_released(area.start, area.last);
        Some(area)
    }

    // ---- IOVA allocation and checks ------------------------------------------------

    /// Chooses an IOVA for `length` bytes whose source address is `addr`
    /// (Linux `iopt_alloc_iova`): the lowest fitting hole, aligned to
    /// min(roundup_pow2(length), lowest set bit of addr, 2 MiB), keeping the
    /// source's page offset. Never IOVA 0.
    pub fn alloc_iova(&self, addr: u64, length: u64) -> Result<u64> {
        if length == 0 || length >= ULONG_MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let page_offset = addr % PAGE_SIZE;
        let by_length = length.next_power_of_two();
        let mut align = if addr == 0 {
            by_length
        } else {
            by_length.min(1 << addr.trailing_zeros())
        };
        if align >= HPAGE_SIZE {
            align = HPAGE_SIZE;
        }
        if align < self.iova_alignment {
            return Err(Errno::EINVAL);
        }
        let mut from = 0;
        while let Some((hs, hl)) = self.free.first_fit(length - 1, from) {
            let Some((&ss, &sl)) = self.alloc_spans.range(..=hs).next_back() else {
                break;
            };
            match fit_in(ss, sl, length, align, page_offset) {
                // Nothing in this allowed span can fit: skip the whole span.
                None => match sl.checked_add(1) {
                    Some(n) => from = n,
                    None => break,
                },
                Some(span_start) => {
                    if let Some(iova) = fit_in(hs.max(span_start), hl, length, align, page_offset) {
                        return Ok(iova);
                    }
                    match hs.checked_add(1) {
                        Some(n) => from = n,
                        None => break,
                    }
                }
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Checks a fixed IOVA (Linux `iopt_check_iova`).
    pub fn check_iova(&self, iova: u64, length: u64) -> Result<()> {
        if iova & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova
            .checked_add(length.wrapping_sub(1))
            .ok_or(Errno::EOVERFLOW)?;
        if self.reserved_intersects(iova, last) {
            return Err(Errno::EINVAL);
        }
        if self.area_intersects(iova, last) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    // ---- map / unmap / copy ------------------------------------------------------------

    /// Maps `slices` back to back at `iova` (or at an allocated IOVA when
    /// `iova` is `None`), `length` bytes in all. Returns the IOVA. All or nothing.
    pub fn map_pages(
        &mut self,
        slices: &[PagesSlice],
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        // One area allocation per slice, before anything else (as Linux does).
        for _ in slices {
            self.faults.check()?;
        }
        if length == 0 || length & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let first = slices.first().ok_or(Errno::EINVAL)?;
        let dst = match iova {
            None => {
                let addr = match first.pages.source() {
                    crate::pages::Source::User { base, .. }
                    | crate::pages::Source::File { base, .. } => {
                        base.wrapping_add(first.start_byte)
                    }
                };
                let got = self.alloc_iova(addr, length)?;
                debug_assert!(self.check_iova(got, length).is_ok());
                got
            }
            Some(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
        };
        let mut at = dst;
        let mut inserted = Vec::with_capacity(slices.len());
        let mut outcome = Ok(dst);
        for s in slices {
            match self.check_slice(s, at, prot) {
                Ok(area) => {
                    let next = at.checked_add(s.length);
                    inserted.push(area.start);
                    self.insert_area(area);
                    match next {
                        Some(n) => at = n,
                        None => break,
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() && !self.domains.is_empty() {
            for (i, &start) in inserted.iter().enumerate() {
                if let Err(e) = self.fill_area(start) {
                    for &done in &inserted[..i] {
                        self.unfill_area(done);
                    }
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_err() {
            for start in inserted {
                self.remove_area(start);
            }
        }
        outcome
    }

    // ---- domains ------------------------------------------------------------------------

    /// Domains mirroring this table.
    pub fn domains(&self) -> &[DomainRef] {
        &self.domains
    }

    fn area_pages(area: &Area) -> (u64, u64) {
        (
            area.start_byte / PAGE_SIZE,
            (area.start_byte + area.length() - 1) / PAGE_SIZE,
        )
    }

    /// Maps `area` into `domain`; on failure nothing of it stays mapped there.
    /// With `small`, leaves of at most one CPU page (large pages disabled, so
    /// that areas can later be split).
    fn map_area_into(
        area: &Area,
        domain: &DomainRef,
        faults: &FaultInjector,
        small: bool,
    ) -> Result<()> {
        faults.check()?;
        let prot = softiommu_pt::Prot {
            read: area.prot.read,
            write: area.prot.write,
        };
        let mut table = domain.lock();
        let mut done = 0u64;
        let length = area.length();
        let mut outcome = Ok(());
        while done < length {
            let byte = area.start_byte + done;
            let Some(pa) = area
                .pages
                .address(byte / PAGE_SIZE)
                .map(|a| a + byte % PAGE_SIZE)
            else {
                outcome = Err(Errno::EFAULT);
                break;
            };
            // Extend the run while the next page's address follows on.
            let mut run = (PAGE_SIZE - byte % PAGE_SIZE).min(length - done);
            while !small && done + run < length {
                let next = area.start_byte + done + run;
                if area.pages.address(next / PAGE_SIZE) != Some(pa + run) {
                    break;
                }
                run += PAGE_SIZE.min(length - done - run);
            }
            if let Err(e) = table.map(area.start + done, pa, run, prot) {
                done += e.mapped;
                outcome = Err(map_errno(e.kind));
                break;
            }
            done += run;
        }
        if outcome.is_err() && done > 0 {
            if let Ok((_, gather)) = table.unmap(area.start, done) {
                let _ = gather.into_range();
            }
        }
        outcome
    }

    fn unmap_area_from(area: &Area, domain: &DomainRef) {
        if let Ok((_, gather)) = domain.lock().unmap(area.start, area.length()) {
            // The engine translates by walking the tables; it keeps no IOTLB to
            // invalidate.
            let _ = gather.into_range();
        }
    }

    /// Pins an area's pages for the domains and maps it into each. All or nothing.
    fn fill_area(&mut self, start: u64) -> Result<()> {
        let area = self.areas.get(&start).cloned().ok_or(Errno::ENOENT)?;
        if area.pages.revoked() {
            return Ok(());
        }
        let (first, last) = Self::area_pages(&area);
        area.pages.pin(first, last, area.prot.write)?;
        for (i, d) in self.domains.iter().enumerate() {
            if let Err(e) = Self::map_area_into(&area, d, &self.faults, self.disable_large_pages) {
                for undo in &self.domains[..i] {
                    Self::unmap_area_from(&area, undo);
                }
                area.pages.unpin(first, last);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Undoes [`fill_area`](Self::fill_area).
    fn unfill_area(&mut self, start: u64) {
        if let Some(area) = self
            .areas
            .get(&start)
            .cloned()
            .filter(|a| !a.pages.revoked())
        {
            for d in &self.domains {
                Self::unmap_area_from(&area, d);
            }
            let (first, last) = Self::area_pages(&area);
            area.pages.unpin(first, last);
        }
    }

    /// The exporter of file `file_id` revoked (or restored) its memory: areas
    /// of it leave (or rejoin) every domain; the areas themselves stay.
    pub fn set_file_revoked(&mut self, file_id: u64, revoked: bool) {
        let starts: Vec<u64> = self
            .areas
            .values()
            .filter(|a| a.pages.file_id() == Some(file_id) && a.pages.revoked() != revoked)
            .map(|a| a.start)
            .collect();
        for start in starts {
            if revoked {
                self.unfill_area(start);
                if let Some(a) = self.areas.get(&start) {
                    a.pages.set_revoked(true);
                }
            } else {
                if let Some(a) = self.areas.get(&start) {
                    a.pages.set_revoked(false);
                }
                if !self.domains.is_empty() && self.fill_area(start).is_err() {
                    // Keep it out of the domains rather than half in.
                    if let Some(a) = self.areas.get(&start) {
                        a.pages.set_revoked(true);
                    }
                }
            }
        }
    }

    /// Starts mirroring into `domain` (Linux `iopt_table_add_domain`): raises
    /// the IOVA alignment to the domain's smallest page (`EINVAL` above
    /// PAGE_SIZE, `EADDRINUSE` if an area would be misaligned), reserves the
    /// IOVA outside its aperture (`EADDRINUSE` on conflict) and maps every area
    /// into it. All or nothing.
    pub fn add_domain(&mut self, domain: DomainRef) -> Result<()> {
        let (pgsize, aperture) = {
            let t = domain.lock();
            (t.pgsize_bitmap(), t.aperture())
        };
        let align = (1u64 << pgsize.trailing_zeros()).max(self.iova_alignment);
        if align > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        if align != self.iova_alignment {
            self.check_alignment(align)?;
        }
        let owner = ReservedOwner::Domain(domain.hwpt);
        let mut reserved = Ok(());
        if aperture.start != 0 {
            reserved = self.reserve(0, aperture.start - 1, owner);
        }
        if reserved.is_ok() && aperture.last != ULONG_MAX {
            reserved = self.reserve(aperture.last + 1, ULONG_MAX, owner);
        }
        if let Err(e) = reserved {
            self.remove_reserved(owner);
            return Err(e);
        }
        let starts: Vec<u64> = self.areas.keys().copied().collect();
        let first_domain = self.domains.is_empty();
        // (index of the failing area, errno, whether that area is still pinned)
        let mut failure = None;
        for (i, &start) in starts.iter().enumerate() {
            let area = self.areas[&start].clone();
            if area.pages.revoked() {
                continue;
            }
            let (pf, pl) = Self::area_pages(&area);
            if first_domain {
                if let Err(e) = area.pages.pin(pf, pl, area.prot.write) {
                    failure = Some((i, e, false));
                    break;
                }
            }
            if let Err(e) =
                Self::map_area_into(&area, &domain, &self.faults, self.disable_large_pages)
            {
                failure = Some((i, e, first_domain));
                break;
            }
        }
        if let Some((failed_at, e, still_pinned)) = failure {
            for &start in &starts[..failed_at] {
                let area = &self.areas[&start];
                if area.pages.revoked() {
                    continue;
                }
                Self::unmap_area_from(area, &domain);
                if first_domain {
                    let (pf, pl) = Self::area_pages(area);
                    area.pages.unpin(pf, pl);
                }
            }
            if still_pinned {
                let area = &self.areas[&starts[failed_at]];
                let (pf, pl) = Self::area_pages(area);
                area.pages.unpin(pf, pl);
            }
            self.remove_reserved(owner);
            return Err(e);
        }
        self.iova_alignment = align;
        self.domains.push(domain);
        Ok(())
    }

    /// Stops mirroring into the domain of `hwpt`: unmaps every area from it,
    /// drops the area pins with the last domain, releases the aperture
    /// reservations and lowers the alignment again. Never fails.
    pub fn remove_domain(&mut self, hwpt: u32) {
        let Some(pos) = self.domains.iter().position(|d| d.hwpt == hwpt) else {
            return;
        };
        let domain = self.domains.remove(pos);
        let last = self.domains.is_empty();
        for area in self.areas.values().filter(|a| !a.pages.revoked()) {
            Self::unmap_area_from(area, &domain);
            if last {
                let (pf, pl) = Self::area_pages(area);
                area.pages.unpin(pf, pl);
            }
        }
        self.remove_reserved(ReservedOwner::Domain(hwpt));
        let _ = self.recalculate_alignment(1);
    }

    /// Linux `iopt_insert_area`'s checks.
    fn check_slice(&self, s: &PagesSlice, iova: u64, prot: Prot) -> Result<Area> {
        if prot.write && !s.pages.writable() {
            return Err(Errno::EPERM);
        }
        let page_offset = s.start_byte % PAGE_SIZE;
        if page_offset & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(s.length - 1).ok_or(Errno::EOVERFLOW)?;
        let last_byte = s
            .start_byte
            .checked_add(s.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        if last_byte / PAGE_SIZE >= s.pages.npages() {
            return Err(Errno::EOVERFLOW);
        }
        Ok(Area {
            start: iova,
            last,
            pages: s.pages.clone(),
            start_byte: s.start_byte,
            prot,
            num_pins: 0,
        })
    }

    /// Unmaps every area inside `[start, last]`; returns the bytes unmapped.
    /// `ENOENT` if none is, or if one only partly is (then nothing changes);
    /// `EBUSY` if one holds pins.
    pub fn unmap_range(&mut self, start: u64, last: u64) -> Result<u64> {
        let mut victims = Vec::new();
        let mut cursor = first_intersecting(&self.areas, start, last, |a| a.last);
        while let Some(s) = cursor {
            let a = &self.areas[&s];
            if a.start < start || a.last > last {
                return Err(Errno::ENOENT);
            }
            if a.num_pins != 0 {
                return Err(Errno::EBUSY);
            }
            victims.push(s);
            cursor = a
                .last
                .checked_add(1)
                .filter(|&n| n <= last)
                .and_then(|n| self.areas.range(n..=last).next().map(|(&k, _)| k));
        }
        if victims.is_empty() {
            return Err(Errno::ENOENT);
        }
        let mut unmapped = 0;
        for s in victims {
            if !self.domains.is_empty() {
                self.unfill_area(s);
            }
            if let Some(a) = self.remove_area(s) {
                unmapped += a.length();
            }
        }
        Ok(unmapped)
    }

    /// Linux `iopt_unmap_iova`.
    pub fn unmap(&mut self, iova: u64, length: u64) -> Result<u64> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.unmap_range(iova, last)
    }

    /// Unmaps everything; an empty table is success with 0 bytes.
    pub fn unmap_all(&mut self) -> Result<u64> {
        match self.unmap_range(0, ULONG_MAX) {
            Err(Errno::ENOENT) => Ok(0),
            other => other,
        }
    }

    /// The slices of pages behind `[iova, iova + length)`, which contiguous
    /// areas must cover exactly (Linux `iopt_get_pages`, for `IOAS_COPY`).
    pub fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<PagesSlice>> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        let mut out = Vec::new();
        let mut cur = iova;
        loop {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            self.faults.check()?;
            let piece_last = area.last.min(last);
            out.push(PagesSlice {
                pages: area.pages.clone(),
                start_byte: area.byte_at(cur),
                length: piece_last - cur + 1,
            });
            if piece_last == last {
                return Ok(out);
            }
            cur = piece_last + 1;
        }
    }

    // ---- reserved and allowed ranges ---------------------------------------------------

    /// Reserves `[start, last]` for `owner` (Linux `iopt_reserve_iova`).
    pub fn reserve(&mut self, start: u64, last: u64, owner: ReservedOwner) -> Result<()> {
        if self.area_intersects(start, last) || self.allowed_intersects(start, last) {
            return Err(Errno::EADDRINUSE);
        }
        self.faults.check()?;
        self.reserved.push(Reserved { start, last, owner });
        self.rebuild_reserved();
        Ok(())
    }

    /// Drops every range `owner` reserved.
    pub fn remove_reserved(&mut self, owner: ReservedOwner) {
        let before = self.reserved.len();
        self.reserved.retain(|r| r.owner != owner);
        if self.reserved.len() != before {
            self.rebuild_reserved();
        }
    }

    fn rebuild_reserved(&mut self) {
        let mut all: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        all.sort_unstable();
        self.reserved_spans.clear();
        let mut cur: Option<(u64, u64)> = None;
        for (s, l) in all {
            cur = match cur {
                Some((cs, cl)) if cl.checked_add(1).is_none_or(|n| n >= s) => Some((cs, cl.max(l))),
                Some(prev) => {
                    self.reserved_spans.insert(prev.0, prev.1);
                    Some((s, l))
                }
                None => Some((s, l)),
            };
        }
        if let Some((s, l)) = cur {
            self.reserved_spans.insert(s, l);
        }
        self.rebuild_free_space();
    }

    /// Replaces the allowed ranges. The caller has checked each range
    /// (`start < last`, no overlaps among them). `EADDRINUSE` if one hits a
    /// reserved range; then nothing changes.
    pub fn set_allowed(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        if ranges.iter().any(|&(s, l)| self.reserved_intersects(s, l)) {
            return Err(Errno::EADDRINUSE);
        }
        self.allowed = ranges.iter().copied().collect();
        self.rebuild_free_space();
        Ok(())
    }

    pub fn allowed(&self) -> Vec<(u64, u64)> {
        self.allowed.iter().map(|(&s, &l)| (s, l)).collect()
    }

    /// The holes between reserved ranges over the whole IOVA space
    /// (`IOAS_IOVA_RANGES`).
    pub fn usable_ranges(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = Some(0u64);
        for (&s, &l) in &self.reserved_spans {
            let Some(n) = next else { break };
            if s > n {
                out.push((n, s - 1));
            }
            next = l.checked_add(1);
        }
        if let Some(n) = next {
            out.push((n, ULONG_MAX));
        }
        out
    }

    // ---- alignment and large pages -----------------------------------------------------

    fn check_alignment(&self, align: u64) -> Result<()> {
        let mask = align - 1;
        if self
            .areas
            .values()
            .any(|a| a.start & mask != 0 || a.length() & mask != 0 || a.page_offset() & mask != 0)
        {
            return Err(Errno::EADDRINUSE);
        }
        Ok(())
    }

    /// Recomputes the alignment from the large-page setting (Linux
    /// `iopt_calculate_iova_alignment`, before domains and accesses add theirs).
    fn recalculate_alignment(&mut self, extra: u64) -> Result<()> {
        let mut align = if self.disable_large_pages {
            PAGE_SIZE
        } else {
            1
        };
        align = align.max(extra);
        if self.pinning_accesses > 0 {
            align = align.max(PAGE_SIZE);
        }
        for d in &self.domains {
            align = align.max(1 << d.lock().pgsize_bitmap().trailing_zeros());
        }
        if align > self.iova_alignment {
            self.check_alignment(align)?;
        }
        self.iova_alignment = align;
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` = 0: map page by page from now on.
    pub fn disable_large_pages(&mut self) -> Result<()> {
        if self.disable_large_pages {
            return Ok(());
        }
        // Domains may already hold large leaves.
        if !self.domains.is_empty() && !self.areas.is_empty() {
            return Err(Errno::EINVAL);
        }
        self.disable_large_pages = true;
        if let Err(e) = self.recalculate_alignment(1) {
            self.disable_large_pages = false;
            return Err(e);
        }
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` = 1.
    pub fn enable_large_pages(&mut self) {
        self.disable_large_pages = false;
        // Lowering the alignment cannot misalign an area.
        let _ = self.recalculate_alignment(1);
    }

    /// Splits areas so that each IOVA in `iovas` becomes the last byte of an
    /// area (VFIO type1 v1 unmaps inside mappings; Linux `iopt_cut_iova`).
    pub fn cut(&mut self, iovas: &[u64]) -> Result<()> {
        for &iova in iovas {
            let Some(area) = self.area_at(iova).cloned() else {
                continue;
            };
            if iova == area.start || iova == area.last {
                continue;
            }
            if area.num_pins != 0 || (!self.domains.is_empty() && !self.disable_large_pages) {
                return Err(Errno::EINVAL);
            }
            let new_start = iova + 1;
            let mask = self.iova_alignment - 1;
            if new_start & mask != 0 || area.byte_at(new_start) & mask != 0 {
                return Err(Errno::EINVAL);
            }
            self.faults.check()?;
            self.faults.check()?;
            self.areas.remove(&area.start);
            let mut lhs = area.clone();
            lhs.last = iova;
            let rhs = Area {
                start: new_start,
                start_byte: area.byte_at(new_start),
                ..area
            };
            self.areas.insert(lhs.start, lhs);
            self.areas.insert(rhs.start, rhs);
        }
        Ok(())
    }

    /// Registers an access that pins pages (Linux `iopt_add_access`):
    /// `EADDRINUSE` if an area is not page aligned.
    pub fn add_pinning_access(&mut self) -> Result<()> {
        self.pinning_accesses += 1;
        if let Err(e) = self.recalculate_alignment(1) {
            self.pinning_accesses -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// Undoes [`add_pinning_access`](Self::add_pinning_access).
    pub fn remove_pinning_access(&mut self) {
        self.pinning_accesses = self.pinning_accesses.saturating_sub(1);
        let _ = self.recalculate_alignment(1);
    }

    /// Pin ids whose pages intersect `[start, last]`.
    pub fn pins_in(&self, start: u64, last: u64) -> Vec<u64> {
        self.pins
            .iter()
            .filter(|(_, p)| {
                p.pieces.iter().any(|&(area, _, _)| {
                    self.areas
                        .get(&area)
                        .is_some_and(|a| a.start <= last && start <= a.last)
                })
            })
            .map(|(&id, _)| id)
            .collect()
    }

    // ---- pinning (for accesses) ----------------------------------------------------------

    /// Pins the pages behind `[iova, iova + length)`, which contiguous areas
    /// must cover (`ENOENT` otherwise; `EPERM` for a write pin of a read-only
    /// area). Returns a pin id for [`unpin`](Self::unpin). All or nothing.
    pub fn pin(&mut self, iova: u64, length: u64, write: bool) -> Result<u64> {
        let slices = self.get_pages(iova, length)?;
        let mut pieces = Vec::with_capacity(slices.len());
        let mut cur = iova;
        for s in &slices {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            if write && !area.prot.write {
                return Err(Errno::EPERM);
            }
            pieces.push((
                area.start,
                s.start_byte / PAGE_SIZE,
                (s.start_byte + s.length - 1) / PAGE_SIZE,
            ));
            cur += s.length;
        }
        let mut done = 0;
        let mut outcome = Ok(());
        for (i, s) in slices.iter().enumerate() {
            let (_, first, last) = pieces[i];
            if let Err(e) = s.pages.pin(first, last, write) {
                outcome = Err(e);
                break;
            }
            done += 1;
        }
        if let Err(e) = outcome {
            for (i, s) in slices.iter().take(done).enumerate() {
                s.pages.unpin(pieces[i].1, pieces[i].2);
            }
            return Err(e);
        }
        for (start, _, _) in &pieces {
            if let Some(a) = self.areas.get_mut(start) {
                a.num_pins += 1;
            }
        }
        let id = self.next_pin;
        self.next_pin += 1;
        self.pins.insert(id, Pin { pieces });
        Ok(id)
    }

    /// Releases a pin; `ENOENT` for an unknown id.
    pub fn unpin(&mut self, id: u64) -> Result<()> {
        let pin = self.pins.remove(&id).ok_or(Errno::ENOENT)?;
        for (start, first, last) in pin.pieces {
            if let Some(a) = self.areas.get_mut(&start) {
                a.num_pins -= 1;
                a.pages.unpin(first, last);
            }
        }
        Ok(())
    }

    /// Reads or writes through the areas covering `[iova, iova + len)`, as an
    /// emulated device behind this IOAS would (permissions checked: `EPERM`).
    pub fn access_rw(&self, iova: u64, buf: &mut [u8], write: bool) -> Result<()> {
        if buf.is_empty() {
            return Err(Errno::EINVAL);
        }
        let slices = self.get_pages(iova, buf.len() as u64)?;
        let mut cur = iova;
        for s in &slices {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            if (write && !area.prot.write) || (!write && !area.prot.read) {
                return Err(Errno::EPERM);
            }
            cur += s.length;
        }
        let mut done = 0usize;
        for s in &slices {
            let n = s.length as usize;
            let part = &mut buf[done..done + n];
            if write {
                s.pages.write(s.start_byte, part)?;
            } else {
                s.pages.read(s.start_byte, part)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Moves the charge of every area's pinned pages to `owner`; every area
    /// must be file backed (`EINVAL`). All or nothing.
    pub fn change_owner(&mut self, owner: AccountOwner) -> Result<()> {
        if self.areas.values().any(|a| !a.pages.is_file()) {
            return Err(Errno::EINVAL);
        }
        let mut distinct: Vec<Arc<Pages>> = Vec::new();
        for a in self.areas.values() {
            if !distinct.iter().any(|p| Arc::ptr_eq(p, &a.pages)) {
                distinct.push(a.pages.clone());
            }
        }
        let mut moved: Vec<(Arc<Pages>, AccountOwner)> = Vec::new();
        for p in distinct {
            let old = p.owner();
            if let Err(e) = p.change_owner(owner) {
                for (q, prev) in moved.into_iter().rev() {
                    let _ = q.change_owner(prev);
                }
                return Err(e);
            }
            moved.push((p, old));
        }
        Ok(())
    }

    // ---- inspection -------------------------------------------------------------------

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
                .map(|a| {
                    (
                        a.start,
                        a.last,
                        a.start_byte,
                        a.prot,
                        Arc::as_ptr(&a.pages) as *const () as usize,
                    )
                })
                .collect(),
            reserved,
            allowed: self.allowed(),
            iova_alignment: self.iova_alignment,
            disable_large_pages: self.disable_large_pages,
        }
    }

    /// The free-space index against a recomputation from scratch; for tests.
    pub fn free_space_is_consistent(&self) -> bool {
        let mut fresh = IoPagetable {
            areas: self.areas.clone(),
            reserved: self.reserved.clone(),
            reserved_spans: self.reserved_spans.clone(),
            allowed: self.allowed.clone(),
            alloc_spans: BTreeMap::new(),
            free: FreeSpace::new(),
            iova_alignment: self.iova_alignment,
            disable_large_pages: self.disable_large_pages,
            pins: BTreeMap::new(),
            next_pin: 1,
            domains: Vec::new(),
            pinning_accesses: 0,
            faults: FaultInjector::default(),
        };
        fresh.rebuild_free_space();
        fresh.free.to_vec() == self.free.to_vec()
    }

    /// Holes available to automatic allocation, for tests and `inspect`.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        self.free.to_vec()
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
    }
}
