//! The radix page-table engine, generic over a [`Format`].
//!
//! One algorithm, monomorphised per format. Range operations (map, unmap,
//! dirty read) descend once and then move along each table, recursing into a
//! child only for the slots the range covers: no PTE of a range costs a walk
//! from the root. Ranges are `[start, last]` inclusive and every IOVA / PA /
//! length sum is checked (see [`crate::range`]).
//!
//! This module holds the table, its configuration and single-IOVA walks;
//! the submodules `map`, `unmap` and `dirty` hold the range operations.

mod dirty;
mod map;
mod unmap;

use std::marker::PhantomData;

use crate::arena::{TableArena, TableId};
use crate::format::{level_shift, low_mask, Format, Leaf, Pte, TABLE_INDEX_BITS, TABLE_SLOTS};
use crate::prot::Prot;
use crate::range::IovaRange;

/// Bytes in one table page.
pub const TABLE_BYTES: u64 = 4096;
/// Most root pages a table may concatenate (Arm stage 2 allows 16).
const MAX_ROOT_PAGES: u32 = 16;

/// How to build a [`PageTable`]. Format types have constructors for the
/// configurations their hardware uses (e.g. [`crate::formats::AmdV1::config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Level of the root table.
    pub top_level: u32,
    /// IOVA bits translated; above the root level's reach, the root is made
    /// of `2^(va_bits − reach)` concatenated pages (at most 16).
    pub va_bits: u32,
    /// Page sizes the domain may use; intersected with the format's sizes.
    pub pgsize_bitmap: u64,
    /// IOVAs accepted by `map`; `None` means `[0, 2^va_bits − 1]`.
    pub aperture: Option<IovaRange>,
    /// Cap on table pages (root included); `map` fails with
    /// [`MapErrorKind::NoMemory`] beyond it.
    pub max_table_pages: usize,
}

impl TableConfig {
    /// A configuration with no aperture override and no page cap.
    pub fn new(top_level: u32, va_bits: u32, pgsize_bitmap: u64) -> Self {
        Self {
            top_level,
            va_bits,
            pgsize_bitmap,
            aperture: None,
            max_table_pages: usize::MAX,
        }
    }

    /// Restrict `map` to `aperture`.
    pub fn with_aperture(mut self, aperture: IovaRange) -> Self {
        self.aperture = Some(aperture);
        self
    }

    /// Restrict the page sizes further.
    pub fn with_pgsize_bitmap(mut self, pgsize_bitmap: u64) -> Self {
        self.pgsize_bitmap &= pgsize_bitmap;
        self
    }

    /// Cap the number of table pages.
    pub fn with_max_table_pages(mut self, pages: usize) -> Self {
        self.max_table_pages = pages;
        self
    }
}

/// Why a [`TableConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The root level is above the format's highest level.
    TopLevel,
    /// `va_bits` is too small for the root level or needs more than 16 root pages.
    VaBits,
    /// No usable page size remains.
    NoPageSizes,
    /// The aperture reaches past the translated IOVA space.
    Aperture,
    /// The page cap leaves no room for the root.
    NoMemory,
}

/// Why a `map` failed. The engine reports `InvalidArgument` and `OutOfRange`
/// as EINVAL, `Overflow` as EOVERFLOW, `AddressInUse` as EEXIST and
/// `NoMemory` as ENOMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapErrorKind {
    /// Zero length, no permission, or IOVA / PA / length not aligned to the
    /// smallest page size.
    InvalidArgument,
    /// Outside the aperture, or the PA is wider than the format's output.
    OutOfRange,
    /// `iova + len − 1` or `pa + len − 1` overflows.
    Overflow,
    /// Part of the range is already mapped.
    AddressInUse,
    /// The table-page cap was reached.
    NoMemory,
}

/// A failed `map`: `mapped` bytes from the start of the range were mapped
/// before the failure and remain mapped; the caller decides whether to undo them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapError {
    /// Bytes mapped from the start of the range.
    pub mapped: u64,
    /// What went wrong.
    pub kind: MapErrorKind,
}

