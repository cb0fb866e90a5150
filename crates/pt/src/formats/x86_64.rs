//! x86-64 paging as used by VT-d first stage and AMD v2: 4 KiB granule,
//! 4 or 5 levels (48/57-bit IOVA, lower canonical half only), leaves of
//! 4 KiB, 2 MiB and 1 GiB.
//!
//! Bits: 0 present, 1 writable, 2 user, 5 accessed, 6 dirty, 7 page size
//! (leaf at levels 1–2), 51:12 address. Every present leaf is readable.
//! Writable leaves are written with accessed and dirty already set, as Linux
//! does, so that hardware need not write back; [`X86_64::clear_dirty`] lets a
//! dirty-tracking caller clean them and observe later writes.

use crate::format::{level_shift, low_mask, Format, Leaf, Pte};
use crate::prot::Prot;
use crate::table::TableConfig;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const PAGE_SIZE: u64 = 1 << 7;
const ADDR_MASK: u64 = low_mask(52) & !low_mask(12);

/// The x86-64 format.
#[derive(Clone, Copy, Debug, Default)]
pub struct X86_64;

impl X86_64 {
    /// Four-level (48-bit) or, with `five_level`, five-level (57-bit) tables.
    pub fn config(five_level: bool) -> TableConfig {
        if five_level {
            TableConfig::new(4, 57, u64::MAX)
        } else {
            TableConfig::new(3, 48, u64::MAX)
        }
    }
}

impl Format for X86_64 {
    const DIRTY_BIT: u64 = DIRTY;
    const NAME: &'static str = "x86-64";
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
        if pte & PRESENT == 0 {
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
                read: true,
                write: pte & WRITABLE != 0,
            },
            dirty: pte & DIRTY != 0,
        })
    }
    #[inline(always)]
    fn encode_table(child_pa: u64, _level: u32) -> u64 {
        PRESENT | WRITABLE | USER | ACCESSED | (child_pa & ADDR_MASK)
    }
    #[inline(always)]
    fn encode_leaf(pa: u64, _size_lg2: u32, level: u32, prot: Prot) -> u64 {
        let mut pte = PRESENT | USER | ACCESSED | (pa & ADDR_MASK);
        if prot.write {
            pte |= WRITABLE | DIRTY;
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
        crate::format::check_round_trip::<X86_64>();
    }

    #[test]
    fn writable_leaves_start_dirty() {
        let pte = X86_64::encode_leaf(0x1000, 12, 0, Prot::READ_WRITE);
        assert!(X86_64::is_dirty(pte));
        assert!(!X86_64::is_dirty(X86_64::encode_leaf(
            0x1000,
            12,
            0,
            Prot::READ
        )));
    }
}
