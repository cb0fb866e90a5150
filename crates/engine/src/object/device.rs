//! What a bound device and a HWPT are (Linux `struct iommufd_device`,
//! `iommufd_hwpt_paging`, `iommufd_hwpt_nested`): state only.

use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::{DeviceId, DomainId};
use softiommu_pt::AnyPageTable;
use std::sync::{Arc, Mutex};

/// A device bound to this context (Linux `struct iommufd_device`).
#[derive(Debug)]
pub struct Device {
    /// The device in the IOMMU core.
    pub dev: DeviceId,
    /// The HWPT it is attached to, and that HWPT's IOAS.
    pub attached: Option<(u32, u32)>,
    /// Its vDEVICE, if a vIOMMU knows it.
    pub vdevice: Option<u32>,
    /// Where its vIOMMU events go: the vIOMMU and virtual id it had when it
    /// attached to a nested HWPT made through that vIOMMU (the mock driver
    /// keeps them until the next attach, even if the vDEVICE goes).
    pub vevent_target: Option<(u32, u64)>,
    /// HWPTs attached to its PASIDs (each holds a user of the HWPT).
    pub pasids: std::collections::BTreeMap<u32, u32>,
    /// What its IOMMU driver keeps with it (the mock's cache and PASID state).
    pub driver_data: super::DriverData,
}

/// A paging HWPT: a domain filled from one IOAS.
#[derive(Debug)]
pub struct HwptPaging {
    /// Made with `IOMMU_HWPT_ALLOC_PASID`: PASIDs may attach to it, and a
    /// device with PASIDs attached may attach its RID only to such HWPTs.
    pub pasid_compat: bool,
    /// Object id of the IOAS that fills it.
    pub ioas: u32,
    /// Its domain in the IOMMU core.
    pub domain: DomainId,
    /// The domain's page table, shared with the IOAS's [`DomainRef`].
    ///
    /// [`DomainRef`]: crate::ioas::DomainRef
    pub table: Arc<Mutex<AnyPageTable>>,
    /// Made by an attach to an IOAS; destroyed with its last device.
    pub auto: bool,
    /// What the domain was made for: nest parent, dirty tracking
    /// (`IOMMU_HWPT_ALLOC_NEST_PARENT`, `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`).
    pub flags: PagingFlags,
    /// The fault queue its IO page faults go to (holds a user of it).
    pub fault: Option<u32>,
}

/// A nested HWPT: a user-owned stage 1 over a nest-parent paging HWPT.
#[derive(Debug)]
pub struct HwptNested {
    /// As [`HwptPaging::pasid_compat`].
    pub pasid_compat: bool,
    /// Object id of the nest-parent paging HWPT (its stage 2).
    pub parent: u32,
    /// Its nested domain in the IOMMU core.
    pub domain: DomainId,
    /// Type of `data` (`IOMMU_HWPT_DATA_*`).
    pub data_type: u32,
    /// The driver-specific payload it was made with.
    pub data: Vec<u8>,
    /// What its driver keeps with it (the mock's IOTLB).
    pub driver_data: super::DriverData,
    /// The fault queue its IO page faults go to (holds a user of it).
    pub fault: Option<u32>,
    /// The vIOMMU it was made through (holds a user of it, not of `parent`).
    pub viommu: Option<u32>,
    /// Stage-1 translations device DMA has walked (a driver format's table in
    /// guest memory), kept until the user invalidates them.
    pub stage1_tlb: softiommu_pt::nested::Stage1Tlb,
}
