//! IOMMU page tables in real hardware formats, an IOTLB model and
//! permission-checked DMA translation.
//!
//! # Vocabulary
//!
//! - **IOVA**: an address a device puts on the bus; the input of translation.
//! - **PA**: the physical address a translation produces; what [`DmaMemory`]
//!   reads and writes.
//! - **Range**: `[start, last]` with an *inclusive* `last`
//!   ([`IovaRange`]), because an IOVA can be `u64::MAX` and `last + 1` would
//!   overflow. Lengths are `u64` and every sum is checked.
//! - **Granule**: the size of one level-0 item (4 KiB, or 2 KiB for the mock).
//! - **Level**: 0 holds the smallest items; the **top level** is the root.
//!   Every table is 512 × `u64` (4 KiB), so an item at level `L` covers
//!   `2^(granule_lg2 + 9·L)` bytes.
//! - **Slot / PTE**: one `u64` of a table. It is empty, a **table entry**
//!   (points at the child table one level down) or a **leaf** (maps a page).
//!   A leaf of `2^k` items fills `2^k` consecutive, `2^k`-aligned slots.
//! - **Format**: the bit layout of PTEs and which leaf sizes each level allows
//!   ([`Format`]; implementations in [`formats`]).
//! - **Page-size bitmap**: bit `n` set ⇔ leaves of `2^n` bytes may be used.
//! - **Aperture**: the IOVA range the domain accepts for mapping.
//! - **IOTLB**: a cache of leaf translations ([`Iotlb`]). It is only made
//!   coherent by explicit invalidation, carried by an [`IotlbGather`].
//! - **Dirty**: the bit hardware sets in a leaf when a device writes through
//!   it while dirty tracking is enabled.
//! - **Fault**: a failed DMA translation ([`Fault`]), recorded in a bounded
//!   [`FaultLog`].
//!
//! # Structure
//!
//! [`PageTable<F>`] is one algorithm compiled per [`Format`]; the formats only
//! supply encodings. [`AnyPageTable`] holds "a table of some format" for code
//! that chooses the format at run time. The IOTLB and the fault log belong to
//! the IOMMU that walks the table, so they are separate values; [`Dma`]
//! borrows all of them for a device access.
//!
//! # Example
//!
//! ```
//! use softiommu_pt::formats::AmdV1;
//! use softiommu_pt::{Dma, FaultLog, FaultReason, Iotlb, PageTable, Prot, VecMemory};
//!
//! let mut table = PageTable::<AmdV1>::new(AmdV1::config(3)).unwrap();
//! let mut iotlb = Iotlb::for_format::<AmdV1>();
//! let mut faults = FaultLog::new(64);
//! let mut memory = VecMemory::new(0, 1 << 20);
//!
//! table.map(0x10_0000, 0x2000, 0x2000, Prot::READ_WRITE).unwrap();
//! let mut dma = Dma { table: &mut table, iotlb: &mut iotlb, faults: &mut faults, memory: &mut memory };
//! dma.write(0x10_0ffe, &[1, 2, 3, 4]).unwrap(); // crosses a page boundary
//! assert_eq!(&memory.bytes[0x2ffe..0x3002], &[1, 2, 3, 4]);
//!
//! // Unmapping owes the IOTLB an invalidation; until it is flushed the
//! // device can still use the old translation, as on hardware.
//! let (unmapped, gather) = table.unmap(0x10_0000, 0x2000).unwrap();
//! assert_eq!(unmapped, 0x2000);
//! iotlb.flush(gather);
//! let mut dma = Dma { table: &mut table, iotlb: &mut iotlb, faults: &mut faults, memory: &mut memory };
//! let fault = dma.read(0x10_0000, &mut [0; 4]).unwrap_err();
//! assert_eq!(fault.reason, FaultReason::NotPresent);
//! assert_eq!(faults.len(), 1);
//! ```

#![warn(missing_docs)]

pub mod any;
mod arena;
pub mod dirty;
pub mod dma;
pub mod fault;
pub mod format;
pub mod formats;
pub mod gather;
pub mod iotlb;
pub mod nested;
pub mod prot;
pub mod range;
pub mod table;

pub use any::{AnyPageTable, FormatKind};
pub use dirty::DirtyBitmap;
pub use dma::{copy_through, in_pieces, Dma, DmaMemory, VecMemory};
pub use fault::{Fault, FaultLog, FaultReason};
pub use format::{Format, Leaf, Pte};
pub use gather::IotlbGather;
pub use iotlb::Iotlb;
pub use prot::{Access, Prot};
pub use range::IovaRange;
pub use table::{
    ConfigError, MapError, MapErrorKind, PageTable, TableConfig, UnmapError, TABLE_BYTES,
};
