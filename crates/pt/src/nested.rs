//! Two-stage translation: a stage-1 table that a guest owns and keeps in its
//! own memory, whose addresses (table pointers and outputs alike) are guest
//! physical addresses (GPA), translated in turn by a stage-2 table the host
//! owns (an [`AnyPageTable`]).
//!
//! A device access at IOVA `v` first finds the stage-1 leaf for `v`: each
//! table entry's GPA goes through stage 2 before the entry is read. The
//! leaf's GPA then goes through stage 2 for the data itself, with stage 2's
//! permissions and dirty tracking. The access needs both stages' permission.
//!
//! Stage-1 results are cached in a [`Stage1Tlb`] that, like hardware's,
//! stays stale when the guest edits its table until the guest invalidates
//! (`IOMMU_HWPT_INVALIDATE`). Stage-2 lookups use the stage-2 IOTLB.

use crate::any::AnyPageTable;
use crate::dma::DmaMemory;
use crate::fault::{Fault, FaultLog, FaultReason};
use crate::format::{level_shift, Format, Leaf, Pte, TABLE_SLOTS};
use crate::formats::{ArmS1, X86_64};
use crate::iotlb::Iotlb;
use crate::prot::{Access, Prot};
use std::collections::BTreeMap;

/// Stage-1 granule: every supported stage-1 format has 4 KiB pages.
const S1_PAGE_LG2: u32 = 12;
const S1_PAGE: u64 = 1 << S1_PAGE_LG2;

/// Stage-1 formats a guest can hand over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Format {
    /// x86-64 paging, as Intel VT-d's first stage (and AMD v2) use it.
    X86_64,
    /// Arm VMSAv8-64 stage 1, 4 KiB granule, as SMMUv3 context descriptors
    /// point at it.
    ArmS1,
}

/// Where a guest's stage-1 table is: its format, the GPA of its root table,
/// and the root's level (3 for 4-level, 4 for 5-level x86-64 paging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1 {
    /// The encoding of the guest's table entries.
    pub format: Stage1Format,
    /// GPA of the root table (4 KiB aligned), translated through stage 2.
    pub root_gpa: u64,
    /// Level of the root table; level 0 holds 4 KiB leaves.
    pub top_level: u32,
}

/// A cached stage-1 translation of one 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cached {
    gpa_page: u64,
    prot: Prot,
}

/// The stage-1 TLB: per 4 KiB IOVA page, the GPA page and permissions last
/// walked. Entries stay until invalidated, however the guest's table changes.
/// Bounded: past `capacity` entries the oldest page (lowest IOVA) is dropped,
/// which hardware may do at any time too.
#[derive(Clone, Debug)]
pub struct Stage1Tlb {
    entries: BTreeMap<u64, Cached>,
    capacity: usize,
}

impl Default for Stage1Tlb {
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl Stage1Tlb {
    /// An empty TLB holding at most `capacity` pages (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Stage1Tlb {
            entries: BTreeMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Forgets the pages that `[iova, iova + npages × 4 KiB)` touches.
    pub fn invalidate(&mut self, iova: u64, npages: u64) {
        let first = iova >> S1_PAGE_LG2;
        let last = first.saturating_add(npages.saturating_sub(1));
        if npages == 0 {
            return;
        }
        let doomed: Vec<u64> = self.entries.range(first..=last).map(|(&k, _)| k).collect();
        for page in doomed {
            self.entries.remove(&page);
        }
    }

    /// Forgets every cached page.
    pub fn invalidate_all(&mut self) {
        self.entries.clear();
    }

    /// The number of pages cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no page is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, page: u64, cached: Cached) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&page) {
            self.entries.pop_first();
        }
        self.entries.insert(page, cached);
    }
}

/// Walks a stage-1 table of format `F` whose entries `read_entry` fetches by
/// GPA; returns the leaf for `iova`.
pub fn walk_stage1<F: Format>(
    root_gpa: u64,
    top_level: u32,
    iova: u64,
    mut read_entry: impl FnMut(u64) -> Result<u64, FaultReason>,
) -> Result<Leaf, FaultReason> {
    let top_shift = level_shift(F::GRANULE_LG2, top_level) + crate::format::TABLE_INDEX_BITS;
    if top_shift < 64 && iova >> top_shift != 0 {
        return Err(FaultReason::OutOfRange);
    }
    let mut table = root_gpa;
    let mut level = top_level;
    loop {
        let index = (iova >> level_shift(F::GRANULE_LG2, level)) as usize % TABLE_SLOTS;
        let entry = read_entry(table + index as u64 * 8)?;
        match F::decode(entry, level) {
            Pte::Empty => return Err(FaultReason::NotPresent),
            Pte::Leaf(leaf) => return Ok(leaf),
            Pte::Table { pa } if level > 0 => {
                table = pa;
                level -= 1;
            }
            Pte::Table { .. } => return Err(FaultReason::NotPresent),
        }
    }
}

