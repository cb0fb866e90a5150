//! Map: write leaves for a range, choosing the largest leaf each step allows.

use super::{fill_slots, slot_index, MapError, MapErrorKind, PageTable};
use crate::arena::{TableArena, TableId};
use crate::format::{level_shift, low_mask, Format, Pte, TABLE_INDEX_BITS, TABLE_SLOTS};
use crate::prot::Prot;
use crate::range::IovaRange;

/// Progress of a map through the tables: the next IOVA and PA, the bytes
/// still to map and those mapped so far.
struct MapCursor {
    iova: u64,
    pa: u64,
    remaining: u64,
    mapped: u64,
    prot: Prot,
}

impl MapCursor {
    /// Account for `bytes` just mapped. IOVA and PA only move while bytes
    /// remain, so they never pass the range's last byte (which may be `u64::MAX`).
    #[inline(always)]
    fn advance(&mut self, bytes: u64) {
        self.mapped += bytes;
        self.remaining -= bytes;
        if self.remaining != 0 {
            self.iova += bytes;
            self.pa += bytes;
        }
    }
}

impl<F: Format> PageTable<F> {
    /// The largest allowed leaf that `iova`, `pa` and `remaining` permit.
    #[inline(always)]
    fn best_leaf_lg2(&self, iova: u64, pa: u64, remaining: u64) -> u32 {
        let aligned_lg2 = (iova | pa).trailing_zeros();
        let fits_lg2 = 63 - remaining.leading_zeros();
        let candidates = self.pgsize_bitmap & low_mask(aligned_lg2.min(fits_lg2) + 1);
        63 - candidates.leading_zeros()
    }

    /// Map `[iova, iova + len − 1]` to `[pa, pa + len − 1]` with `prot`,
    /// using at each step the largest leaf that the alignment of IOVA and PA
    /// and the remaining length allow.
    ///
    /// On failure the first `mapped` bytes stay mapped (see [`MapError`]).
    /// Mapping only adds translations, so no IOTLB invalidation is owed.
    pub fn map(&mut self, iova: u64, pa: u64, len: u64, prot: Prot) -> Result<(), MapError> {
        let fail = |kind| MapError { mapped: 0, kind };
        if len == 0 || prot.is_none() {
            return Err(fail(MapErrorKind::InvalidArgument));
        }
        let range = IovaRange::from_len(iova, len).ok_or(fail(MapErrorKind::Overflow))?;
        let pa_last = pa
            .checked_add(len - 1)
            .ok_or(fail(MapErrorKind::Overflow))?;
        if (iova | pa | len) & low_mask(self.min_page_lg2) != 0 {
            return Err(fail(MapErrorKind::InvalidArgument));
        }
        if !self.aperture.contains_range(&range) || pa_last > low_mask(F::MAX_OA_BITS) {
            return Err(fail(MapErrorKind::OutOfRange));
        }

        let mut cursor = MapCursor {
            iova,
            pa,
            remaining: len,
            mapped: 0,
            prot,
        };
        while cursor.remaining > 0 {
            let root = self.root_for(cursor.iova);
            self.map_in(root, self.top_level, &mut cursor)
                .map_err(|kind| MapError {
                    mapped: cursor.mapped,
                    kind,
                })?;
        }
        Ok(())
    }

    /// Map from `cursor` inside `table` (at `level`) until the range is done
    /// or the cursor leaves this table.
    fn map_in(
        &mut self,
        table: TableId,
        level: u32,
        cursor: &mut MapCursor,
    ) -> Result<(), MapErrorKind> {
        let shift = level_shift(F::GRANULE_LG2, level);
        loop {
            let size_lg2 = self.best_leaf_lg2(cursor.iova, cursor.pa, cursor.remaining);
            if Self::leaf_level(size_lg2) < level {
                let slot = slot_index(cursor.iova, shift);
                let child = self.child_for_map(table, level, slot)?;
                self.map_in(child, level - 1, cursor)?;
            } else {
                // Inside a child table the IOVA is never aligned to the
                // parent's item, so the chosen leaf always belongs here.
                self.map_leaves(table, level, cursor, size_lg2)?;
            }
            if cursor.remaining == 0 || slot_index(cursor.iova, shift) == 0 {
                return Ok(());
            }
        }
    }

    /// Level of the leaves of size `2^size_lg2` (a size in `pgsize_bitmap`).
    #[inline(always)]
    fn leaf_level(size_lg2: u32) -> u32 {
        (size_lg2 - F::GRANULE_LG2) / TABLE_INDEX_BITS
    }

