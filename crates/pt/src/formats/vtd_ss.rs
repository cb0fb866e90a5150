//! Intel VT-d second-stage tables: 4 KiB granule, 3 to 5 levels
//! (39/48/57-bit IOVA), leaves of 4 KiB, 2 MiB and 1 GiB (the last two only
//! when the capability register says so). There is no present bit: a slot is
//! empty iff it is zero, and a leaf must grant read or write.
//!
//! Bits: 0 read, 1 write, 7 page size (leaf at levels 1–2), 8 accessed,
//! 9 dirty, 51:12 address.

use crate::format::{level_shift, low_mask, Format, Leaf, Pte};
use crate::prot::Prot;
use crate::table::TableConfig;

const READ: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const PAGE_SIZE: u64 = 1 << 7;
const DIRTY: u64 = 1 << 9;
const ADDR_MASK: u64 = low_mask(52) & !low_mask(12);

/// The VT-d second-stage format.
#[derive(Clone, Copy, Debug, Default)]
pub struct VtdSecondStage;

impl VtdSecondStage {
    /// A table for an IOMMU of `va_bits` input width (31..=57; the root level
    /// follows from it as on hardware), with 2 MiB and 1 GiB leaves enabled
    /// by the capability bits `super_2m` / `super_1g`.
    pub fn config(va_bits: u32, super_2m: bool, super_1g: bool) -> TableConfig {
        let top_level = match va_bits {
            49.. => 4,
            40..=48 => 3,
            _ => 2,
        };
        let mut sizes = 1u64 << 12;
        if super_2m {
            sizes |= 1 << 21;
        }
        if super_1g {
            sizes |= 1 << 30;
        }
        TableConfig::new(top_level, va_bits, sizes)
    }
}

impl Format for VtdSecondStage {
    const DIRTY_BIT: u64 = DIRTY;
    const NAME: &'static str = "vtd-ss";
    const GRANULE_LG2: u32 = 12;
    const MAX_TOP_LEVEL: u32 = 4;
    const MAX_OA_BITS: u32 = 52;

    fn leaf_sizes(level: u32) -> u64 {
        match level {
            0..=2 => 1 << level_shift(Self::GRANULE_LG2, level),
            _ => 0,
        }
    }
    #[inline(always)]
    fn decode(pte: u64, level: u32) -> Pte {
        if pte == 0 {
            return Pte::Empty;
        }
        let pa = pte & ADDR_MASK;
        if level > 0 && pte & PAGE_SIZE == 0 {
            return Pte::Table { pa };
        }
        Pte::Leaf(Leaf {
            pa,
            size_lg2: level_shift(Self::GRANULE_LG2, level),
            prot: Prot {
                read: pte & READ != 0,
                write: pte & WRITE != 0,
            },
            dirty: pte & DIRTY != 0,
        })
    }
    #[inline(always)]
    fn encode_table(child_pa: u64, _level: u32) -> u64 {
        READ | WRITE | (child_pa & ADDR_MASK)
    }
    #[inline(always)]
    fn encode_leaf(pa: u64, _size_lg2: u32, level: u32, prot: Prot) -> u64 {
        let mut pte = pa & ADDR_MASK;
        if prot.read {
            pte |= READ;
        }
        if prot.write {
            pte |= WRITE;
        }
        if level > 0 {
            pte |= PAGE_SIZE;
        }
        pte
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        crate::format::check_round_trip::<VtdSecondStage>();
    }

    #[test]
    fn root_level_follows_input_width() {
        assert_eq!(VtdSecondStage::config(39, true, true).top_level, 2);
        assert_eq!(VtdSecondStage::config(48, true, true).top_level, 3);
        assert_eq!(VtdSecondStage::config(57, true, true).top_level, 4);
    }
}
