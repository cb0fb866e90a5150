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
