//! AMD IOMMU v1 host page table: 4 KiB granule, up to six levels (the sixth
//! holds no leaves), 52-bit output, leaves of every power of two from 4 KiB
//! except 512 GiB. Dirty is bit 6, set by hardware when the device table
//! entry enables it.

use super::amd_layout;
use crate::format::{level_shift, low_mask, Format, Pte};
use crate::prot::Prot;
use crate::table::TableConfig;

/// The AMD IOMMU v1 format.
#[derive(Clone, Copy, Debug, Default)]
pub struct AmdV1;

impl AmdV1 {
    /// A table whose root is at `top_level` (1..=5; Linux starts at 2): it
    /// translates `min(64, 21 + 9·top_level)` IOVA bits from 0.
    pub fn config(top_level: u32) -> TableConfig {
        let va_bits = (level_shift(Self::GRANULE_LG2, top_level) + 9).min(64);
        TableConfig::new(top_level, va_bits, u64::MAX)
    }
}

impl Format for AmdV1 {
    const DIRTY_BIT: u64 = amd_layout::DIRTY;
    const NAME: &'static str = "amdv1";
    const GRANULE_LG2: u32 = 12;
    const MAX_TOP_LEVEL: u32 = 5;
    const MAX_OA_BITS: u32 = 52;

    fn leaf_sizes(level: u32) -> u64 {
        if level >= Self::MAX_TOP_LEVEL {
            return 0;
        }
        amd_layout::leaf_sizes(Self::GRANULE_LG2, Self::MAX_OA_BITS, level)
    }
    #[inline(always)]
    fn decode(pte: u64, level: u32) -> Pte {
        amd_layout::decode(Self::GRANULE_LG2, pte, level)
    }
    #[inline(always)]
    fn encode_table(child_pa: u64, level: u32) -> u64 {
        amd_layout::encode_table(Self::GRANULE_LG2, child_pa, level)
    }
    #[inline(always)]
    fn encode_leaf(pa: u64, size_lg2: u32, level: u32, prot: Prot) -> u64 {
        amd_layout::encode_leaf(Self::GRANULE_LG2, pa & low_mask(52), size_lg2, level, prot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        crate::format::check_round_trip::<AmdV1>();
    }

    #[test]
    fn top_level_never_holds_leaves() {
        assert_eq!(AmdV1::leaf_sizes(5), 0);
        assert_eq!(AmdV1::config(5).va_bits, 64);
        assert_eq!(AmdV1::config(2).va_bits, 39);
    }
}
