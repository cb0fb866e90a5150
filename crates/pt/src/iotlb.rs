//! A model of an IOMMU's translation cache.
//!
//! The IOTLB caches leaf translations per page of the format's granule. It
//! is filled on a miss by walking the table and is only emptied by explicit
//! invalidation: after an unmap, a cached translation keeps working until
//! the unmap's [`IotlbGather`] is flushed, exactly the bug class hardware has.
//!
//! Dirty marking follows hardware too: an entry remembers whether its leaf
//! was dirty when cached; a write through an entry not known dirty walks the
//! table once to set the leaf's dirty bit. After dirty bits are cleared the
//! IOTLB must be flushed, or later writes are not recorded again.

use crate::fault::FaultReason;
use crate::format::{low_mask, Format};
use crate::gather::IotlbGather;
use crate::prot::Access;
use crate::range::IovaRange;
use crate::table::PageTable;

/// Entries in an IOTLB built by [`Iotlb::for_format`].
pub const DEFAULT_IOTLB_ENTRIES: usize = 1024;

/// One cached page, 16 bytes so four share a cache line. `tag` is the
/// page number + 1; 0 marks an invalid entry. `pa_flags` is the page-aligned
/// PA with the permissions and the known-dirty mark in its low bits (pages
/// are at least 8 bytes, see [`Iotlb::new`]).
#[derive(Clone, Copy, Debug, Default)]
struct IotlbEntry {
    tag: u64,
    pa_flags: u64,
}

const ENTRY_READ: u64 = 1 << 0;
const ENTRY_WRITE: u64 = 1 << 1;
const ENTRY_DIRTY: u64 = 1 << 2;
const ENTRY_FLAGS: u64 = ENTRY_READ | ENTRY_WRITE | ENTRY_DIRTY;

impl IotlbEntry {
    #[inline(always)]
    fn allows(self, access: Access) -> bool {
        let needed = match access {
            Access::Read => ENTRY_READ,
            Access::Write => ENTRY_WRITE,
        };
        self.pa_flags & needed != 0
    }

    #[inline(always)]
    fn pa(self, iova: u64, offset_mask: u64) -> u64 {
        (self.pa_flags & !ENTRY_FLAGS) | (iova & offset_mask)
    }
}

/// A direct-mapped cache of translations for one domain.
///
/// Invariants: `entries.len()` is a power of two and `index_mask` is one less;
/// a valid entry for page `p` sits at index `p & index_mask`.
#[derive(Clone)]
pub struct Iotlb {
    entries: Box<[IotlbEntry]>,
    index_mask: usize,
    page_lg2: u32,
    offset_mask: u64,
    hits: u64,
    misses: u64,
}

impl std::fmt::Debug for Iotlb {
    // A summary rather than a thousand entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iotlb")
            .field("entries", &self.entries.len())
            .field("valid", &self.entries.iter().filter(|e| e.tag != 0).count())
            .field("page_size", &self.page_size())
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .finish()
    }
}

impl Iotlb {
    /// An empty IOTLB of `entries` (rounded up to a power of two) pages of
    /// `2^page_lg2` bytes (`page_lg2` is clamped to 3..=63).
    pub fn new(page_lg2: u32, entries: usize) -> Self {
        let page_lg2 = page_lg2.clamp(3, 63);
        let entries = entries.max(1).next_power_of_two();
        Self {
            entries: vec![IotlbEntry::default(); entries].into_boxed_slice(),
            index_mask: entries - 1,
            page_lg2,
            offset_mask: low_mask(page_lg2),
            hits: 0,
            misses: 0,
        }
    }

    /// An empty IOTLB caching pages of `F`'s granule.
    pub fn for_format<F: Format>() -> Self {
        Self::new(F::GRANULE_LG2, DEFAULT_IOTLB_ENTRIES)
    }