/// One device access through two stages.
pub struct NestedDma<'a, M: DmaMemory + ?Sized> {
    /// The guest's stage-1 table.
    pub stage1: Stage1,
    /// Stage-1 translations cached for this nested domain.
    pub tlb: &'a mut Stage1Tlb,
    /// The host's stage-2 table (GPA to PA), the nest parent.
    pub stage2: &'a mut AnyPageTable,
    /// The IOTLB in front of the stage-2 table.
    pub stage2_iotlb: &'a mut Iotlb,
    /// Where faults of either stage are recorded.
    pub faults: &'a mut FaultLog,
    /// The memory behind stage-2 translations, guest tables included.
    pub memory: &'a mut M,
}

impl<M: DmaMemory + ?Sized> NestedDma<'_, M> {
    /// The GPA page and permissions of `iova`'s page, from the TLB or a walk.
    fn stage1_page(&mut self, iova: u64) -> Result<Cached, FaultReason> {
        let page = iova >> S1_PAGE_LG2;
        if let Some(&c) = self.tlb.entries.get(&page) {
            return Ok(c);
        }
        let stage2 = &mut *self.stage2;
        let iotlb = &mut *self.stage2_iotlb;
        let memory = &*self.memory;
        let read_entry = |gpa: u64| -> Result<u64, FaultReason> {
            let pa = stage2.translate(iotlb, gpa, Access::Read)?;
            let mut raw = [0u8; 8];
            memory.read_phys(pa, &mut raw)?;
            Ok(u64::from_le_bytes(raw))
        };
        let s1 = self.stage1;
        let leaf = match s1.format {
            Stage1Format::X86_64 => {
                walk_stage1::<X86_64>(s1.root_gpa, s1.top_level, iova, read_entry)?
            }
            Stage1Format::ArmS1 => {
                walk_stage1::<ArmS1>(s1.root_gpa, s1.top_level, iova, read_entry)?
            }
        };
        let offset_in_leaf = (iova & !(S1_PAGE - 1)) & ((1u64 << leaf.size_lg2) - 1);
        let cached = Cached {
            gpa_page: leaf.pa + offset_in_leaf,
            prot: leaf.prot,
        };
        self.tlb.insert(page, cached);
        Ok(cached)
    }

    /// Runs `each(gpa, range of the buffer)` for every stage-1 page the
    /// access at `iova` of `len` bytes touches, after checking stage-1
    /// translation and permission for all of them (nothing moves on a fault).
    fn pieces(
        &mut self,
        iova: u64,
        len: usize,
        access: Access,
    ) -> Result<Vec<(u64, std::ops::Range<usize>)>, Fault> {
        let mut out = Vec::new();
        let mut done = 0usize;
        while done < len {
            let at = iova.checked_add(done as u64).ok_or(Fault {
                reason: FaultReason::OutOfRange,
                iova,
                access,
            })?;
            let fault = |reason| Fault {
                reason,
                iova: at,
                access,
            };
            let c = self.stage1_page(at).map_err(|r| {
                let f = fault(r);
                self.faults.record(f);
                f
            })?;
            let allowed = match access {
                Access::Read => c.prot.read,
                Access::Write => c.prot.write,
            };
            if !allowed {
                let f = fault(FaultReason::Permission);
                self.faults.record(f);
                return Err(f);
            }
            let n = ((S1_PAGE - at % S1_PAGE) as usize).min(len - done);
            out.push((c.gpa_page + at % S1_PAGE, done..done + n));
            done += n;
        }
        Ok(out)
    }

    /// Reads guest memory at `gpa` through stage 2, as the IOMMU itself
    /// reads guest-owned structures (an SMMUv3 context descriptor).
    pub fn read_guest(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), FaultReason> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = gpa
                .checked_add(done as u64)
                .ok_or(FaultReason::OutOfRange)?;
            let n = ((S1_PAGE - at % S1_PAGE) as usize).min(buf.len() - done);
            let pa = self.stage2.translate(self.stage2_iotlb, at, Access::Read)?;
            self.memory.read_phys(pa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// The device reads `buf.len()` bytes at `iova`.
    pub fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), Fault> {
        for (gpa, range) in self.pieces(iova, buf.len(), Access::Read)? {
            self.stage2.dma_read(
                self.stage2_iotlb,
                self.faults,
                self.memory,
                gpa,
                &mut buf[range],
            )?;
        }
        Ok(())
    }

    /// The device writes `data` at `iova`.
    pub fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), Fault> {
        let pieces = self.pieces(iova, data.len(), Access::Write)?;
        // Stage 2 must allow every piece before any byte moves.
        for (gpa, range) in &pieces {
            for at in [gpa, &(gpa + (range.len() as u64 - 1))] {
                self.stage2
                    .translate(self.stage2_iotlb, *at, Access::Write)
                    .map_err(|reason| {
                        let f = Fault {
                            reason,
                            iova: *at,
                            access: Access::Write,
                        };
                        self.faults.record(f);
                        f
                    })?;
            }
        }
        for (gpa, range) in pieces {
            self.stage2.dma_write(
                self.stage2_iotlb,
                self.faults,
                self.memory,
                gpa,
                &data[range],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::any::FormatKind;
    use crate::table::TableConfig;
    use crate::VecMemory;

    /// The GPA of the entry for `iova` in the table at `table` of `level`.
    fn slot(table: u64, iova: u64, level: u32) -> u64 {
        table + 8 * ((iova >> (12 + 9 * level)) & 511)
    }

    /// Guest memory of 64 KiB at GPA 0, backed by host memory at PA 1 MiB
    /// through a stage-2 table; a 4-level x86-64 stage 1 at GPA 0 mapping
    /// IOVA 0x40_0000 to GPA 0x8000 (read-write) and 0x40_1000 to GPA 0x9000
    /// (read-only).
    fn setup() -> (AnyPageTable, VecMemory, Stage1) {
        let mut s2 =
            AnyPageTable::new(FormatKind::X86_64, TableConfig::new(3, 48, u64::MAX)).unwrap();
        s2.map(0, 0x10_0000, 0x1_0000, Prot::READ_WRITE).unwrap();
        let mut mem = VecMemory::new(0x10_0000, 0x1_0000);
        let mut put = |gpa: u64, value: u64| {
            mem.write_phys(0x10_0000 + gpa, &value.to_le_bytes())
                .unwrap();
        };
        // Tables at GPA 0x0000 (L3), 0x1000 (L2), 0x2000 (L1), 0x3000 (L0).
        let iova = 0x40_0000u64;
        put(slot(0, iova, 3), 0x1000 | 0x7);
        put(slot(0x1000, iova, 2), 0x2000 | 0x7);
        put(slot(0x2000, iova, 1), 0x3000 | 0x7);
        put(slot(0x3000, iova, 0), 0x8000 | 0x7);
        put(slot(0x3000, iova + 0x1000, 0), 0x9000 | 0x5);
        mem.write_phys(0x10_8000, b"stage one").unwrap();
        let s1 = Stage1 {
            format: Stage1Format::X86_64,
            root_gpa: 0,
            top_level: 3,
        };
        (s2, mem, s1)
    }

    #[test]
    fn a_read_goes_through_both_stages_and_a_stale_entry_survives_until_invalidated() {
        let (mut s2, mut mem, s1) = setup();
        let mut s2_tlb = s2.new_iotlb();
        let mut tlb = Stage1Tlb::default();
        let mut faults = FaultLog::new(8);
        let mut buf = [0u8; 9];
        let mut dma = NestedDma {
            stage1: s1,
            tlb: &mut tlb,
            stage2: &mut s2,
            stage2_iotlb: &mut s2_tlb,
            faults: &mut faults,
            memory: &mut mem,
        };
        dma.read(0x40_0000, &mut buf).unwrap();
        assert_eq!(&buf, b"stage one");
        // The guest unmaps the page: the TLB still translates it.
        dma.memory
            .write_phys(0x10_0000 + slot(0x3000, 0x40_0000, 0), &0u64.to_le_bytes())
            .unwrap();
        dma.read(0x40_0000, &mut buf).unwrap();
        dma.tlb.invalidate(0x40_0000, 1);
        let fault = dma.read(0x40_0000, &mut buf).unwrap_err();
        assert_eq!(fault.reason, FaultReason::NotPresent);
        assert_eq!(fault.iova, 0x40_0000);
    }

    #[test]
    fn a_write_needs_both_stages_to_allow_it() {
        let (mut s2, mut mem, s1) = setup();
        let mut s2_tlb = s2.new_iotlb();
        let mut tlb = Stage1Tlb::default();
        let mut faults = FaultLog::new(8);
        let mut dma = NestedDma {
            stage1: s1,
            tlb: &mut tlb,
            stage2: &mut s2,
            stage2_iotlb: &mut s2_tlb,
            faults: &mut faults,
            memory: &mut mem,
        };
        let fault = dma.write(0x40_1000, b"no").unwrap_err();
        assert_eq!(
            fault.reason,
            FaultReason::Permission,
            "stage 1 is read-only there"
        );
        // Spanning both pages: nothing is written when the second faults.
        assert!(dma.write(0x40_0ffe, b"abcd").is_err());
        let mut two = [0u8; 2];
        dma.read(0x40_0ffe, &mut two).unwrap();
        assert_eq!(two, [0, 0]);
        dma.write(0x40_0000, b"ok").unwrap();
        let mut back = [0u8; 2];
        dma.memory.read_phys(0x10_8000, &mut back).unwrap();
        assert_eq!(&back, b"ok");
    }

    #[test]
    fn an_iova_beyond_the_tables_reach_is_out_of_range() {
        let read = |_gpa: u64| -> Result<u64, FaultReason> { Ok(0) };
        assert_eq!(
            walk_stage1::<X86_64>(0, 3, 1 << 48, read),
            Err(FaultReason::OutOfRange)
        );
    }
}
