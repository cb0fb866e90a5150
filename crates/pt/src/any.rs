//! A page table whose format is chosen at run time.
//!
//! The IOMMU core holds "a domain of format X" without being generic; every
//! method forwards to the monomorphised [`PageTable`] inside, so the engine
//! itself stays specialised per format.

use crate::dirty::DirtyBitmap;
use crate::fault::Fault;
use crate::formats::{AmdV1, ArmS2, Mock, VtdSecondStage, X86_64};
use crate::gather::IotlbGather;
use crate::iotlb::Iotlb;
use crate::prot::Prot;
use crate::range::IovaRange;
use crate::table::{ConfigError, MapError, PageTable, TableConfig, UnmapError};
use crate::{Dma, DmaMemory, FaultLog, Leaf};

/// Names the formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormatKind {
    /// [`AmdV1`].
    AmdV1,
    /// [`VtdSecondStage`].
    VtdSecondStage,
    /// [`X86_64`].
    X86_64,
    /// [`ArmS2`].
    ArmS2,
    /// [`Mock`].
    Mock,
}

/// A [`PageTable`] of any format.
#[derive(Debug)]
pub enum AnyPageTable {
    /// AMD IOMMU v1.
    AmdV1(PageTable<AmdV1>),
    /// Intel VT-d second stage.
    VtdSecondStage(PageTable<VtdSecondStage>),
    /// x86-64.
    X86_64(PageTable<X86_64>),
    /// Arm stage 2.
    ArmS2(PageTable<ArmS2>),
    /// The selftest mock.
    Mock(PageTable<Mock>),
}

macro_rules! each {
    ($self:expr, $table:ident => $body:expr) => {
        match $self {
            AnyPageTable::AmdV1($table) => $body,
            AnyPageTable::VtdSecondStage($table) => $body,
            AnyPageTable::X86_64($table) => $body,
            AnyPageTable::ArmS2($table) => $body,
            AnyPageTable::Mock($table) => $body,
        }
    };
}

impl AnyPageTable {
    /// An empty table of format `kind`.
    pub fn new(kind: FormatKind, config: TableConfig) -> Result<Self, ConfigError> {
        Ok(match kind {
            FormatKind::AmdV1 => Self::AmdV1(PageTable::new(config)?),
            FormatKind::VtdSecondStage => Self::VtdSecondStage(PageTable::new(config)?),
            FormatKind::X86_64 => Self::X86_64(PageTable::new(config)?),
            FormatKind::ArmS2 => Self::ArmS2(PageTable::new(config)?),
            FormatKind::Mock => Self::Mock(PageTable::new(config)?),
        })
    }

    /// Which format this is.
    pub fn kind(&self) -> FormatKind {
        match self {
            Self::AmdV1(_) => FormatKind::AmdV1,
            Self::VtdSecondStage(_) => FormatKind::VtdSecondStage,
            Self::X86_64(_) => FormatKind::X86_64,
            Self::ArmS2(_) => FormatKind::ArmS2,
            Self::Mock(_) => FormatKind::Mock,
        }
    }

    /// An IOTLB suited to this table's granule.
    pub fn new_iotlb(&self) -> Iotlb {
        each!(self, t => iotlb_for(t))
    }

    /// See [`PageTable::map`].
    pub fn map(&mut self, iova: u64, pa: u64, len: u64, prot: Prot) -> Result<(), MapError> {
        each!(self, t => t.map(iova, pa, len, prot))
    }

    /// See [`PageTable::unmap`].
    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<(u64, IotlbGather), UnmapError> {
        each!(self, t => t.unmap(iova, len))
    }

    /// See [`PageTable::iova_to_phys`].
    pub fn iova_to_phys(&self, iova: u64) -> Option<(u64, Prot)> {
        each!(self, t => t.iova_to_phys(iova))
    }

    /// See [`PageTable::lookup`].
    pub fn lookup(&self, iova: u64) -> Option<(IovaRange, Leaf)> {
        each!(self, t => t.lookup(iova))
    }

    /// See [`PageTable::leaves`].
    pub fn leaves(&self) -> Vec<(IovaRange, Leaf)> {
        each!(self, t => t.leaves())
    }

    /// See [`PageTable::walk_entries`].
    pub fn walk_entries(&self, iova: u64) -> Vec<(u32, u64)> {
        each!(self, t => t.walk_entries(iova))
    }

    /// See [`PageTable::min_page_size`].
    pub fn min_page_size(&self) -> u64 {
        each!(self, t => t.min_page_size())
    }

    /// See [`PageTable::top_level`].
    pub fn top_level(&self) -> u32 {
        each!(self, t => t.top_level())
    }