/// Why an `unmap` or dirty read was refused; nothing was changed. The
/// engine reports every kind as EINVAL from a dirty read; its unmaps cover
/// whole mapped areas and are not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapError {
    /// Zero length, or start / length not aligned to the smallest page size.
    InvalidArgument,
    /// `iova + len − 1` overflows.
    Overflow,
    /// The range starts inside a leaf, not at its first byte.
    InsideLeaf,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::TopLevel => "root level above the format's highest level",
            Self::VaBits => "IOVA width does not fit the root level",
            Self::NoPageSizes => "no usable page size",
            Self::Aperture => "aperture outside the translated IOVA space",
            Self::NoMemory => "page cap leaves no room for the root",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ConfigError {}

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "map failed ({:?}) after {:#x} bytes",
            self.kind, self.mapped
        )
    }
}

impl std::error::Error for MapError {}

impl std::fmt::Display for UnmapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::InvalidArgument => "zero or unaligned range",
            Self::Overflow => "range end overflows",
            Self::InsideLeaf => "range starts inside a leaf",
        };
        f.write_str(what)
    }
}

impl std::error::Error for UnmapError {}

/// A page table of format `F`: the hardware-visible half of a paging domain.
///
/// Ownership and invariants:
/// - the table owns its pages in `arena`; the root is pages
///   `root .. root + root_pages` (consecutive, allocated first, never freed);
/// - every other table page is reachable from exactly one table entry, and
///   a page is freed as soon as it holds no entries, so after unmapping
///   everything only the root remains;
/// - leaves only use sizes in `pgsize_bitmap`; a leaf of `2^s` bytes sits at
///   level `(s − granule_lg2) / 9` (the format contract puts each size at
///   exactly one level), in `2^(s − level_shift)` aligned slots holding the
///   same value;
/// - `aperture ⊆ [0, va_last]`.
///
/// Translation caching is not here: callers hold an [`crate::Iotlb`] and
/// flush it with the [`crate::IotlbGather`]s that `unmap` and dirty reads return.
#[derive(Debug)]
pub struct PageTable<F: Format> {
    arena: TableArena,
    root: TableId,
    root_pages: u32,
    /// log2 of the span of one root page (may exceed 63).
    root_span_lg2: u32,
    top_level: u32,
    va_last: u64,
    pgsize_bitmap: u64,
    min_page_lg2: u32,
    aperture: IovaRange,
    dirty_tracking: bool,
    format: PhantomData<fn() -> F>,
}

/// Progress of an unmap or leaf walk: `iova` is the next byte to visit;
/// `done` is set once the walk has passed `last`.
struct RangeCursor {
    iova: u64,
    last: u64,
    done: bool,
}

impl RangeCursor {
    /// Move to `next` (the byte after what was just visited), finishing when
    /// it is past `last` or the address space ended.
    #[inline(always)]
    fn advance_to(&mut self, next: Option<u64>) {
        match next {
            Some(next) if next <= self.last => self.iova = next,
            _ => self.done = true,
        }
    }
}

#[inline(always)]
fn slot_index(iova: u64, shift: u32) -> usize {
    ((iova >> shift) as usize) & (TABLE_SLOTS - 1)
}

/// Write `value` into every slot of one leaf. Leaves are mostly one or two
/// slots; spelling those out keeps a library call off the per-PTE path.
#[inline(always)]
fn fill_slots(entries: &mut [u64], value: u64) {
    match entries {
        [only] => *only = value,
        [first, second] => {
            *first = value;
            *second = value;
        }
        _ => entries.fill(value),
    }
}

/// First byte of the next item at `shift`, `None` past the address space.
#[inline(always)]
fn item_end(iova: u64, shift: u32) -> Option<u64> {
    (iova | low_mask(shift)).checked_add(1)
}

