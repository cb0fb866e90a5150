//! Structs and constants of `include/uapi/linux/iommufd.h` (Linux 7.1).
//!
//! Field names follow the C header so that the kernel documentation applies
//! directly; `__reserved` fields are spelled `reserved`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The ioctl "type" byte of every iommufd command: `';'`.
pub const IOMMUFD_TYPE: u8 = b';';
/// First iommufd command number (`IOMMUFD_CMD_BASE`).
pub const IOMMUFD_CMD_BASE: u8 = 0x80;

/// Command numbers (`_IOC_NR`) of the iommufd ioctls.
pub mod nr {
    pub const DESTROY: u8 = 0x80;
    pub const IOAS_ALLOC: u8 = 0x81;
    pub const IOAS_ALLOW_IOVAS: u8 = 0x82;
    pub const IOAS_COPY: u8 = 0x83;
    pub const IOAS_IOVA_RANGES: u8 = 0x84;
    pub const IOAS_MAP: u8 = 0x85;
    pub const IOAS_UNMAP: u8 = 0x86;
    pub const OPTION: u8 = 0x87;
    pub const VFIO_IOAS: u8 = 0x88;
    pub const HWPT_ALLOC: u8 = 0x89;
    pub const GET_HW_INFO: u8 = 0x8a;
    pub const HWPT_SET_DIRTY_TRACKING: u8 = 0x8b;
    pub const HWPT_GET_DIRTY_BITMAP: u8 = 0x8c;
    pub const HWPT_INVALIDATE: u8 = 0x8d;
    pub const FAULT_QUEUE_ALLOC: u8 = 0x8e;
    pub const IOAS_MAP_FILE: u8 = 0x8f;
    pub const VIOMMU_ALLOC: u8 = 0x90;
    pub const VDEVICE_ALLOC: u8 = 0x91;
    pub const IOAS_CHANGE_PROCESS: u8 = 0x92;
    pub const VEVENTQ_ALLOC: u8 = 0x93;
    pub const HW_QUEUE_ALLOC: u8 = 0x94;
    /// `IOMMU_TEST_CMD` = `IOMMUFD_CMD_BASE + 32`.
    pub const TEST_CMD: u8 = 0xa0;
}

/// `IOMMU_IOAS_MAP` / `MAP_FILE` / `COPY` flags.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `IOMMU_OPTION` option ids and ops.
pub const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
pub const IOMMU_OPTION_HUGE_PAGES: u32 = 1;
pub const IOMMU_OPTION_OP_SET: u16 = 0;
pub const IOMMU_OPTION_OP_GET: u16 = 1;

/// `IOMMU_VFIO_IOAS` ops.
pub const IOMMU_VFIO_IOAS_GET: u16 = 0;
pub const IOMMU_VFIO_IOAS_SET: u16 = 1;
pub const IOMMU_VFIO_IOAS_CLEAR: u16 = 2;

/// `IOMMU_HWPT_ALLOC` flags.
pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 = 1 << 0;
pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 = 1 << 1;
pub const IOMMU_HWPT_FAULT_ID_VALID: u32 = 1 << 2;
pub const IOMMU_HWPT_ALLOC_PASID: u32 = 1 << 3;

/// `enum iommu_hwpt_data_type`.
pub const IOMMU_HWPT_DATA_NONE: u32 = 0;
pub const IOMMU_HWPT_DATA_VTD_S1: u32 = 1;
pub const IOMMU_HWPT_DATA_ARM_SMMUV3: u32 = 2;
pub const IOMMU_HWPT_DATA_AMD_GUEST: u32 = 3;

/// `enum iommu_hw_info_type`.
pub const IOMMU_HW_INFO_TYPE_NONE: u32 = 0;
pub const IOMMU_HW_INFO_TYPE_DEFAULT: u32 = 0;
pub const IOMMU_HW_INFO_TYPE_INTEL_VTD: u32 = 1;
pub const IOMMU_HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
pub const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: u32 = 3;
pub const IOMMU_HW_INFO_TYPE_AMD: u32 = 4;

/// `enum iommufd_hw_capabilities`.
pub const IOMMU_HW_CAP_DIRTY_TRACKING: u64 = 1 << 0;
pub const IOMMU_HW_CAP_PCI_PASID_EXEC: u64 = 1 << 1;
pub const IOMMU_HW_CAP_PCI_PASID_PRIV: u64 = 1 << 2;

/// `enum iommufd_hw_info_flags`.
pub const IOMMU_HW_INFO_FLAG_INPUT_TYPE: u32 = 1 << 0;

/// Dirty tracking flags.
pub const IOMMU_HWPT_DIRTY_TRACKING_ENABLE: u32 = 1;
pub const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: u32 = 1;

/// `enum iommu_hwpt_invalidate_data_type`.
pub const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1: u32 = 0;
pub const IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: u32 = 1;

