//! Dirty read: report and optionally clean the dirty leaves of a range.

use super::{item_end, slot_index, PageTable, RangeCursor, UnmapError};
use crate::arena::{TableArena, TableId};
use crate::dirty::DirtyBitmap;
use crate::format::{level_shift, low_mask, Format, Pte};
use crate::gather::IotlbGather;
use crate::range::IovaRange;

impl<F: Format> PageTable<F> {
    /// Record in `bitmap` every dirty leaf overlapping `[iova, iova + len − 1]`
    /// (its whole extent, clipped to the range). Unless `clear` is false, also
    /// clean those leaves (every slot of a multi-slot leaf).
    ///
    /// The returned gather covers the cleaned leaves: until it is flushed,
    /// the IOTLB still believes them dirty and later writes through cached
    /// entries will not mark them again.
    pub fn read_and_clear_dirty(
        &mut self,
        iova: u64,
        len: u64,
        bitmap: &mut DirtyBitmap,
        clear: bool,
    ) -> Result<IotlbGather, UnmapError> {
        let range = self.checked_range(iova, len)?;
        let mut gather = IotlbGather::empty();
        let Some(range) = range.intersection(&IovaRange {
            start: 0,
            last: self.va_last,
        }) else {
            return Ok(gather);
        };
        let mut cursor = RangeCursor {
            iova: range.start,
            last: range.last,
            done: false,
        };
        let mut visit = |extent: IovaRange, slots: &mut [u64]| {
            if !slots.iter().any(|&pte| F::is_dirty(pte)) {
                return;
            }
            if let Some(clipped) = extent.intersection(&range) {
                bitmap.record(clipped);
            }
            if clear {
                for pte in slots.iter_mut() {
                    *pte = F::clear_dirty(*pte);
                }
                gather.add(extent);
            }
        };
        while !cursor.done {
            let root = self.root_for(cursor.iova);
            self.visit_leaves_in(root, self.top_level, &mut cursor, &mut visit);
        }
        Ok(gather)
    }

    /// Call `visit(extent, slots)` for each leaf the cursor's range touches,
    /// with all the slots of the leaf (also those before the range start).
    fn visit_leaves_in<V: FnMut(IovaRange, &mut [u64])>(
        &mut self,
        table: TableId,
        level: u32,
        cursor: &mut RangeCursor,
        visit: &mut V,
    ) {
        let shift = level_shift(F::GRANULE_LG2, level);
        loop {
            let slot = slot_index(cursor.iova, shift);
            let pte = self.arena.get(table, slot);
            let next = match F::decode(pte, level) {
                Pte::Empty => item_end(cursor.iova, shift),
                Pte::Leaf(leaf) => {
                    let slots = 1usize << (leaf.size_lg2 - shift);
                    let first = slot & !(slots - 1);
                    let extent = IovaRange {
                        start: cursor.iova & !low_mask(leaf.size_lg2),
                        last: cursor.iova | low_mask(leaf.size_lg2),
                    };
                    visit(
                        extent,
                        &mut self.arena.table_mut(table)[first..first + slots],
                    );
                    extent.last.checked_add(1)
                }
                Pte::Table { pa } => {
                    self.visit_leaves_in(TableArena::id_at(pa), level - 1, cursor, visit);
                    if cursor.done || slot_index(cursor.iova, shift) == 0 {
                        return;
                    }
                    continue;
                }
            };
            cursor.advance_to(next);
            if cursor.done || slot_index(cursor.iova, shift) == 0 {
                return;
            }
        }
    }
}
