//! The VFIO type1 container ioctls that Linux serves on an iommufd file
//! (`drivers/iommu/iommufd/vfio_compat.c`), with their structs from
//! `include/uapi/linux/vfio.h`.

use crate::iommufd::abi_struct;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `VFIO_API_VERSION`, returned by `VFIO_GET_API_VERSION`.
pub const VFIO_API_VERSION: i64 = 0;

/// Request numbers: `_IO(';', VFIO_BASE + n)` with `VFIO_BASE = 100`.
pub const VFIO_GET_API_VERSION: u32 = 0x3b64;
pub const VFIO_CHECK_EXTENSION: u32 = 0x3b65;
pub const VFIO_SET_IOMMU: u32 = 0x3b66;
pub const VFIO_IOMMU_GET_INFO: u32 = 0x3b70;
pub const VFIO_IOMMU_MAP_DMA: u32 = 0x3b71;
pub const VFIO_IOMMU_UNMAP_DMA: u32 = 0x3b72;
pub const VFIO_IOMMU_DIRTY_PAGES: u32 = 0x3b75;

/// Extensions / IOMMU types.
pub const VFIO_TYPE1_IOMMU: u64 = 1;
pub const VFIO_SPAPR_TCE_IOMMU: u64 = 2;
pub const VFIO_TYPE1V2_IOMMU: u64 = 3;
pub const VFIO_DMA_CC_IOMMU: u64 = 4;
pub const VFIO_EEH: u64 = 5;
pub const VFIO_TYPE1_NESTING_IOMMU: u64 = 6;
pub const VFIO_SPAPR_TCE_V2_IOMMU: u64 = 7;
pub const VFIO_NOIOMMU_IOMMU: u64 = 8;
pub const VFIO_UNMAP_ALL: u64 = 9;
pub const VFIO_UPDATE_VADDR: u64 = 10;

pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
pub const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: u16 = 3;

pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_DMA_MAP_FLAG_VADDR: u32 = 1 << 2;
pub const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
pub const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
pub const VFIO_DMA_UNMAP_FLAG_VADDR: u32 = 1 << 2;

abi_struct! {
    /// `VFIO_IOMMU_GET_INFO` (capabilities follow at `cap_offset`).
    pub struct VfioIommuType1Info {
        pub argsz: u32, pub flags: u32, pub iova_pgsizes: u64, pub cap_offset: u32, pub pad: u32,
    }
}
abi_struct! {
    /// A capability chain header.
    pub struct VfioInfoCapHeader { pub id: u16, pub version: u16, pub next: u32 }
}
abi_struct! {
    /// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE` header; `nr_iovas` ranges follow.
    pub struct VfioIommuType1InfoCapIovaRange {
        pub header: VfioInfoCapHeader, pub nr_iovas: u32, pub reserved: u32,
    }
}
abi_struct! {
    /// One range of the IOVA-range capability: `[start, end]` inclusive.
    pub struct VfioIovaRange { pub start: u64, pub end: u64 }
}
abi_struct! {
    /// `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`.
    pub struct VfioIommuType1InfoDmaAvail { pub header: VfioInfoCapHeader, pub avail: u32 }
}
abi_struct! {
    /// `VFIO_IOMMU_MAP_DMA`.
    pub struct VfioIommuType1DmaMap { pub argsz: u32, pub flags: u32, pub vaddr: u64, pub iova: u64, pub size: u64 }
}
abi_struct! {
    /// `VFIO_IOMMU_UNMAP_DMA` (without the trailing flexible array).
    pub struct VfioIommuType1DmaUnmap { pub argsz: u32, pub flags: u32, pub iova: u64, pub size: u64 }
}

// The VFIO device file (`/dev/vfio/devices/vfioN`, or a group's device fd).