/// Page fault flags, permissions and response codes.
pub const IOMMU_PGFAULT_FLAGS_PASID_VALID: u32 = 1 << 0;
pub const IOMMU_PGFAULT_FLAGS_LAST_PAGE: u32 = 1 << 1;
pub const IOMMU_PGFAULT_PERM_READ: u32 = 1 << 0;
pub const IOMMU_PGFAULT_PERM_WRITE: u32 = 1 << 1;
pub const IOMMU_PGFAULT_PERM_EXEC: u32 = 1 << 2;
pub const IOMMU_PGFAULT_PERM_PRIV: u32 = 1 << 3;
pub const IOMMUFD_PAGE_RESP_SUCCESS: u32 = 0;
pub const IOMMUFD_PAGE_RESP_INVALID: u32 = 1;

/// `enum iommu_viommu_type` / `enum iommu_veventq_type` / `enum iommu_hw_queue_type`.
pub const IOMMU_VIOMMU_TYPE_DEFAULT: u32 = 0;
pub const IOMMU_VIOMMU_TYPE_ARM_SMMUV3: u32 = 1;
pub const IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV: u32 = 2;
pub const IOMMU_VEVENTQ_TYPE_DEFAULT: u32 = 0;
pub const IOMMU_VEVENTQ_TYPE_ARM_SMMUV3: u32 = 1;
pub const IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: u32 = 2;
pub const IOMMU_HW_QUEUE_TYPE_DEFAULT: u32 = 0;
pub const IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV: u32 = 1;
/// vEVENTQ header flag: events were dropped before this one.
pub const IOMMU_VEVENTQ_FLAG_LOST_EVENTS: u32 = 1 << 0;

macro_rules! abi_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }
    };
}
pub(crate) use abi_struct;