impl<F: Format> PageTable<F> {
    /// An empty table (only the root pages) for `config`.
    pub fn new(config: TableConfig) -> Result<Self, ConfigError> {
        let top_level = config.top_level;
        if top_level > F::MAX_TOP_LEVEL {
            return Err(ConfigError::TopLevel);
        }
        let root_shift = level_shift(F::GRANULE_LG2, top_level);
        let root_span_lg2 = root_shift + TABLE_INDEX_BITS;
        if config.va_bits <= root_shift || config.va_bits > 64 {
            return Err(ConfigError::VaBits);
        }
        let root_pages = if config.va_bits > root_span_lg2 {
            let extra = config.va_bits - root_span_lg2;
            if extra > MAX_ROOT_PAGES.trailing_zeros() {
                return Err(ConfigError::VaBits);
            }
            1u32 << extra
        } else {
            1
        };
        let va_last = low_mask(config.va_bits);

        let mut format_sizes = 0u64;
        for level in 0..=top_level {
            format_sizes |= F::leaf_sizes(level);
        }
        let pgsize_bitmap = format_sizes
            & config.pgsize_bitmap
            & low_mask(F::MAX_OA_BITS)
            & low_mask(config.va_bits);
        if pgsize_bitmap == 0 {
            return Err(ConfigError::NoPageSizes);
        }

        let aperture = config.aperture.unwrap_or(IovaRange {
            start: 0,
            last: va_last,
        });
        if aperture.start > aperture.last || aperture.last > va_last {
            return Err(ConfigError::Aperture);
        }

        let mut arena = TableArena::new(config.max_table_pages);
        let root = arena.alloc().ok_or(ConfigError::NoMemory)?;
        for expected in 1..root_pages {
            let page = arena.alloc().ok_or(ConfigError::NoMemory)?;
            debug_assert_eq!(page, root + expected);
        }

        Ok(Self {
            arena,
            root,
            root_pages,
            root_span_lg2,
            top_level,
            va_last,
            pgsize_bitmap,
            min_page_lg2: pgsize_bitmap.trailing_zeros(),
            aperture,
            dirty_tracking: false,
            format: PhantomData,
        })
    }

    /// Page sizes this table maps with (bit `n` ⇔ `2^n` bytes).
    pub fn pgsize_bitmap(&self) -> u64 {
        self.pgsize_bitmap
    }

    /// The smallest page size: the alignment every map / unmap needs.
    pub fn min_page_size(&self) -> u64 {
        1 << self.min_page_lg2
    }

    /// IOVAs `map` accepts.
    pub fn aperture(&self) -> IovaRange {
        self.aperture
    }

    /// Level of the root table.
    pub fn top_level(&self) -> u32 {
        self.top_level
    }

