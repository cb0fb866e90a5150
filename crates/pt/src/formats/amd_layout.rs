//! The AMD IOMMU v1 PTE layout, parameterised by the granule so that the
//! 4 KiB host format and the 2 KiB selftest mock share one encoding.
//!
//! Bits: 0 present; 6 dirty; 11:9 next level (0 = leaf of one item,
//! 1..6 = table, 7 = leaf whose size is coded in the address); 51:12 address
//! in granule units; 61 / 62 read / write. A leaf spanning `2^k > 1` items has
//! next level 7 and its low `size_lg2 − granule − 1` address bits set to one.

use crate::format::{level_shift, low_mask, size_span, Leaf, Pte};
use crate::prot::Prot;

const PRESENT: u64 = 1 << 0;
pub(crate) const DIRTY: u64 = 1 << 6;
const NEXT_LEVEL_SHIFT: u32 = 9;
const NEXT_LEVEL_MASK: u64 = 0b111 << NEXT_LEVEL_SHIFT;
const NEXT_LEVEL_SIZED_LEAF: u64 = 7;
const ADDR_SHIFT: u32 = 12;
const ADDR_BITS: u32 = 40;
const ADDR_MASK: u64 = low_mask(ADDR_BITS) << ADDR_SHIFT;
const READ: u64 = 1 << 61;
const WRITE: u64 = 1 << 62;
/// 512 GiB leaves are never used (a hardware erratum), at any level.
const EXCLUDED_SIZE_LG2: u32 = 39;

/// Leaf sizes at `level`: every power of two of the level's nine, minus the
/// excluded size and anything not below the output width.
pub(crate) const fn leaf_sizes(granule_lg2: u32, max_oa_bits: u32, level: u32) -> u64 {
    let lo = level_shift(granule_lg2, level);
    let mut hi = lo + 8;
    if hi >= max_oa_bits {
        hi = max_oa_bits - 1;
    }
    size_span(lo, hi) & !(1u64 << EXCLUDED_SIZE_LG2)
}

#[inline(always)]
fn prot_bits(prot: Prot) -> u64 {
    (if prot.read { READ } else { 0 }) | (if prot.write { WRITE } else { 0 })
}

#[inline(always)]
pub(crate) fn decode(granule_lg2: u32, pte: u64, level: u32) -> Pte {
    if pte & PRESENT == 0 {
        return Pte::Empty;
    }
    let next_level = (pte & NEXT_LEVEL_MASK) >> NEXT_LEVEL_SHIFT;
    let addr = (pte & ADDR_MASK) >> ADDR_SHIFT;
    if level > 0 && next_level != 0 && next_level != NEXT_LEVEL_SIZED_LEAF {
        return Pte::Table {
            pa: addr << granule_lg2,
        };
    }
    let (base, size_lg2) = if next_level == NEXT_LEVEL_SIZED_LEAF {
        let ones = addr.trailing_ones();
        (addr & !low_mask(ones), ones + granule_lg2 + 1)
    } else {
        (addr, level_shift(granule_lg2, level))
    };
    Pte::Leaf(Leaf {
        pa: base << granule_lg2,
        size_lg2,
        prot: Prot {
            read: pte & READ != 0,
            write: pte & WRITE != 0,
        },
        dirty: pte & DIRTY != 0,
    })
}

#[inline(always)]
pub(crate) fn encode_table(granule_lg2: u32, child_pa: u64, level: u32) -> u64 {
    // Tables grant both permissions: the leaf alone decides.
    PRESENT
        | (u64::from(level) << NEXT_LEVEL_SHIFT)
        | (((child_pa >> granule_lg2) << ADDR_SHIFT) & ADDR_MASK)
        | READ
        | WRITE
}

#[inline(always)]
pub(crate) fn encode_leaf(granule_lg2: u32, pa: u64, size_lg2: u32, level: u32, prot: Prot) -> u64 {
    let mut addr = pa >> granule_lg2;
    let next_level = if size_lg2 == level_shift(granule_lg2, level) {
        0
    } else {
        addr |= low_mask(size_lg2 - granule_lg2 - 1);
        NEXT_LEVEL_SIZED_LEAF
    };
    PRESENT
        | (next_level << NEXT_LEVEL_SHIFT)
        | ((addr << ADDR_SHIFT) & ADDR_MASK)
        | prot_bits(prot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_leaf_examples_from_the_spec() {
        // 64 KiB at level 0 with a 4 KiB granule: three low address bits set.
        let pte = encode_leaf(12, 0x1234_0000, 16, 0, Prot::READ);
        assert_eq!((pte >> 9) & 7, 7);
        assert_eq!((pte >> 12) & 0xf, 0b0111);
        // 4 MiB at level 1: address bit 0..8 = 0b1_1111_1111 (nine ones).
        let pte = encode_leaf(12, 0x4000_0000, 22, 1, Prot::READ_WRITE);
        assert_eq!((pte >> 12) & 0x3ff, 0x1ff);
        match decode(12, pte, 1) {
            Pte::Leaf(leaf) => {
                assert_eq!(leaf.pa, 0x4000_0000);
                assert_eq!(leaf.size_lg2, 22);
            }
            other => panic!("{other:?}"),
        }
        // Mock: a 4 KiB leaf at level 0 is two slots, next level 7, bit 0 clear.
        let pte = encode_leaf(11, 0x3000, 12, 0, Prot::READ);
        assert_eq!((pte >> 9) & 7, 7);
        assert_eq!((pte >> 12) & 1, 0);
        assert_eq!((pte >> 12) & low_mask(40), 0x3000 >> 11);
    }

    #[test]
    fn amd_sizes_skip_512g_and_stop_below_output_width() {
        assert_eq!(leaf_sizes(12, 52, 0), size_span(12, 20));
        assert_eq!(leaf_sizes(12, 52, 3), size_span(40, 47));
        assert_eq!(leaf_sizes(12, 52, 4), size_span(48, 51));
        assert_eq!(leaf_sizes(11, 51, 3), size_span(38, 46) & !(1 << 39));
    }
}