    /// See [`PageTable::read_and_clear_dirty`].
    pub fn read_and_clear_dirty(
        &mut self,
        iova: u64,
        len: u64,
        bitmap: &mut DirtyBitmap,
        clear: bool,
    ) -> Result<IotlbGather, UnmapError> {
        each!(self, t => t.read_and_clear_dirty(iova, len, bitmap, clear))
    }

    /// See [`PageTable::set_dirty`].
    pub fn set_dirty(&mut self, iova: u64) -> bool {
        each!(self, t => t.set_dirty(iova))
    }

    /// See [`PageTable::set_dirty_tracking`].
    pub fn set_dirty_tracking(&mut self, enabled: bool) {
        each!(self, t => t.set_dirty_tracking(enabled))
    }

    /// See [`PageTable::dirty_tracking`].
    pub fn dirty_tracking(&self) -> bool {
        each!(self, t => t.dirty_tracking())
    }

    /// See [`PageTable::pgsize_bitmap`].
    pub fn pgsize_bitmap(&self) -> u64 {
        each!(self, t => t.pgsize_bitmap())
    }

    /// See [`PageTable::aperture`].
    pub fn aperture(&self) -> IovaRange {
        each!(self, t => t.aperture())
    }

    /// See [`PageTable::table_pages`].
    pub fn table_pages(&self) -> usize {
        each!(self, t => t.table_pages())
    }

    /// See [`PageTable::table_memory_bytes`].
    pub fn table_memory_bytes(&self) -> u64 {
        each!(self, t => t.table_memory_bytes())
    }

    /// Translate one access through `iotlb` (see [`Iotlb::translate`]).
    pub fn translate(
        &mut self,
        iotlb: &mut Iotlb,
        iova: u64,
        access: crate::Access,
    ) -> Result<u64, crate::FaultReason> {
        each!(self, t => iotlb.translate(t, iova, access))
    }

    /// A device reads `buf` at `iova` (see [`Dma::read`]).
    pub fn dma_read<M: DmaMemory + ?Sized>(
        &mut self,
        iotlb: &mut Iotlb,
        faults: &mut FaultLog,
        memory: &mut M,
        iova: u64,
        buf: &mut [u8],
    ) -> Result<(), Fault> {
        each!(self, table => Dma { table, iotlb, faults, memory }.read(iova, buf))
    }

    /// A device writes `data` at `iova` (see [`Dma::write`]).
    pub fn dma_write<M: DmaMemory + ?Sized>(
        &mut self,
        iotlb: &mut Iotlb,
        faults: &mut FaultLog,
        memory: &mut M,
        iova: u64,
        data: &[u8],
    ) -> Result<(), Fault> {
        each!(self, table => Dma { table, iotlb, faults, memory }.write(iova, data))
    }

    /// A device copies `len` bytes from `src` to `dst` (see [`Dma::copy`]).
    #[allow(clippy::too_many_arguments)]
    pub fn dma_copy<M: DmaMemory + ?Sized>(
        &mut self,
        iotlb: &mut Iotlb,
        faults: &mut FaultLog,
        memory: &mut M,
        src: u64,
        dst: u64,
        len: usize,
        scratch: &mut [u8],
    ) -> Result<(), Fault> {
        each!(self, table => Dma { table, iotlb, faults, memory }.copy(src, dst, len, scratch))
    }
}

fn iotlb_for<F: crate::Format>(_table: &PageTable<F>) -> Iotlb {
    Iotlb::for_format::<F>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::MockKind;
    use crate::VecMemory;

    #[test]
    fn dispatch_reaches_the_format() {
        let mut table =
            AnyPageTable::new(FormatKind::Mock, Mock::config(MockKind::Default)).unwrap();
        assert_eq!(table.kind(), FormatKind::Mock);
        let mut iotlb = table.new_iotlb();
        assert_eq!(iotlb.page_size(), 2048);
        table.map(1 << 24, 0, 0x800, Prot::READ_WRITE).unwrap();
        let mut faults = FaultLog::default();
        let mut memory = VecMemory::new(0, 0x1000);
        table
            .dma_write(&mut iotlb, &mut faults, &mut memory, 1 << 24, &[7; 16])
            .unwrap();
        assert_eq!(memory.bytes[15], 7);
        assert_eq!(
            table.translate(&mut iotlb, (1 << 24) + 5, crate::Access::Read),
            Ok(5)
        );
        let (bytes, gather) = table.unmap(1 << 24, 0x800).unwrap();
        iotlb.flush(gather);
        assert_eq!(bytes, 0x800);
    }
}
