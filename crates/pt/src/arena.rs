//! Storage for table pages.
//!
//! Every table is a real 4 KiB page of 512 PTEs in the format's bit layout.
//! A table entry must hold the child's "physical address"; ours live in their
//! own table address space: table `id` is at address `id << 12`. No DMA
//! reaches that space, so it cannot be confused with the data PAs in leaves.

use crate::format::TABLE_SLOTS;

/// Index of a table page in the arena.
pub(crate) type TableId = u32;

/// A table page: 512 slots.
pub(crate) type Table = [u64; TABLE_SLOTS];

/// Table pages with a free list.
///
/// Invariants:
/// - `used[id]` counts the non-empty slots of `tables[id]` (leaf slots and
///   table entries), so a table is empty exactly when its count is 0;
/// - every page on `free` is all zeros (tables are only freed once empty),
///   so reuse needs no clearing;
/// - `live` = pages not on `free` ≤ `limit`.
pub(crate) struct TableArena {
    tables: Vec<Box<Table>>,
    used: Vec<u16>,
    free: Vec<TableId>,
    live: usize,
    limit: usize,
}

impl std::fmt::Debug for TableArena {
    // A summary: the pages themselves are 4 KiB each.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableArena")
            .field("live", &self.live)
            .field("allocated", &self.tables.len())
            .field("limit", &self.limit)
            .finish()
    }
}

impl TableArena {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            tables: Vec::new(),
            used: Vec::new(),
            free: Vec::new(),
            live: 0,
            limit,
        }
    }

    /// A zeroed table, or `None` when the page limit is reached.
    pub(crate) fn alloc(&mut self) -> Option<TableId> {
        if self.live >= self.limit {
            return None;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = TableId::try_from(self.tables.len()).ok()?;
                self.tables.push(Box::new([0; TABLE_SLOTS]));
                self.used.push(0);
                id
            }
        };
        self.live += 1;
        Some(id)
    }

    /// Return an empty table to the free list.
    pub(crate) fn free(&mut self, id: TableId) {
        debug_assert_eq!(self.used[id as usize], 0);
        debug_assert!(self.tables[id as usize].iter().all(|&pte| pte == 0));
        self.free.push(id);
        self.live -= 1;
    }

    #[inline(always)]
    pub(crate) fn get(&self, id: TableId, slot: usize) -> u64 {
        self.tables[id as usize][slot % TABLE_SLOTS]
    }

    #[inline(always)]
    pub(crate) fn set(&mut self, id: TableId, slot: usize, pte: u64) {
        self.tables[id as usize][slot % TABLE_SLOTS] = pte;
    }

    #[inline(always)]
    pub(crate) fn table_mut(&mut self, id: TableId) -> &mut Table {
        &mut self.tables[id as usize]
    }

    #[inline(always)]
    pub(crate) fn used(&self, id: TableId) -> u16 {
        self.used[id as usize]
    }

    #[inline(always)]
    pub(crate) fn add_used(&mut self, id: TableId, slots: usize) {
        self.used[id as usize] += slots as u16;
    }

    #[inline(always)]
    pub(crate) fn sub_used(&mut self, id: TableId, slots: usize) {
        self.used[id as usize] -= slots as u16;
    }

    /// Pages in use.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Address of table `id` in the table address space.
    #[inline(always)]
    pub(crate) fn address(id: TableId) -> u64 {
        u64::from(id) << 12
    }

    /// Table id at a table-space address.
    #[inline(always)]
    pub(crate) fn id_at(pa: u64) -> TableId {
        (pa >> 12) as TableId
    }
}