abi_struct! {
    /// `IOMMU_DESTROY`: destroy any object by id.
    pub struct IommuDestroy { pub size: u32, pub id: u32 }
}
abi_struct! {
    /// `IOMMU_IOAS_ALLOC`.
    pub struct IommuIoasAlloc { pub size: u32, pub flags: u32, pub out_ioas_id: u32 }
}
abi_struct! {
    /// One inclusive IOVA range `[start, last]`.
    pub struct IommuIovaRange { pub start: u64, pub last: u64 }
}
abi_struct! {
    /// `IOMMU_IOAS_IOVA_RANGES`.
    pub struct IommuIoasIovaRanges {
        pub size: u32, pub ioas_id: u32, pub num_iovas: u32, pub reserved: u32,
        pub allowed_iovas: u64, pub out_iova_alignment: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_ALLOW_IOVAS`.
    pub struct IommuIoasAllowIovas {
        pub size: u32, pub ioas_id: u32, pub num_iovas: u32, pub reserved: u32, pub allowed_iovas: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_MAP`.
    pub struct IommuIoasMap {
        pub size: u32, pub flags: u32, pub ioas_id: u32, pub reserved: u32,
        pub user_va: u64, pub length: u64, pub iova: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_MAP_FILE`.
    pub struct IommuIoasMapFile {
        pub size: u32, pub flags: u32, pub ioas_id: u32, pub fd: i32,
        pub start: u64, pub length: u64, pub iova: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_COPY`.
    pub struct IommuIoasCopy {
        pub size: u32, pub flags: u32, pub dst_ioas_id: u32, pub src_ioas_id: u32,
        pub length: u64, pub dst_iova: u64, pub src_iova: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_UNMAP`.
    pub struct IommuIoasUnmap { pub size: u32, pub ioas_id: u32, pub iova: u64, pub length: u64 }
}
abi_struct! {
    /// `IOMMU_OPTION`.
    pub struct IommuOption {
        pub size: u32, pub option_id: u32, pub op: u16, pub reserved: u16, pub object_id: u32, pub val64: u64,
    }
}
abi_struct! {
    /// `IOMMU_VFIO_IOAS`.
    pub struct IommuVfioIoas { pub size: u32, pub ioas_id: u32, pub op: u16, pub reserved: u16 }
}
abi_struct! {
    /// `IOMMU_HWPT_ALLOC`.
    pub struct IommuHwptAlloc {
        pub size: u32, pub flags: u32, pub dev_id: u32, pub pt_id: u32, pub out_hwpt_id: u32,
        pub reserved: u32, pub data_type: u32, pub data_len: u32, pub data_uptr: u64,
        pub fault_id: u32, pub reserved2: u32,
    }
}
abi_struct! {
    /// `IOMMU_HWPT_DATA_VTD_S1` payload.
    pub struct IommuHwptVtdS1 { pub flags: u64, pub pgtbl_addr: u64, pub addr_width: u32, pub reserved: u32 }
}
abi_struct! {
    /// `IOMMU_HWPT_DATA_ARM_SMMUV3` payload (a guest STE).
    pub struct IommuHwptArmSmmuv3 { pub ste: [u64; 2] }
}
abi_struct! {
    /// `IOMMU_GET_HW_INFO`. `data_type` is `in_data_type` on input (with
    /// `IOMMU_HW_INFO_FLAG_INPUT_TYPE`) and `out_data_type` on output.
    pub struct IommuHwInfo {
        pub size: u32, pub flags: u32, pub dev_id: u32, pub data_len: u32, pub data_uptr: u64,
        pub data_type: u32, pub out_max_pasid_log2: u8, pub reserved: [u8; 3], pub out_capabilities: u64,
    }
}
abi_struct! {
    /// `IOMMU_HW_INFO_TYPE_INTEL_VTD` data.
    pub struct IommuHwInfoVtd { pub flags: u32, pub reserved: u32, pub cap_reg: u64, pub ecap_reg: u64 }
}
abi_struct! {
    /// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3` data.
    pub struct IommuHwInfoArmSmmuv3 {
        pub flags: u32, pub reserved: u32, pub idr: [u32; 6], pub iidr: u32, pub aidr: u32,
    }
}
abi_struct! {
    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    pub struct IommuHwptSetDirtyTracking { pub size: u32, pub flags: u32, pub hwpt_id: u32, pub reserved: u32 }
}
abi_struct! {
    /// `IOMMU_HWPT_GET_DIRTY_BITMAP`.
    pub struct IommuHwptGetDirtyBitmap {
        pub size: u32, pub hwpt_id: u32, pub flags: u32, pub reserved: u32,
        pub iova: u64, pub length: u64, pub page_size: u64, pub data: u64,
    }
}
abi_struct! {
    /// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1` entry.
    pub struct IommuHwptVtdS1Invalidate { pub addr: u64, pub npages: u64, pub flags: u32, pub reserved: u32 }
}
abi_struct! {
    /// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3` entry (one command).
    pub struct IommuViommuArmSmmuv3Invalidate { pub cmd: [u64; 2] }
}
abi_struct! {
    /// `IOMMU_HWPT_INVALIDATE`.
    pub struct IommuHwptInvalidate {
        pub size: u32, pub hwpt_id: u32, pub data_uptr: u64, pub data_type: u32,
        pub entry_len: u32, pub entry_num: u32, pub reserved: u32,
    }
}
abi_struct! {
    /// A fault record read from a fault queue fd.
    pub struct IommuHwptPgfault {
        pub flags: u32, pub dev_id: u32, pub pasid: u32, pub grpid: u32, pub perm: u32,
        pub reserved: u32, pub addr: u64, pub length: u32, pub cookie: u32,
    }
}
abi_struct! {
    /// A page response written to a fault queue fd.
    pub struct IommuHwptPageResponse { pub cookie: u32, pub code: u32 }
}
abi_struct! {
    /// `IOMMU_FAULT_QUEUE_ALLOC`.
    pub struct IommuFaultAlloc { pub size: u32, pub flags: u32, pub out_fault_id: u32, pub out_fault_fd: u32 }
}
abi_struct! {
    /// `IOMMU_VIOMMU_ALLOC`.
    pub struct IommuViommuAlloc {
        pub size: u32, pub flags: u32, pub viommu_type: u32, pub dev_id: u32, pub hwpt_id: u32,
        pub out_viommu_id: u32, pub data_len: u32, pub reserved: u32, pub data_uptr: u64,
    }
}
abi_struct! {
    /// `IOMMU_VDEVICE_ALLOC`.
    pub struct IommuVdeviceAlloc {
        pub size: u32, pub viommu_id: u32, pub dev_id: u32, pub out_vdevice_id: u32, pub virt_id: u64,
    }
}
abi_struct! {
    /// `IOMMU_IOAS_CHANGE_PROCESS`.
    pub struct IommuIoasChangeProcess { pub size: u32, pub reserved: u32 }
}
abi_struct! {
    /// Header before each event read from a vEVENTQ fd.
    pub struct IommufdVeventHeader { pub flags: u32, pub sequence: u32 }
}
abi_struct! {
    /// `IOMMU_VEVENTQ_ALLOC`.
    pub struct IommuVeventqAlloc {
        pub size: u32, pub flags: u32, pub viommu_id: u32, pub veventq_type: u32, pub veventq_depth: u32,
        pub out_veventq_id: u32, pub out_veventq_fd: u32, pub reserved: u32,
    }
}
abi_struct! {
    /// `IOMMU_HW_QUEUE_ALLOC`.
    pub struct IommuHwQueueAlloc {
        pub size: u32, pub flags: u32, pub viommu_id: u32, pub hw_queue_type: u32, pub index: u32,
        pub out_hw_queue_id: u32, pub nesting_parent_iova: u64, pub length: u64,
    }
}
