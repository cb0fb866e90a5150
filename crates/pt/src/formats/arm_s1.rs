//! Arm VMSAv8-64 stage-1 tables with a 4 KiB granule, as an SMMUv3 context
//! descriptor's TTB0 points at them: leaves of 4 KiB (Arm level 3 = our
//! level 0), 2 MiB and 1 GiB blocks, 48-bit output.
//!
//! Bits 1:0: `01` block, `11` table (or page at our level 0), `x0` invalid.
//! Leaf: AttrIndx 4:2, AP 7:6 (bit 7 set: read-only; bit 6: EL0 access), SH
//! 9:8, AF 10, nG 11, address 47:12, DBM 51, PXN 53, UXN 54. A device reads
//! any valid leaf; it writes only where AP\[2\] is clear, or where DBM is set
//! (hardware then clears AP\[2\] on the first write: the stage-1 dirty scheme).

use crate::format::{level_shift, low_mask, Format, Leaf, Pte};
use crate::prot::Prot;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AP_EL0: u64 = 1 << 6;
const AP_READ_ONLY: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const DBM: u64 = 1 << 51;
const ADDR_MASK: u64 = low_mask(48) & !low_mask(12);

/// The Arm stage-1 format.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArmS1;

impl ArmS1 {
    /// The root level for a `2^ia_bits`-byte input range (T0SZ = 64 −
    /// `ia_bits`), as the 4 KiB granule's table walk starts it.
    pub fn top_level(ia_bits: u32) -> u32 {
        ia_bits.saturating_sub(12).div_ceil(9).clamp(1, 4) - 1
    }
}

impl Format for ArmS1 {
    /// With DBM, hardware marks a leaf dirty by making it writable.
    const DIRTY_BIT: u64 = AP_READ_ONLY;
    const NAME: &'static str = "arm-s1";
    const GRANULE_LG2: u32 = 12;
    const MAX_TOP_LEVEL: u32 = 3;
    const MAX_OA_BITS: u32 = 48;

    fn leaf_sizes(level: u32) -> u64 {
        match level {
            0..=2 => 1 << level_shift(Self::GRANULE_LG2, level),
            _ => 0,
        }
    }
    #[inline(always)]
    fn decode(pte: u64, level: u32) -> Pte {
        if pte & VALID == 0 {
            return Pte::Empty;
        }
        let pa = pte & ADDR_MASK;
        let table_or_page = pte & TABLE_OR_PAGE != 0;
        if level > 0 && table_or_page {
            return Pte::Table { pa };
        }
        if (level == 0 && !table_or_page) || level > 2 {
            // `01` is reserved at the last level, and 4 KiB granules have no
            // blocks at Arm level 0.
            return Pte::Empty;
        }
        Pte::Leaf(Leaf {
            pa,
            size_lg2: level_shift(Self::GRANULE_LG2, level),
            prot: Prot {
                read: true,
                write: pte & AP_READ_ONLY == 0 || pte & DBM != 0,
            },
            dirty: Self::is_dirty(pte),
        })
    }
    #[inline(always)]
    fn encode_table(child_pa: u64, _level: u32) -> u64 {
        VALID | TABLE_OR_PAGE | (child_pa & ADDR_MASK)
    }
    #[inline(always)]
    fn encode_leaf(pa: u64, _size_lg2: u32, level: u32, prot: Prot) -> u64 {
        let mut pte = VALID | AP_EL0 | SH_INNER | ACCESS_FLAG | (pa & ADDR_MASK);
        if level == 0 {
            pte |= TABLE_OR_PAGE;
        }
        if prot.write {
            pte |= DBM;
        } else {
            pte |= AP_READ_ONLY;
        }
        pte
    }
    #[inline(always)]
    fn is_dirty(pte: u64) -> bool {
        pte & DBM != 0 && pte & AP_READ_ONLY == 0
    }
    #[inline(always)]
    fn set_dirty(pte: u64) -> u64 {
        if pte & DBM != 0 {
            pte & !AP_READ_ONLY
        } else {
            pte
        }
    }
    #[inline(always)]
    fn clear_dirty(pte: u64) -> u64 {
        if pte & DBM != 0 {
            pte | AP_READ_ONLY
        } else {
            pte
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        crate::format::check_round_trip::<ArmS1>();
    }

    #[test]
    fn ap2_without_dbm_is_read_only_and_the_walk_starts_where_t0sz_says() {
        let ro = VALID | TABLE_OR_PAGE | ACCESS_FLAG | AP_READ_ONLY | 0x5000;
        match ArmS1::decode(ro, 0) {
            Pte::Leaf(l) => assert!(l.prot.read && !l.prot.write),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ArmS1::decode(VALID | 0x5000, 0),
            Pte::Empty,
            "01 at the last level"
        );
        assert_eq!(ArmS1::top_level(48), 3);
        assert_eq!(ArmS1::top_level(39), 2);
        assert_eq!(ArmS1::top_level(32), 2);
        assert_eq!(ArmS1::top_level(30), 1);
    }
}