    /// The format's name.
    pub fn format_name(&self) -> &'static str {
        F::NAME
    }

    /// Table pages in use, the root included.
    pub fn table_pages(&self) -> usize {
        self.arena.live()
    }

    /// Memory held by table pages, in bytes.
    pub fn table_memory_bytes(&self) -> u64 {
        self.arena.live() as u64 * TABLE_BYTES
    }

    /// Whether DMA writes set dirty bits.
    pub fn dirty_tracking(&self) -> bool {
        self.dirty_tracking
    }

    /// Start or stop hardware dirty marking by DMA writes. Bits already set
    /// stay set; callers usually clear them when enabling.
    pub fn set_dirty_tracking(&mut self, enabled: bool) {
        self.dirty_tracking = enabled;
    }

    #[inline(always)]
    fn root_for(&self, iova: u64) -> TableId {
        if self.root_pages == 1 {
            self.root
        } else {
            self.root + (iova >> self.root_span_lg2) as TableId
        }
    }

    /// `[iova, iova + len − 1]` when non-empty, aligned to the smallest page
    /// and not overflowing.
    fn checked_range(&self, iova: u64, len: u64) -> Result<IovaRange, UnmapError> {
        if len == 0 || (iova | len) & low_mask(self.min_page_lg2) != 0 {
            return Err(UnmapError::InvalidArgument);
        }
        IovaRange::from_len(iova, len).ok_or(UnmapError::Overflow)
    }

    /// The slot holding the leaf that translates `iova`: (table, slot, level, leaf).
    #[inline(always)]
    fn walk(&self, iova: u64) -> Option<(TableId, usize, u32, Leaf)> {
        if iova > self.va_last {
            return None;
        }
        let mut table = self.root_for(iova);
        let mut level = self.top_level;
        loop {
            let slot = slot_index(iova, level_shift(F::GRANULE_LG2, level));
            match F::decode(self.arena.get(table, slot), level) {
                Pte::Empty => return None,
                Pte::Leaf(leaf) => return Some((table, slot, level, leaf)),
                Pte::Table { pa } => {
                    if level == 0 {
                        return None;
                    }
                    table = TableArena::id_at(pa);
                    level -= 1;
                }
            }
        }
    }

    /// The leaf translating `iova` and the IOVA range it covers.
    #[inline]
    pub fn lookup(&self, iova: u64) -> Option<(IovaRange, Leaf)> {
        let (_, _, _, leaf) = self.walk(iova)?;
        let extent = IovaRange {
            start: iova & !low_mask(leaf.size_lg2),
            last: iova | low_mask(leaf.size_lg2),
        };
        Some((extent, leaf))
    }

    /// The PA `iova` translates to and the leaf's permissions.
    #[inline]
    pub fn iova_to_phys(&self, iova: u64) -> Option<(u64, Prot)> {
        let (_, _, _, leaf) = self.walk(iova)?;
        Some((leaf.pa | (iova & low_mask(leaf.size_lg2)), leaf.prot))
    }

    /// Set the dirty mark in the one slot translating `iova`, as hardware
    /// does on a write; `false` when nothing is mapped there.
    pub fn set_dirty(&mut self, iova: u64) -> bool {
        match self.walk(iova) {
            Some((table, slot, _, _)) => {
                let pte = self.arena.get(table, slot);
                self.arena.set(table, slot, F::set_dirty(pte));
                true
            }
            None => false,
        }
    }

    /// The raw entries a walk for `iova` reads, top level first, with their
    /// levels (0 is the last level), ending at the leaf; empty when nothing
    /// translates `iova`. What a driver's debug view prints (Linux's VT-d
    /// `domain_translation_struct`).
    pub fn walk_entries(&self, iova: u64) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        if iova > self.va_last {
            return out;
        }
        let mut table = self.root_for(iova);
        let mut level = self.top_level;
        loop {
            let slot = slot_index(iova, level_shift(F::GRANULE_LG2, level));
            let raw = self.arena.get(table, slot);
            match F::decode(raw, level) {
                Pte::Empty => return Vec::new(),
                Pte::Leaf(_) => {
                    out.push((level, raw));
                    return out;
                }
                Pte::Table { pa } => {
                    if level == 0 {
                        return Vec::new();
                    }
                    out.push((level, raw));
                    table = TableArena::id_at(pa);
                    level -= 1;
                }
            }
        }
    }

    /// Every leaf, in IOVA order, with the range it covers. For checks and
    /// inspection; it allocates.
    pub fn leaves(&self) -> Vec<(IovaRange, Leaf)> {
        let mut out = Vec::new();
        for page in 0..self.root_pages {
            let base = if self.root_pages == 1 {
                0
            } else {
                u64::from(page) << self.root_span_lg2
            };
            self.collect_leaves(self.root + page, self.top_level, base, &mut out);
        }
        out
    }

    fn collect_leaves(
        &self,
        table: TableId,
        level: u32,
        base: u64,
        out: &mut Vec<(IovaRange, Leaf)>,
    ) {
        let shift = level_shift(F::GRANULE_LG2, level);
        let mut slot = 0;
        while slot < TABLE_SLOTS {
            let iova = base | ((slot as u64) << shift);
            let mut step = 1;
            match F::decode(self.arena.get(table, slot), level) {
                Pte::Empty => {}
                Pte::Table { pa } => {
                    self.collect_leaves(TableArena::id_at(pa), level - 1, iova, out)
                }
                Pte::Leaf(leaf) => {
                    step = 1 << (leaf.size_lg2 - shift);
                    out.push((
                        IovaRange {
                            start: iova,
                            last: iova | low_mask(leaf.size_lg2),
                        },
                        leaf,
                    ));
                }
            }
            slot += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirty::DirtyBitmap;
    use crate::formats::{AmdV1, ArmS2, Mock, MockKind};

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn amd() -> PageTable<AmdV1> {
        PageTable::new(AmdV1::config(3)).unwrap()
    }

    #[test]
    fn map_picks_largest_leaves() {
        let mut table = amd();
        // IOVA and PA 2 MiB aligned, 4 MiB + 12 KiB long: one 4 MiB leaf,
        // then 8 KiB and 4 KiB.
        table
            .map(GIB, 3 * GIB, 4 * MIB + 0x3000, Prot::READ)
            .unwrap();
        let sizes: Vec<u32> = table
            .leaves()
            .iter()
            .map(|(_, leaf)| leaf.size_lg2)
            .collect();
        assert_eq!(sizes, vec![22, 13, 12]);
        assert_eq!(
            table.iova_to_phys(GIB + 0x12345),
            Some((3 * GIB + 0x12345, Prot::READ))
        );
        assert_eq!(
            table.iova_to_phys(GIB + 4 * MIB + 0x2fff),
            Some((3 * GIB + 4 * MIB + 0x2fff, Prot::READ))
        );
        assert_eq!(table.iova_to_phys(GIB + 4 * MIB + 0x3000), None);
    }

    #[test]
    fn unmap_frees_tables_and_reports_bytes() {
        let mut table = amd();
        let start_pages = table.table_pages();
        table.map(0x1000, 0x1000, 0x5000, Prot::READ_WRITE).unwrap();
        assert!(table.table_pages() > start_pages);
        let (bytes, gather) = table.unmap(0, 0x10_0000).unwrap();
        assert_eq!(bytes, 0x5000);
        assert_eq!(gather.into_range(), IovaRange::new(0x1000, 0x5fff));
        assert_eq!(table.table_pages(), start_pages);
    }

    #[test]
    fn unmap_inside_leaf_is_refused_and_end_inside_removes_whole_leaf() {
        let mut table = amd();
        table.map(2 * MIB, 2 * MIB, 2 * MIB, Prot::READ).unwrap();
        assert_eq!(
            table.unmap(2 * MIB + 0x1000, 0x1000).unwrap_err(),
            UnmapError::InsideLeaf
        );
        let (bytes, gather) = table.unmap(2 * MIB, 0x1000).unwrap();
        assert_eq!(bytes, 2 * MIB);
        assert!(gather.into_range().is_some());
        assert!(table.leaves().is_empty());
    }

    #[test]
    fn map_fails_partially_with_progress() {
        let mut table = amd();
        table.map(0x4000, 0x4000, 0x1000, Prot::READ).unwrap();
        let err = table.map(0x1000, 0x1000, 0x8000, Prot::READ).unwrap_err();
        assert_eq!(
            err,
            MapError {
                mapped: 0x3000,
                kind: MapErrorKind::AddressInUse
            }
        );
    }

    #[test]
    fn map_rejects_bad_arguments() {
        let mut table = amd();
        let kind = |r: Result<(), MapError>| r.unwrap_err().kind;
        assert_eq!(
            kind(table.map(0, 0, 0, Prot::READ)),
            MapErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(table.map(0x800, 0, 0x1000, Prot::READ)),
            MapErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(table.map(0, 0, 0x1000, Prot::NONE)),
            MapErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(table.map(u64::MAX - 0xfff, 0, 0x2000, Prot::READ)),
            MapErrorKind::Overflow
        );
        assert_eq!(
            kind(table.map(1 << 48, 0, 0x1000, Prot::READ)),
            MapErrorKind::OutOfRange
        );
        assert_eq!(
            kind(table.map(0, 1 << 52, 0x1000, Prot::READ)),
            MapErrorKind::OutOfRange
        );
    }

    #[test]
    fn page_cap_stops_map_with_no_memory() {
        let mut table = PageTable::<AmdV1>::new(AmdV1::config(3).with_max_table_pages(3)).unwrap();
        let err = table.map(0, 0, 0x1000, Prot::READ).unwrap_err();
        assert_eq!(err.kind, MapErrorKind::NoMemory);
        // The partial path holds no leaves, so a larger leaf may replace it.
        table.map(0, 0, GIB, Prot::READ).unwrap();
        assert_eq!(table.leaves().len(), 1);
        assert_eq!(table.table_pages(), 2);
    }

    #[test]
    fn top_of_64_bit_space_maps_and_unmaps() {
        let mut table = PageTable::<AmdV1>::new(AmdV1::config(5)).unwrap();
        let iova = u64::MAX - 0xfff;
        table.map(iova, 0x7000, 0x1000, Prot::READ).unwrap();
        assert_eq!(table.iova_to_phys(u64::MAX), Some((0x7fff, Prot::READ)));
        let mut bitmap = DirtyBitmap::new(iova, 0x1000, 1).unwrap();
        table.set_dirty(iova);
        let gather = table
            .read_and_clear_dirty(iova, 0x1000, &mut bitmap, true)
            .unwrap();
        assert!(gather.into_range().is_some());
        assert_eq!(bitmap.count(), 1);
        let (bytes, gather) = table.unmap(iova, 0x1000).unwrap();
        let _ = gather.into_range();
        assert_eq!(bytes, 0x1000);
        assert_eq!(table.table_pages(), 1);
    }

    #[test]
    fn dirty_read_reports_whole_multi_slot_leaf() {
        let mut table = PageTable::<Mock>::new(Mock::config(MockKind::Default)).unwrap();
        let iova = 1 << 24;
        table.map(iova, 0, 0x1000, Prot::READ_WRITE).unwrap();
        assert_eq!(table.leaves().len(), 1);
        // Mark only the second 2 KiB slot: the 4 KiB leaf is dirty as a whole.
        assert!(table.set_dirty(iova + 0x800));
        let mut bitmap = DirtyBitmap::new(iova, 0x800, 4).unwrap();
        let gather = table
            .read_and_clear_dirty(iova, 0x800, &mut bitmap, true)
            .unwrap();
        assert_eq!(gather.into_range(), IovaRange::new(iova, iova + 0xfff));
        assert_eq!(bitmap.iter_set().collect::<Vec<_>>(), vec![0]);
        bitmap.clear();
        let gather = table
            .read_and_clear_dirty(iova, 0x1000, &mut bitmap, true)
            .unwrap();
        assert!(gather.is_empty());
        assert_eq!(bitmap.count(), 0);
    }

    #[test]
    fn arm_concatenated_root_covers_the_whole_input() {
        let mut table = PageTable::<ArmS2>::new(ArmS2::config(40)).unwrap();
        assert_eq!(table.table_pages(), 2);
        let high = (1u64 << 40) - 0x1000;
        table.map(high, 0x1000, 0x1000, Prot::READ).unwrap();
        table.map(0, 0x2000, 0x1000, Prot::READ).unwrap();
        assert_eq!(table.iova_to_phys(high), Some((0x1000, Prot::READ)));
        assert_eq!(table.leaves().len(), 2);
        let (bytes, gather) = table.unmap(0, 1 << 40).unwrap();
        let _ = gather.into_range();
        assert_eq!(bytes, 0x2000);
        assert_eq!(table.table_pages(), 2);
    }
}