    /// Size of one cached page.
    pub fn page_size(&self) -> u64 {
        1 << self.page_lg2
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Translate `iova` for `access` as the device's IOMMU would: from the
    /// cache if present, else by walking `table` and caching the leaf. A
    /// write marks the leaf dirty when the table tracks dirty.
    #[inline(always)]
    pub fn translate<F: Format>(
        &mut self,
        table: &mut PageTable<F>,
        iova: u64,
        access: Access,
    ) -> Result<u64, FaultReason> {
        let page = iova >> self.page_lg2;
        let entry = &mut self.entries[page as usize & self.index_mask];
        if entry.tag == page + 1 {
            if !entry.allows(access) {
                return Err(FaultReason::Permission);
            }
            if access == Access::Write
                && entry.pa_flags & ENTRY_DIRTY == 0
                && table.dirty_tracking()
            {
                table.set_dirty(iova);
                entry.pa_flags |= ENTRY_DIRTY;
            }
            self.hits += 1;
            return Ok(entry.pa(iova, self.offset_mask));
        }
        self.translate_miss(table, iova, access, true)
    }

    /// Like [`Iotlb::translate`], but never marks dirty: a permission check
    /// before committing to an access.
    #[inline]
    pub fn probe<F: Format>(
        &mut self,
        table: &mut PageTable<F>,
        iova: u64,
        access: Access,
    ) -> Result<u64, FaultReason> {
        let page = iova >> self.page_lg2;
        let entry = &self.entries[page as usize & self.index_mask];
        if entry.tag == page + 1 {
            self.hits += 1;
            return if entry.allows(access) {
                Ok(entry.pa(iova, self.offset_mask))
            } else {
                Err(FaultReason::Permission)
            };
        }
        self.translate_miss(table, iova, access, false)
    }

    #[cold]
    fn translate_miss<F: Format>(
        &mut self,
        table: &mut PageTable<F>,
        iova: u64,
        access: Access,
        mark_dirty: bool,
    ) -> Result<u64, FaultReason> {
        self.misses += 1;
        let (_, leaf) = table.lookup(iova).ok_or(FaultReason::NotPresent)?;
        let (pa, prot) = (leaf.pa | (iova & low_mask(leaf.size_lg2)), leaf.prot);
        if !prot.allows(access) {
            return Err(FaultReason::Permission);
        }
        let mut dirty = leaf.dirty;
        if mark_dirty && access == Access::Write && table.dirty_tracking() && !dirty {
            table.set_dirty(iova);
            dirty = true;
        }
        let page = iova >> self.page_lg2;
        let flags = (if prot.read { ENTRY_READ } else { 0 })
            | (if prot.write { ENTRY_WRITE } else { 0 })
            | (if dirty { ENTRY_DIRTY } else { 0 });
        self.entries[page as usize & self.index_mask] = IotlbEntry {
            tag: page + 1,
            pa_flags: (pa & !self.offset_mask) | flags,
        };
        Ok(pa)
    }

    /// Invalidate what `gather` names, consuming it.
    pub fn flush(&mut self, gather: IotlbGather) {
        if let Some(range) = gather.into_range() {
            self.invalidate_range(range);
        }
    }

    /// Drop every cached page overlapping `range`.
    pub fn invalidate_range(&mut self, range: IovaRange) {
        let first = range.start >> self.page_lg2;
        let last = range.last >> self.page_lg2;
        if last - first < self.entries.len() as u64 {
            for page in first..=last {
                let entry = &mut self.entries[page as usize & self.index_mask];
                if entry.tag == page + 1 {
                    entry.tag = 0;
                }
            }
        } else {
            for entry in self.entries.iter_mut() {
                if entry.tag != 0 && (first..=last).contains(&(entry.tag - 1)) {
                    entry.tag = 0;
                }
            }
        }
    }

    /// Drop every cached page.
    pub fn invalidate_all(&mut self) {
        for entry in self.entries.iter_mut() {
            entry.tag = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::AmdV1;
    use crate::prot::Prot;

    #[test]
    fn stale_entry_survives_until_flushed() {
        let mut table = PageTable::<AmdV1>::new(AmdV1::config(3)).unwrap();
        let mut iotlb = Iotlb::for_format::<AmdV1>();
        table.map(0x10_0000, 0x5000, 0x1000, Prot::READ).unwrap();
        assert_eq!(
            iotlb.translate(&mut table, 0x10_0010, Access::Read),
            Ok(0x5010)
        );
        let (_, gather) = table.unmap(0x10_0000, 0x1000).unwrap();
        // Hardware still uses the cached translation.
        assert_eq!(
            iotlb.translate(&mut table, 0x10_0010, Access::Read),
            Ok(0x5010)
        );
        iotlb.flush(gather);
        assert_eq!(
            iotlb.translate(&mut table, 0x10_0010, Access::Read),
            Err(FaultReason::NotPresent)
        );
        assert_eq!(iotlb.stats(), (1, 2));
    }

    #[test]
    fn permission_checked_on_hit_and_miss() {
        let mut table = PageTable::<AmdV1>::new(AmdV1::config(3)).unwrap();
        let mut iotlb = Iotlb::for_format::<AmdV1>();
        table.map(0, 0, 0x1000, Prot::READ).unwrap();
        assert_eq!(
            iotlb.translate(&mut table, 0, Access::Write),
            Err(FaultReason::Permission)
        );
        assert_eq!(iotlb.translate(&mut table, 0, Access::Read), Ok(0));
        assert_eq!(
            iotlb.translate(&mut table, 8, Access::Write),
            Err(FaultReason::Permission)
        );
    }

    #[test]
    fn large_range_invalidation_scans_entries() {
        let mut table = PageTable::<AmdV1>::new(AmdV1::config(3)).unwrap();
        let mut iotlb = Iotlb::new(12, 4);
        table.map(0, 0, 0x4000, Prot::READ).unwrap();
        for page in 0..4 {
            iotlb
                .translate(&mut table, page << 12, Access::Read)
                .unwrap();
        }
        let (_, gather) = table.unmap(0, 1 << 30).unwrap();
        assert_eq!(gather.range(), IovaRange::new(0, 0x3fff));
        iotlb.invalidate_range(IovaRange::new(0, (1 << 30) - 1).unwrap());
        let _ = gather.into_range();
        assert_eq!(
            iotlb.translate(&mut table, 0, Access::Read),
            Err(FaultReason::NotPresent)
        );
    }
}