/// `VFIO_DEVICE_GET_INFO`.
pub const VFIO_DEVICE_GET_INFO: u32 = 0x3b6b;
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const VFIO_DEVICE_GET_REGION_INFO: u32 = 0x3b6c;
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const VFIO_DEVICE_GET_IRQ_INFO: u32 = 0x3b6d;
/// `VFIO_DEVICE_SET_IRQS`.
pub const VFIO_DEVICE_SET_IRQS: u32 = 0x3b6e;
/// `VFIO_DEVICE_RESET`.
pub const VFIO_DEVICE_RESET: u32 = 0x3b6f;
/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`.
pub const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: u32 = 0x3b70;
/// `VFIO_DEVICE_PCI_HOT_RESET`.
pub const VFIO_DEVICE_PCI_HOT_RESET: u32 = 0x3b71;
/// `VFIO_DEVICE_FEATURE`.
pub const VFIO_DEVICE_FEATURE: u32 = 0x3b75;
/// `VFIO_DEVICE_BIND_IOMMUFD`.
pub const VFIO_DEVICE_BIND_IOMMUFD: u32 = 0x3b76;
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u32 = 0x3b77;
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u32 = 0x3b78;

// `struct vfio_device_feature` flags and feature indexes.
pub const VFIO_DEVICE_FEATURE_MASK: u32 = 0xffff;
pub const VFIO_DEVICE_FEATURE_GET: u32 = 1 << 16;
pub const VFIO_DEVICE_FEATURE_SET: u32 = 1 << 17;
pub const VFIO_DEVICE_FEATURE_PROBE: u32 = 1 << 18;
pub const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN: u32 = 0;
pub const VFIO_DEVICE_FEATURE_MIGRATION: u32 = 1;
pub const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: u32 = 2;
pub const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY: u32 = 3;
pub const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: u32 = 4;
pub const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT: u32 = 5;
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_START: u32 = 6;
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: u32 = 7;
pub const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: u32 = 8;
pub const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: u32 = 9;
pub const VFIO_DEVICE_FEATURE_BUS_MASTER: u32 = 10;
pub const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;
pub const VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFO_V2: u32 = 12;

pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
pub const VFIO_DEVICE_FLAGS_CAPS: u32 = 1 << 7;
pub const VFIO_DEVICE_BIND_FLAG_TOKEN: u32 = 1 << 0;
pub const VFIO_DEVICE_ATTACH_PASID: u32 = 1 << 0;
pub const VFIO_DEVICE_DETACH_PASID: u32 = 1 << 0;

pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;

pub const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
pub const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
pub const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
pub const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
pub const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 = 0x7;
pub const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 = 0x38;

/// vfio-pci's region indexes (`VFIO_PCI_*_REGION_INDEX`): BARs 0–5, then these.
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
/// The number of fixed PCI regions (`VFIO_PCI_NUM_REGIONS`).
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;
/// vfio-pci's interrupt indexes (`VFIO_PCI_*_IRQ_INDEX`).
pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
pub const VFIO_PCI_NUM_IRQS: u32 = 5;
/// vfio-pci places region `i` at file offset `i << 40`
/// (`VFIO_PCI_OFFSET_SHIFT`).
pub const VFIO_PCI_OFFSET_SHIFT: u32 = 40;

abi_struct! {
    /// `VFIO_DEVICE_GET_INFO`.
    pub struct VfioDeviceInfo {
        pub argsz: u32, pub flags: u32, pub num_regions: u32, pub num_irqs: u32, pub cap_offset: u32, pub pad: u32,
    }
}
abi_struct! {
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    pub struct VfioRegionInfo {
        pub argsz: u32, pub flags: u32, pub index: u32, pub cap_offset: u32, pub size: u64, pub offset: u64,
    }
}
abi_struct! {
    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub struct VfioIrqInfo { pub argsz: u32, pub flags: u32, pub index: u32, pub count: u32 }
}
abi_struct! {
    /// `VFIO_DEVICE_SET_IRQS` (without the trailing data array).
    pub struct VfioIrqSet { pub argsz: u32, pub flags: u32, pub index: u32, pub start: u32, pub count: u32 }
}
abi_struct! {
    /// `VFIO_DEVICE_BIND_IOMMUFD`.
    pub struct VfioDeviceBindIommufd {
        pub argsz: u32, pub flags: u32, pub iommufd: i32, pub out_devid: u32, pub token_uuid_ptr: u64,
    }
}
abi_struct! {
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    pub struct VfioDeviceAttachIommufdPt { pub argsz: u32, pub flags: u32, pub pt_id: u32, pub pasid: u32 }
}
abi_struct! {
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    pub struct VfioDeviceDetachIommufdPt { pub argsz: u32, pub flags: u32, pub pasid: u32 }
}

/// Hot-reset answers name devices by iommufd device id, not group.
pub const VFIO_PCI_HOT_RESET_FLAG_DEV_ID: u32 = 1 << 0;
/// Every affected device is owned by the caller's iommufd context.
pub const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED: u32 = 1 << 1;
/// A device id: owned through its group, not bound in the context.
pub const VFIO_PCI_DEVID_OWNED: u32 = 0;
/// A device id: not owned by the caller (`-1`).
pub const VFIO_PCI_DEVID_NOT_OWNED: u32 = u32::MAX;

abi_struct! {
    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`'s fixed part (its
    /// [`VfioPciDependentDevice`] array follows) and
    /// `VFIO_DEVICE_PCI_HOT_RESET`'s (its `i32` group fds follow).
    pub struct VfioPciHotResetHead { pub argsz: u32, pub flags: u32, pub count: u32 }
}
abi_struct! {
    /// One device a hot reset affects: `id` is its group id, or with
    /// [`VFIO_PCI_HOT_RESET_FLAG_DEV_ID`] its device id.
    pub struct VfioPciDependentDevice { pub id: u32, pub segment: u16, pub bus: u8, pub devfn: u8 }
}

// The VFIO group file (`/dev/vfio/<group>`).

/// `VFIO_GROUP_GET_STATUS`.
pub const VFIO_GROUP_GET_STATUS: u32 = 0x3b67;
/// `VFIO_GROUP_SET_CONTAINER` (argument: a pointer to the container's fd).
pub const VFIO_GROUP_SET_CONTAINER: u32 = 0x3b68;
/// `VFIO_GROUP_UNSET_CONTAINER`.
pub const VFIO_GROUP_UNSET_CONTAINER: u32 = 0x3b69;
/// `VFIO_GROUP_GET_DEVICE_FD` (argument: a pointer to the device's name).
pub const VFIO_GROUP_GET_DEVICE_FD: u32 = 0x3b6a;
pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

abi_struct! {
    /// `VFIO_GROUP_GET_STATUS`.
    pub struct VfioGroupStatus { pub argsz: u32, pub flags: u32 }
}

/// A region capability: the MSI-X table inside the BAR may be mapped.
pub const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: u16 = 3;
