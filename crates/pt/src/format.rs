//! What a page-table format must supply to the engine.
//!
//! The engine ([`crate::PageTable`]) owns the algorithm; a format only knows
//! its granule, which leaf sizes each level may hold, and how a PTE encodes
//! "empty", "table" and "leaf". Table pages are always 512 × `u64`.

use crate::prot::Prot;

/// Slots in every table.
pub const TABLE_SLOTS: usize = 512;
/// log2 of [`TABLE_SLOTS`]: IOVA bits consumed per level.
pub const TABLE_INDEX_BITS: u32 = 9;

/// A decoded leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// Output address of the first byte of the whole leaf (not of the slot).
    pub pa: u64,
    /// log2 of the leaf's size in bytes.
    pub size_lg2: u32,
    /// Effective permissions.
    pub prot: Prot,
    /// Whether this slot carries the dirty mark.
    pub dirty: bool,
}

/// A decoded PTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pte {
    /// Nothing mapped through this slot.
    Empty,
    /// Points at a child table whose (table-space) address is `pa`.
    Table {
        /// Address of the child table.
        pa: u64,
    },
    /// Maps a page.
    Leaf(Leaf),
}

/// A page-table format: bit encodings and leaf-size rules.
///
/// Contract the engine relies on:
/// - an empty slot is the value 0, and `decode(0, _)` is [`Pte::Empty`];
/// - `decode(encode_table(pa, l), l) == Pte::Table { pa }` for `l > 0`;
/// - for a size `2^s` in `leaf_sizes(l)` and an aligned `pa`,
///   `decode(encode_leaf(pa, s, l, p), l)` is a leaf with that `pa`, `s`,
///   the format's effective form of `p` and `dirty == is_dirty(..)`;
/// - a leaf of size `2^s` at level `l` occupies `2^(s − level_shift(l))` slots,
///   all holding the same value when written;
/// - leaf sizes at level `l` lie in `[level_shift(l), level_shift(l) + 8]`.
pub trait Format: 'static {
    /// Short name for reports.
    const NAME: &'static str;
    /// log2 of the level-0 item size.
    const GRANULE_LG2: u32;
    /// Highest level a table of this format can have as its root.
    const MAX_TOP_LEVEL: u32;
    /// Widest output address, in bits.
    const MAX_OA_BITS: u32;

    /// Bitmap of leaf sizes allowed at `level` (bit `n` ⇔ `2^n` bytes).
    fn leaf_sizes(level: u32) -> u64;
    /// Decode the slot value `pte` found at `level`.
    fn decode(pte: u64, level: u32) -> Pte;
    /// The entry at `level` pointing at a child table at address `child_pa`.
    fn encode_table(child_pa: u64, level: u32) -> u64;
    /// The value written in every slot of a `2^size_lg2`-byte leaf at `level`.
    fn encode_leaf(pa: u64, size_lg2: u32, level: u32, prot: Prot) -> u64;
    /// The leaf bit hardware sets on a write. Formats whose dirty state is
    /// more than that one bit override the three methods below.
    const DIRTY_BIT: u64;
    /// Whether a leaf slot carries the dirty mark.
    #[inline(always)]
    fn is_dirty(pte: u64) -> bool {
        pte & Self::DIRTY_BIT != 0
    }
    /// The leaf slot with the dirty mark set, as hardware writes it.
    #[inline(always)]
    fn set_dirty(pte: u64) -> u64 {
        pte | Self::DIRTY_BIT
    }
    /// The leaf slot with the dirty mark cleared.
    #[inline(always)]
    fn clear_dirty(pte: u64) -> u64 {
        pte & !Self::DIRTY_BIT
    }
}

/// log2 of the item size at `level` for granule `granule_lg2`.
#[inline(always)]
pub const fn level_shift(granule_lg2: u32, level: u32) -> u32 {
    granule_lg2 + TABLE_INDEX_BITS * level
}

/// Bitmap of every size `2^n` with `lo <= n <= hi` (empty when `lo > hi`).
pub const fn size_span(lo: u32, hi: u32) -> u64 {
    if lo > hi || lo > 63 {
        return 0;
    }
    let hi = if hi > 63 { 63 } else { hi };
    let upto = if hi == 63 {
        u64::MAX
    } else {
        (1u64 << (hi + 1)) - 1
    };
    upto & !((1u64 << lo) - 1)
}

/// Mask of the low `bits` bits (all ones for `bits >= 64`).
#[inline(always)]
pub const fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Checks the [`Format`] contract for one leaf size; shared by the formats' unit tests.
#[cfg(test)]
pub(crate) fn check_round_trip<F: Format>() {
    for level in 0..=F::MAX_TOP_LEVEL {
        let shift = level_shift(F::GRANULE_LG2, level);
        if level > 0 {
            let table_pa = 0x7_0000_0000u64 & low_mask(F::MAX_OA_BITS) & !0xfff;
            let pte = F::encode_table(table_pa, level);
            assert_ne!(pte, 0);
            assert_eq!(F::decode(pte, level), Pte::Table { pa: table_pa });
        }
        let sizes = F::leaf_sizes(level);
        for size_lg2 in 0..64 {
            if sizes & (1u64 << size_lg2) == 0 {
                continue;
            }
            assert!(size_lg2 >= shift && size_lg2 <= shift + 8);
            let pa = (0x5a5a_5a5a_5a5a_5a5a_u64 & low_mask(F::MAX_OA_BITS)) & !low_mask(size_lg2);
            for prot in [Prot::READ, Prot::READ_WRITE] {
                let pte = F::encode_leaf(pa, size_lg2, level, prot);
                match F::decode(pte, level) {
                    Pte::Leaf(leaf) => {
                        assert_eq!(leaf.pa, pa, "level {level} size 2^{size_lg2}");
                        assert_eq!(leaf.size_lg2, size_lg2);
                        assert!(leaf.prot.read);
                        assert_eq!(leaf.prot.write, prot.write);
                        let clean = F::clear_dirty(pte);
                        assert!(!F::is_dirty(clean));
                        if prot.write {
                            // Only writable leaves can become dirty (Arm's DBM).
                            assert!(F::is_dirty(F::set_dirty(clean)));
                        }
                        assert_eq!(
                            F::decode(clean, level),
                            F::decode(F::clear_dirty(F::set_dirty(clean)), level)
                        );
                    }
                    other => panic!("level {level} size 2^{size_lg2}: decoded {other:?}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_span_edges() {
        assert_eq!(size_span(12, 12), 1 << 12);
        assert_eq!(size_span(12, 13), 0x3000);
        assert_eq!(size_span(13, 12), 0);
        assert_eq!(size_span(63, 70), 1 << 63);
        assert_eq!(size_span(11, 37), 0x3F_FFFF_F800);
    }
}
