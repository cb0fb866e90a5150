//! Arm VMSAv8-64 stage-2 tables with a 4 KiB granule: leaves of 4 KiB
//! (Arm level 3 = our level 0), 2 MiB and 1 GiB blocks, 48-bit output.
//!
//! Bits 1:0: `01` block, `11` table (or page at our level 0), `x0` invalid.
//! Leaf: MemAttr 5:2 (normal write-back), S2AP 7:6 (bit 6 read, bit 7 write),
//! SH 9:8 (inner shareable), AF 10, address 47:12, DBM 51.
//!
//! Dirty uses the DBM scheme: a writable leaf carries DBM; it is dirty when
//! the write bit (7) is also set and clean ("writable-clean") when it is not.
//! Hardware sets bit 7 on the first write, so a writable-clean leaf still
//! grants write. Writable leaves are written dirty.

use crate::format::{level_shift, low_mask, Format, Leaf, Pte};
use crate::prot::Prot;
use crate::table::TableConfig;

const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const MEMATTR_NORMAL_WB: u64 = 0xf << 2;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const DBM: u64 = 1 << 51;
const ADDR_MASK: u64 = low_mask(48) & !low_mask(12);

/// The Arm stage-2 format.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArmS2;

impl ArmS2 {
    /// A table for an input size of `ias` bits (32..=48). The start level is
    /// the one Linux picks; when that would be Arm level 0 with at most 16
    /// root entries, the root is instead 2..16 concatenated level-1 tables.
    pub fn config(ias: u32) -> TableConfig {
        let bits_above_granule = ias.saturating_sub(12);
        let levels = bits_above_granule.div_ceil(9).max(1);
        let mut top_level = levels - 1;
        if top_level == 3 {
            let root_entries_lg2 = bits_above_granule - 27;
            if root_entries_lg2 <= 4 {
                top_level = 2;
            }
        }
        TableConfig::new(top_level, ias, u64::MAX)
    }
}

impl Format for ArmS2 {
    /// With DBM, hardware marks a leaf dirty by granting it write permission.
    const DIRTY_BIT: u64 = S2AP_WRITE;
    const NAME: &'static str = "arm-s2";
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
        if level == 0 && !table_or_page {
            // `01` is reserved at the last level: hardware treats it as invalid.
            return Pte::Empty;
        }
        Pte::Leaf(Leaf {
            pa,
            size_lg2: level_shift(Self::GRANULE_LG2, level),
            prot: Prot {
                read: pte & S2AP_READ != 0,
                write: pte & (S2AP_WRITE | DBM) != 0,
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
        let mut pte = VALID | MEMATTR_NORMAL_WB | SH_INNER | ACCESS_FLAG | (pa & ADDR_MASK);
        if level == 0 {
            pte |= TABLE_OR_PAGE;
        }
        if prot.read {
            pte |= S2AP_READ;
        }
        if prot.write {
            pte |= S2AP_WRITE | DBM;
        }
        pte
    }
    #[inline(always)]
    fn is_dirty(pte: u64) -> bool {
        pte & (DBM | S2AP_WRITE) == (DBM | S2AP_WRITE)
    }
    #[inline(always)]
    fn set_dirty(pte: u64) -> u64 {
        if pte & DBM != 0 {
            pte | S2AP_WRITE
        } else {
            pte
        }
    }
    #[inline(always)]
    fn clear_dirty(pte: u64) -> u64 {
        if pte & DBM != 0 {
            pte & !S2AP_WRITE
        } else {
            pte
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        crate::format::check_round_trip::<ArmS2>();
    }

    #[test]
    fn start_level_and_concatenation_follow_linux() {
        // (ias, our top level); Arm start level = 3 − top.
        for (ias, top) in [
            (32, 2),
            (36, 2),
            (39, 2),
            (40, 2),
            (43, 2),
            (44, 3),
            (48, 3),
        ] {
            assert_eq!(ArmS2::config(ias).top_level, top, "ias {ias}");
        }
    }

    #[test]
    fn writable_clean_leaf_still_grants_write() {
        let clean = ArmS2::clear_dirty(ArmS2::encode_leaf(0x2000, 12, 0, Prot::READ_WRITE));
        assert!(!ArmS2::is_dirty(clean));
        match ArmS2::decode(clean, 0) {
            Pte::Leaf(leaf) => assert!(leaf.prot.write),
            other => panic!("{other:?}"),
        }
    }
}
