//! Intel VT-d: nested domains whose stage 1 is an x86-64 table in guest
//! memory (`struct iommu_hwpt_vtd_s1`), invalidated by address range.

use super::{DriverOps, InvalidationArray, Stage1Start};
use crate::errno::{Errno, Result};
use crate::memory::PAGE_SIZE;
use crate::object::HwptNested;
use softiommu_pt::nested::{Stage1, Stage1Format};
use softiommu_uapi::iommufd::{
    IommuHwptVtdS1, IommuHwptVtdS1Invalidate, IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
};
use zerocopy::FromBytes;

/// `IOMMU_VTD_INV_FLAGS_LEAF`.
const FLAGS_LEAF: u32 = 1;

/// The VT-d driver's ops.
pub struct Vtd;

impl DriverOps for Vtd {
    /// Entries `{addr, npages, flags, __reserved}`, each at least through
    /// `__reserved`; `npages == u64::MAX` with `addr == 0` drops everything.
    fn invalidate_hwpt(
        &self,
        hwpt: &mut HwptNested,
        array: InvalidationArray<'_>,
        done: &mut u32,
    ) -> Result<()> {
        if array.data_type != IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 {
            return Err(Errno::EINVAL);
        }
        for i in 0..array.entry_num {
            let entry: IommuHwptVtdS1Invalidate =
                array.entry(i, std::mem::size_of::<IommuHwptVtdS1Invalidate>())?;
            if entry.flags & !FLAGS_LEAF != 0 || entry.reserved != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            let everything = entry.npages == u64::MAX;
            if entry.addr % PAGE_SIZE != 0 || (everything && entry.addr != 0) {
                return Err(Errno::EINVAL);
            }
            if everything {
                hwpt.stage1_tlb.invalidate_all();
            } else {
                hwpt.stage1_tlb.invalidate(entry.addr, entry.npages);
            }
            *done += 1;
        }
        Ok(())
    }

    /// The x86-64 table at `pgtbl_addr`, five-level when the address width
    /// passes 48 bits.
    fn stage1(&self, data: &[u8]) -> Result<Stage1Start> {
        let (s1, _) = IommuHwptVtdS1::read_from_prefix(data).map_err(|_| Errno::EINVAL)?;
        let five_level = s1.addr_width > 48;
        Ok(Stage1Start::Table {
            stage1: Stage1 {
                format: Stage1Format::X86_64,
                root_gpa: s1.pgtbl_addr & !0xfff,
                top_level: if five_level { 4 } else { 3 },
            },
            ia_bits: if five_level { 57 } else { 48 },
        })
    }
}

/// The text of Linux's `/sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct`
/// for device `bdf` translating through `table` (none: no user domain, so
/// no mapping lines): a header, then one line per leaf with the entries a
/// walk reads, PML5E down to the leaf, as the driver's debugfs prints them.
pub fn translation_struct(bdf: &str, table: Option<&softiommu_pt::AnyPageTable>) -> String {
    use std::fmt::Write;
    let mut out = format!("Device {bdf} @0x0\n");
    let _ = writeln!(
        out,
        "{:<17}\t{:<18}\t{:<18}\t{:<18}\t{:<18}\tPTE",
        "IOVA_PFN", "PML5E", "PML4E", "PDPE", "PDE"
    );
    let Some(table) = table else {
        return out;
    };
    for (range, _) in table.leaves() {
        // Linux numbers levels from 1 (the PTE) up to 5 (the PML5E).
        let mut path = [0u64; 6];
        for (level, raw) in table.walk_entries(range.start) {
            if let Some(slot) = path.get_mut(level as usize + 1) {
                *slot = raw;
            }
        }
        let _ = write!(
            out,
            "0x{:013x} |\t0x{:016x}\t0x{:016x}\t0x{:016x}",
            range.start >> 12,
            path[5],
            path[4],
            path[3]
        );
        if path[2] != 0 {
            let _ = write!(out, "\t0x{:016x}", path[2]);
            if path[1] != 0 {
                let _ = write!(out, "\t0x{:016x}", path[1]);
            }
        }
        out.push('\n');
    }
    out
}
