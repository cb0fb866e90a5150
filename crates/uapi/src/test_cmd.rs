//! `IOMMU_TEST_CMD`: the selftest multiplexer of `iommufd_test.h` (Linux 7.1).
//!
//! The command is one struct, [`IommuTestCmd`], whose 48-byte payload is a
//! union selected by `op`; each payload variant is its own struct below, read
//! from and written to the front of [`IommuTestCmd::payload`].

use crate::iommufd::abi_struct;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Test operations (`IOMMU_TEST_OP_*`).
pub mod op {
    pub const ADD_RESERVED: u32 = 1;
    pub const MOCK_DOMAIN: u32 = 2;
    pub const MD_CHECK_MAP: u32 = 3;
    pub const MD_CHECK_REFS: u32 = 4;
    pub const CREATE_ACCESS: u32 = 5;
    pub const DESTROY_ACCESS_PAGES: u32 = 6;
    pub const ACCESS_PAGES: u32 = 7;
    pub const ACCESS_RW: u32 = 8;
    pub const SET_TEMP_MEMORY_LIMIT: u32 = 9;
    pub const MOCK_DOMAIN_REPLACE: u32 = 10;
    pub const ACCESS_REPLACE_IOAS: u32 = 11;
    pub const MOCK_DOMAIN_FLAGS: u32 = 12;
    pub const DIRTY: u32 = 13;
    pub const MD_CHECK_IOTLB: u32 = 14;
    pub const TRIGGER_IOPF: u32 = 15;
    pub const DEV_CHECK_CACHE: u32 = 16;
    pub const TRIGGER_VEVENT: u32 = 17;
    pub const PASID_ATTACH: u32 = 18;
    pub const PASID_REPLACE: u32 = 19;
    pub const PASID_DETACH: u32 = 20;
    pub const PASID_CHECK_HWPT: u32 = 21;
    pub const DMABUF_GET: u32 = 22;
    pub const DMABUF_REVOKE: u32 = 23;
}

/// Mock domain aperture, inclusive.
pub const MOCK_APERTURE_START: u64 = 1 << 24;
pub const MOCK_APERTURE_LAST: u64 = (1 << 31) - 1;
/// The mock domain's smallest page.
pub const MOCK_PAGE_SIZE: u64 = 2048;
pub const MOCK_FLAGS_ACCESS_WRITE: u32 = 1 << 0;
pub const MOCK_FLAGS_ACCESS_SYZ: u32 = 1 << 16;
pub const MOCK_ACCESS_RW_WRITE: u32 = 1 << 0;
pub const MOCK_ACCESS_RW_SLOW_PATH: u32 = 1 << 2;
pub const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES: u32 = 1 << 0;
pub const MOCK_FLAGS_DEVICE_NO_DIRTY: u32 = 1 << 0;
pub const MOCK_FLAGS_DEVICE_HUGE_IOVA: u32 = 1 << 1;
pub const MOCK_FLAGS_DEVICE_PASID: u32 = 1 << 2;
pub const MOCK_NESTED_DOMAIN_IOTLB_ID_MAX: u32 = 3;
pub const MOCK_NESTED_DOMAIN_IOTLB_NUM: u32 = 4;
pub const MOCK_DEV_CACHE_ID_MAX: u32 = 3;
pub const MOCK_DEV_CACHE_NUM: u32 = 4;
pub const MOCK_PASID_WIDTH: u8 = 20;
pub const IOMMU_TEST_PASID_RESERVED: u32 = 1024;
pub const IOMMU_HW_INFO_TYPE_SELFTEST: u32 = 0xfeed_beef;
pub const IOMMU_HW_INFO_SELFTEST_REGVAL: u32 = 0xdead_beef;
pub const IOMMU_HWPT_DATA_SELFTEST: u32 = 0xdead;
pub const IOMMU_TEST_IOTLB_DEFAULT: u32 = 0x0bad_beef;
pub const IOMMU_TEST_DEV_CACHE_DEFAULT: u32 = 0x00ba_ddad;
pub const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
pub const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID: u32 = 0x0dad_beef;
pub const IOMMU_TEST_INVALIDATE_FLAG_ALL: u32 = 1 << 0;
pub const IOMMU_VIOMMU_TYPE_SELFTEST: u32 = 0xdead_beef;
pub const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST: u32 = 0xdead_beef;
pub const IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST_INVALID: u32 = 0x0dad_beef;
pub const IOMMU_VEVENTQ_TYPE_SELFTEST: u32 = 0xbeef_beef;
pub const IOMMU_HW_QUEUE_TYPE_SELFTEST: u32 = 0xdead_beef;
pub const IOMMU_TEST_HW_QUEUE_MAX: u32 = 2;

