//! vIOMMUs, vDEVICEs and HW queues (Linux `iommufd_viommu`,
//! `iommufd_vdevice`, `iommufd_hw_queue`): state only.

use softiommu_iommu::IommuId;
use std::collections::BTreeMap;

/// A vIOMMU. Invariant: `vdevs` maps each virtual id to the live vDEVICE
/// object that has it, and those are exactly the vDEVICEs naming this one.
#[derive(Debug)]
pub struct Viommu {
    /// The nest-parent paging HWPT (its stage 2).
    pub hwpt: u32,
    /// The physical IOMMU whose devices it may hold.
    pub iommu: IommuId,
    /// Its type (`IOMMU_VIOMMU_TYPE_*`).
    pub viommu_type: u32,
    /// vDEVICEs by virtual id.
    pub vdevs: BTreeMap<u64, u32>,
    /// vEVENTQs by event type (at most one per type).
    pub veventqs: BTreeMap<u32, u32>,
    /// What its driver keeps with it (the mock's region and HW queues).
    pub driver_data: super::DriverData,
}

/// A HW queue: guest memory, at an IOVA of the vIOMMU's stage 2, that the
/// hardware reads by physical address. Its pages stay pinned (so the IOVA
/// cannot be unmapped: `EBUSY`) for the queue's life. The mock driver makes
/// queue `i` depend on queue `i - 1`, which it holds.
#[derive(Debug)]
pub struct HwQueue {
    /// Object id of the vIOMMU it belongs to.
    pub viommu: u32,
    /// Its index among the vIOMMU's queues (below the driver's queue count).
    pub index: u32,
    /// Its type (`IOMMU_HW_QUEUE_TYPE_*`).
    pub hw_queue_type: u32,
    /// First IOVA of the queue's memory, in the vIOMMU's stage 2.
    pub base_iova: u64,
    /// Length of the queue's memory in bytes.
    pub length: u64,
    /// The IOAS its pages are pinned in, and the pin.
    pub ioas: u32,
    /// Pin id in that IOAS's page table.
    pub pin: u64,
    /// The queue it depends on.
    pub prev: Option<u32>,
}

/// A device as a vIOMMU knows it.
#[derive(Debug)]
pub struct Vdevice {
    /// Object id of the vIOMMU that knows the device.
    pub viommu: u32,
    /// The device object.
    pub device: u32,
    /// The device's id as the vIOMMU knows it (Linux `virt_id`, e.g. a
    /// guest stream or device id); unique within the vIOMMU.
    pub virt_id: u64,
}
