//! Unmap: remove the leaves of a range and free the tables it empties.

use super::{fill_slots, slot_index, PageTable, RangeCursor, UnmapError};
use crate::arena::{TableArena, TableId};
use crate::format::{level_shift, low_mask, Format, Pte, TABLE_INDEX_BITS};
use crate::gather::IotlbGather;
use crate::range::IovaRange;

/// Progress of an unmap: the walk, the bytes removed so far and the hull of
/// the removed leaves (`removed_start > removed_last` while none).
struct UnmapCursor {
    range: RangeCursor,
    unmapped: u64,
    removed_start: u64,
    removed_last: u64,
}

impl<F: Format> PageTable<F> {
    /// Remove the leaves in `[iova, iova + len − 1]` and free table pages
    /// left empty. A leaf reaching past the end is removed whole, so the
    /// returned byte count can exceed `len`; holes count nothing. Starting
    /// inside a leaf is refused and changes nothing.
    ///
    /// The returned gather must reach the IOTLB: until it does, cached
    /// translations of the removed leaves remain usable.
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(u64, IotlbGather), UnmapError> {
        let range = self.checked_range(iova, len)?;
        let Some(range) = range.intersection(&IovaRange {
            start: 0,
            last: self.va_last,
        }) else {
            return Ok((0, IotlbGather::empty()));
        };
        if let Some((extent, _)) = self.lookup(range.start) {
            if extent.start != range.start {
                return Err(UnmapError::InsideLeaf);
            }
        }
        let mut cursor = UnmapCursor {
            range: RangeCursor {
                iova: range.start,
                last: range.last,
                done: false,
            },
            unmapped: 0,
            removed_start: u64::MAX,
            removed_last: 0,
        };
        while !cursor.range.done {
            let root = self.root_for(cursor.range.iova);
            self.unmap_in(root, self.top_level, &mut cursor);
        }
        let mut gather = IotlbGather::empty();
        if cursor.unmapped > 0 {
            gather.add(IovaRange {
                start: cursor.removed_start,
                last: cursor.removed_last,
            });
        }
        Ok((cursor.unmapped, gather))
    }

    fn unmap_in(&mut self, table: TableId, level: u32, cursor: &mut UnmapCursor) {
        let shift = level_shift(F::GRANULE_LG2, level);
        let table_mask = low_mask(shift + TABLE_INDEX_BITS);
        let table_base = cursor.range.iova & !table_mask;
        // The last slot of this table the range reaches.
        let stop = cursor.range.last.min(cursor.range.iova | table_mask);
        let last_slot = slot_index(stop, shift);
        let mut slot = slot_index(cursor.range.iova, shift);
        // Slots of `table` emptied here, settled once on the way out.
        let mut cleared = 0usize;
        while slot <= last_slot {
            // Leaves and holes: a tight scan along the table. Only slot
            // numbers are tracked per leaf; bytes and the removed hull are
            // worked out once per scan.
            let entries = self.arena.table_mut(table);
            let mut child = None;
            let mut leaf_slots = 0usize;
            let mut first_leaf_slot = usize::MAX;
            let mut leaf_end_slot = 0usize;
            let mut run_size_lg2 = shift;
            let mut run_slots = 1usize;
            while slot <= last_slot {
                let pte = entries[slot];
                if pte == 0 {
                    slot += 1;
                    continue;
                }
                match F::decode(pte, level) {
                    Pte::Empty => slot += 1,
                    Pte::Leaf(leaf)
                        if leaf.size_lg2 == run_size_lg2 && slot & (run_slots - 1) == 0 =>
                    {
                        // Same size as the previous leaf (at first: one
                        // slot), the usual case. The step comes from the
                        // branch, not from arithmetic on the PTE, so the
                        // next load can start early.
                        fill_slots(&mut entries[slot..slot + run_slots], 0);
                        leaf_slots += run_slots;
                        first_leaf_slot = first_leaf_slot.min(slot);
                        slot += run_slots;
                        leaf_end_slot = slot;
                    }
                    Pte::Leaf(leaf) => {
                        let slots = 1usize << (leaf.size_lg2 - shift);
                        let first = slot & !(slots - 1);
                        fill_slots(&mut entries[first..first + slots], 0);
                        leaf_slots += slots;
                        first_leaf_slot = first_leaf_slot.min(first);
                        slot = first + slots;
                        leaf_end_slot = slot;
                        run_size_lg2 = leaf.size_lg2;
                        run_slots = slots;
                    }
                    Pte::Table { pa } => {
                        child = Some(TableArena::id_at(pa));
                        break;
                    }
                }
            }
            if leaf_slots > 0 {
                cleared += leaf_slots;
                let bytes = (leaf_slots as u64).saturating_mul(1u64 << shift);
                cursor.unmapped = cursor.unmapped.saturating_add(bytes);
                // Leaves come in IOVA order: the hull is first start .. latest last.
                let start = table_base | ((first_leaf_slot as u64) << shift);
                cursor.removed_start = cursor.removed_start.min(start);
                cursor.removed_last =
                    table_base | (((leaf_end_slot - 1) as u64) << shift) | low_mask(shift);
            }
            let Some(child) = child else { break };
            // A child table: descend from where the range is inside it.
            let slot_start = table_base | ((slot as u64) << shift);
            cursor.range.iova = cursor.range.iova.max(slot_start);
            self.unmap_in(child, level - 1, cursor);
            if self.arena.used(child) == 0 {
                self.arena.set(table, slot, 0);
                cleared += 1;
                self.arena.free(child);
            }
            slot += 1;
        }
        self.arena.sub_used(table, cleared);
        // Leave the cursor after this table's part of the range.
        if stop == cursor.range.last {
            cursor.range.done = true;
        } else {
            cursor.range.iova = stop + 1;
        }
    }
}