/// Size of the payload union.
pub const TEST_PAYLOAD_SIZE: usize = 48;

abi_struct! {
    /// `struct iommu_test_cmd`: 72 bytes; `last` ends at 68 (the min size).
    pub struct IommuTestCmd {
        pub size: u32, pub op: u32, pub id: u32, pub reserved: u32,
        pub payload: [u64; TEST_PAYLOAD_SIZE / 8], pub last: u32, pub tail_pad: u32,
    }
}

impl IommuTestCmd {
    /// Reads payload variant `T` from the front of the union.
    pub fn payload_as<T: FromBytes>(&self) -> T {
        match T::read_from_prefix(self.payload.as_bytes()) {
            Ok((value, _)) => value,
            Err(_) => unreachable!("every payload variant fits in the union"),
        }
    }

    /// Writes payload variant `T` to the front of the union.
    pub fn set_payload<T: IntoBytes + Immutable>(&mut self, value: &T) {
        let bytes = value.as_bytes();
        self.payload.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    }
}

abi_struct! { /// `add_reserved`.
pub struct TestAddReserved { pub start: u64, pub length: u64 } }
abi_struct! { /// `mock_domain` and `mock_domain_flags`.
pub struct TestMockDomain { pub out_stdev_id: u32, pub out_hwpt_id: u32, pub out_idev_id: u32, pub dev_flags: u32 } }
abi_struct! { /// `mock_domain_replace`, `access_replace_ioas`, `memory_limit`, `destroy_access_pages`, `trigger_vevent`: one u32.
pub struct TestOneId { pub id: u32 } }
abi_struct! { /// `check_map`.
pub struct TestCheckMap { pub iova: u64, pub length: u64, pub uptr: u64 } }
abi_struct! { /// `check_refs`.
pub struct TestCheckRefs { pub length: u64, pub uptr: u64, pub refs: u32, pub pad: u32 } }
abi_struct! { /// `create_access`.
pub struct TestCreateAccess { pub out_access_fd: u32, pub flags: u32 } }
abi_struct! { /// `access_pages`.
pub struct TestAccessPages { pub flags: u32, pub out_access_pages_id: u32, pub iova: u64, pub length: u64, pub uptr: u64 } }
abi_struct! { /// `access_rw`.
pub struct TestAccessRw { pub iova: u64, pub length: u64, pub uptr: u64, pub flags: u32, pub pad: u32 } }
abi_struct! { /// `dirty`.
pub struct TestDirty { pub flags: u32, pub pad: u32, pub iova: u64, pub length: u64, pub page_size: u64, pub uptr: u64, pub out_nr_dirty: u64 } }
abi_struct! { /// `check_iotlb` and `check_dev_cache`.
pub struct TestCheckCache { pub id: u32, pub value: u32 } }
abi_struct! { /// `trigger_iopf`.
pub struct TestTriggerIopf { pub dev_id: u32, pub pasid: u32, pub grpid: u32, pub perm: u32, pub addr: u64 } }
abi_struct! { /// `pasid_attach`, `pasid_replace`, `pasid_detach`, `pasid_check`.
pub struct TestPasid { pub pasid: u32, pub pt_id: u32 } }
abi_struct! { /// `dmabuf_get`.
pub struct TestDmabufGet { pub length: u32, pub open_flags: u32 } }
abi_struct! { /// `dmabuf_revoke`.
pub struct TestDmabufRevoke { pub dmabuf_fd: i32, pub revoked: u32 } }
abi_struct! { /// The mock driver's `IOMMU_GET_HW_INFO` data.
pub struct IommuTestHwInfo { pub flags: u32, pub test_reg: u32 } }
abi_struct! { /// The mock driver's paging HWPT data (`struct iommu_hwpt_selftest`).
pub struct IommuHwptSelftest { pub iotlb: u32, pub pagetable_type: u32 } }
abi_struct! { /// The mock driver's vIOMMU data (`struct iommu_viommu_selftest`).
pub struct IommuViommuSelftest { pub in_data: u32, pub out_data: u32, pub out_mmap_offset: u64, pub out_mmap_length: u64 } }
abi_struct! { /// The mock driver's nested-HWPT invalidation entry (`struct iommu_hwpt_invalidate_selftest`).
pub struct IommuHwptInvalidateSelftest { pub flags: u32, pub iotlb_id: u32 } }
abi_struct! { /// The mock vIOMMU's invalidation entry (`struct iommu_viommu_invalidate_selftest`).
pub struct IommuViommuInvalidateSelftest { pub flags: u32, pub vdev_id: u32, pub cache_id: u32 } }
