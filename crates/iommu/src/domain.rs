//! Domains: what a group's DMA translates through.

use crate::driver::DriverInfo;
use crate::topology::IommuId;
use softiommu_pt::formats::{AmdV1, ArmS2, Mock, MockKind, VtdSecondStage, X86_64};
use softiommu_pt::{AnyPageTable, FormatKind, IovaRange};
use std::sync::{Arc, Mutex};

/// A domain's handle; never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u64);

/// Paging-domain options (`IOMMU_HWPT_ALLOC_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingFlags {
    /// May be the stage-2 parent of nested domains.
    pub nest_parent: bool,
    /// Supports dirty tracking.
    pub dirty_tracking: bool,
}

/// The kinds of domain.
#[derive(Debug)]
pub enum DomainKind {
    /// The kernel's own DMA domain of a group.
    Default,
    /// No DMA gets through.
    Blocking,
    /// DMA addresses are physical addresses.
    Identity,
    /// A page table in the driver's format.
    Paging {
        /// Shared with the IO page tables that keep it filled.
        table: Arc<Mutex<AnyPageTable>>,
        /// The options it was allocated with.
        flags: PagingFlags,
    },
    /// A user-owned stage 1 over a nest-parent paging domain.
    Nested {
        /// The nest-parent paging domain (stage 2).
        parent: DomainId,
        /// The driver's `IOMMU_HWPT_DATA_*` type of the stage-1 data.
        data_type: u32,
    },
}

impl DomainKind {
    /// The kind's name, for `inspect`.
    pub fn name(&self) -> &'static str {
        match self {
            DomainKind::Default => "default",
            DomainKind::Blocking => "blocking",
            DomainKind::Identity => "identity",
            DomainKind::Paging { .. } => "paging",
            DomainKind::Nested { .. } => "nested",
        }
    }
}

/// A domain of one IOMMU instance.
#[derive(Debug)]
pub struct Domain {
    /// The IOMMU instance it was allocated on; groups behind any instance of
    /// the same driver may attach it.
    pub iommu: IommuId,
    /// What it translates with.
    pub kind: DomainKind,
}

/// A fresh page table for a paging domain of `driver`.
pub fn new_table(driver: &DriverInfo) -> Option<AnyPageTable> {
    let base = match driver.format {
        FormatKind::AmdV1 => AmdV1::config(3),
        FormatKind::VtdSecondStage => VtdSecondStage::config(48, true, true),
        FormatKind::X86_64 => X86_64::config(false),
        FormatKind::ArmS2 => ArmS2::config(48),
        FormatKind::Mock => Mock::config(MockKind::Default),
    };
    let aperture = IovaRange::new(driver.aperture.0, driver.aperture.1)?;
    let config = base
        .with_pgsize_bitmap(driver.pgsize_bitmap)
        .with_aperture(aperture);
    AnyPageTable::new(driver.format, config).ok()
}