    /// Write consecutive leaves into `table`, starting with one of
    /// `2^size_lg2` bytes, while the best leaf stays at `level` and the
    /// cursor stays in the table. This is the per-PTE hot loop of a map.
    #[inline]
    fn map_leaves(
        &mut self,
        table: TableId,
        level: u32,
        cursor: &mut MapCursor,
        mut size_lg2: u32,
    ) -> Result<(), MapErrorKind> {
        let shift = level_shift(F::GRANULE_LG2, level);
        let mut written = 0usize;
        let result = loop {
            let slot = slot_index(cursor.iova, shift);
            let slots = 1usize << (size_lg2 - shift);
            let size = 1u64 << size_lg2;
            let leaves = self.steady_run(cursor, size_lg2, slot, slots);
            let entries = &mut self.arena.table_mut(table)[slot..slot + leaves * slots];
            if entries.iter().any(|&pte| pte != 0) {
                // Rare: settle the count, then clear or refuse the first
                // leaf's slots and go on one leaf at a time.
                self.arena.add_used(table, written);
                written = 0;
                match self.make_room_for_leaf(table, level, slot, slots) {
                    Ok(()) => {
                        let pte = F::encode_leaf(cursor.pa, size_lg2, level, cursor.prot);
                        fill_slots(&mut self.arena.table_mut(table)[slot..slot + slots], pte);
                        written = slots;
                        cursor.advance(size);
                    }
                    Err(kind) => break Err(kind),
                }
            } else {
                if slots == 1 {
                    for (index, pte) in entries.iter_mut().enumerate() {
                        let pa = cursor.pa + ((index as u64) << size_lg2);
                        *pte = F::encode_leaf(pa, size_lg2, level, cursor.prot);
                    }
                } else {
                    for (index, group) in entries.chunks_exact_mut(slots).enumerate() {
                        let pa = cursor.pa + ((index as u64) << size_lg2);
                        fill_slots(group, F::encode_leaf(pa, size_lg2, level, cursor.prot));
                    }
                }
                written += leaves * slots;
                cursor.advance(size * leaves as u64);
            }
            if cursor.remaining == 0 || slot_index(cursor.iova, shift) == 0 {
                break Ok(());
            }
            size_lg2 = self.best_leaf_lg2(cursor.iova, cursor.pa, cursor.remaining);
            if Self::leaf_level(size_lg2) != level {
                break Ok(());
            }
        };
        self.arena.add_used(table, written);
        result
    }

    /// How many leaves of `2^size_lg2` bytes to write at once from `slot`.
    ///
    /// When the lowest bit in which IOVA and PA differ caps the leaf size at
    /// exactly this size, no later step can choose a larger leaf, so every
    /// following leaf is the same size until the table or the length runs
    /// out. Otherwise alignment may still grow: one leaf.
    #[inline(always)]
    fn steady_run(&self, cursor: &MapCursor, size_lg2: u32, slot: usize, slots: usize) -> usize {
        let differ_lg2 = (cursor.iova ^ cursor.pa).trailing_zeros().min(63);
        let cap = self.pgsize_bitmap & low_mask(differ_lg2 + 1);
        if 63 - cap.leading_zeros() != size_lg2 {
            return 1;
        }
        let room = (TABLE_SLOTS - slot) / slots;
        let fit = cursor.remaining >> size_lg2;
        (room as u64).min(fit) as usize
    }

    /// Make `slots` slots from `slot` empty for a new leaf: empty slots are
    /// fine, a table without leaves below is freed, anything else is in use.
    fn make_room_for_leaf(
        &mut self,
        table: TableId,
        level: u32,
        slot: usize,
        slots: usize,
    ) -> Result<(), MapErrorKind> {
        for index in slot..slot + slots {
            let pte = self.arena.get(table, index);
            if pte == 0 {
                continue;
            }
            match F::decode(pte, level) {
                Pte::Table { pa } if level > 0 => {
                    let child = TableArena::id_at(pa);
                    if self.subtree_has_leaves(child, level - 1) {
                        return Err(MapErrorKind::AddressInUse);
                    }
                    self.free_subtree(child, level - 1);
                    self.arena.set(table, index, 0);
                    self.arena.sub_used(table, 1);
                }
                _ => return Err(MapErrorKind::AddressInUse),
            }
        }
        Ok(())
    }

    /// The child table under `slot`, created when the slot is empty.
    #[inline]
    fn child_for_map(
        &mut self,
        table: TableId,
        level: u32,
        slot: usize,
    ) -> Result<TableId, MapErrorKind> {
        let pte = self.arena.get(table, slot);
        if pte == 0 {
            let child = self.arena.alloc().ok_or(MapErrorKind::NoMemory)?;
            self.arena.set(
                table,
                slot,
                F::encode_table(TableArena::address(child), level),
            );
            self.arena.add_used(table, 1);
            return Ok(child);
        }
        match F::decode(pte, level) {
            Pte::Table { pa } => Ok(TableArena::id_at(pa)),
            _ => Err(MapErrorKind::AddressInUse),
        }
    }

    fn subtree_has_leaves(&self, table: TableId, level: u32) -> bool {
        if self.arena.used(table) == 0 {
            return false;
        }
        (0..TABLE_SLOTS).any(|slot| {
            let pte = self.arena.get(table, slot);
            pte != 0
                && match F::decode(pte, level) {
                    Pte::Table { pa } if level > 0 => {
                        self.subtree_has_leaves(TableArena::id_at(pa), level - 1)
                    }
                    Pte::Empty => false,
                    _ => true,
                }
        })
    }

    /// Free a table and every table below it; the caller clears its entry.
    fn free_subtree(&mut self, table: TableId, level: u32) {
        for slot in 0..TABLE_SLOTS {
            let pte = self.arena.get(table, slot);
            if pte == 0 {
                continue;
            }
            if let Pte::Table { pa } = F::decode(pte, level) {
                if level > 0 {
                    self.free_subtree(TableArena::id_at(pa), level - 1);
                }
            }
            self.arena.set(table, slot, 0);
            self.arena.sub_used(table, 1);
        }
        self.arena.free(table);
    }
}
