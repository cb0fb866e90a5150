//! The iommufd selftest's mock format: the AMD v1 bit layout with a 2 KiB
//! granule (addresses in 2 KiB units, so items are 2 KiB, 1 MiB, 512 MiB, …),
//! 51-bit output, and the two mock domain kinds.

use super::amd_layout;
use crate::format::{Format, Pte};
use crate::prot::Prot;
use crate::range::IovaRange;
use crate::table::TableConfig;

/// The mock format.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mock;

/// Which mock domain to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MockKind {
    /// Every size from 2 KiB to 128 GiB; aperture `[1 << 24, (1 << 31) − 1]`.
    Default,
    /// Only 4 KiB and 1 MiB pages; aperture the whole 38-bit space.
    Huge,
}

/// The mock's fixed IO page size.
pub const MOCK_PAGE_SIZE: u64 = 2048;
/// The mock's huge page: 512 mock pages.
pub const MOCK_HUGE_PAGE_SIZE: u64 = 512 * MOCK_PAGE_SIZE;
/// First IOVA of the default mock aperture.
pub const MOCK_APERTURE_START: u64 = 1 << 24;
/// Last IOVA of the default mock aperture.
pub const MOCK_APERTURE_LAST: u64 = (1 << 31) - 1;

impl Mock {
    /// The selftest's domain: three levels (root at level 2, 38 IOVA bits).
    pub fn config(kind: MockKind) -> TableConfig {
        let config = TableConfig::new(2, 38, u64::MAX);
        match kind {
            MockKind::Default => config.with_aperture(IovaRange {
                start: MOCK_APERTURE_START,
                last: MOCK_APERTURE_LAST,
            }),
            MockKind::Huge => config.with_pgsize_bitmap(MOCK_HUGE_PAGE_SIZE | 4096),
        }
    }
}

impl Format for Mock {
    const DIRTY_BIT: u64 = amd_layout::DIRTY;
    const NAME: &'static str = "mock";
    const GRANULE_LG2: u32 = 11;
    const MAX_TOP_LEVEL: u32 = 4;
    const MAX_OA_BITS: u32 = 51;

    fn leaf_sizes(level: u32) -> u64 {
        if level > Self::MAX_TOP_LEVEL {
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
        amd_layout::encode_leaf(Self::GRANULE_LG2, pa, size_lg2, level, prot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::size_span;
    use crate::PageTable;

    #[test]
    fn encodings_round_trip() {
        crate::format::check_round_trip::<Mock>();
    }

    #[test]
    fn default_domain_matches_the_selftest() {
        let table = PageTable::<Mock>::new(Mock::config(MockKind::Default)).unwrap();
        assert_eq!(table.pgsize_bitmap(), size_span(11, 37));
        assert_eq!(table.pgsize_bitmap(), 0x3F_FFFF_F800);
        assert_eq!(
            table.aperture(),
            IovaRange::new(1 << 24, (1 << 31) - 1).unwrap()
        );
    }

    #[test]
    fn huge_domain_matches_the_selftest() {
        let table = PageTable::<Mock>::new(Mock::config(MockKind::Huge)).unwrap();
        assert_eq!(table.pgsize_bitmap(), 0x10_1000);
        assert_eq!(table.aperture(), IovaRange::new(0, (1 << 38) - 1).unwrap());
    }
}
