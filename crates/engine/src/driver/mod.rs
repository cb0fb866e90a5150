//! What differs between IOMMU drivers, as Linux's `iommu_domain_ops` and
//! `iommufd_viommu_ops` separate it: the data their HWPTs take, how user
//! space invalidates their caches, and where a nested domain's stage 1
//! lives. The IOMMU core's [`DriverInfo`] says *what* a driver supports;
//! [`DriverOps`] is *how* it behaves. The engine picks the ops by driver
//! name ([`ops_for`]) and never branches on a driver's data type elsewhere.

use crate::errno::{Errno, Result};
use crate::memory::user_copy::{copy_array_entry, Payload};
use crate::memory::AddressSpace;
use crate::object::{Device, DriverData, HwptNested, ObjectTable};
use softiommu_iommu::DriverInfo;
use softiommu_pt::nested::Stage1;
use softiommu_pt::FaultReason;
use zerocopy::{FromBytes, IntoBytes};

pub mod amd;
pub mod mock;
pub mod smmuv3;
pub mod vtd;

/// The largest array the kernel would allocate for a command (kmalloc's
/// usual limit), beyond which it answers `ENOMEM`.
const MAX_KERNEL_ALLOC: u64 = 4 << 20;

/// The user's invalidation array of one `IOMMU_HWPT_INVALIDATE` call, read
/// entry by entry with Linux's rules (`iommu_copy_struct_from_user_array`).
#[derive(Clone, Copy)]
pub struct InvalidationArray<'a> {
    /// Whose memory the array is in.
    pub mem: &'a dyn AddressSpace,
    /// `IOMMU_HWPT_INVALIDATE_DATA_*` the caller says the entries are.
    pub data_type: u32,
    /// Where the array starts.
    pub uptr: u64,
    /// The caller's size of one entry.
    pub entry_len: u32,
    /// How many entries.
    pub entry_num: u32,
}

impl InvalidationArray<'_> {
    /// Entry `index` as a `T`, of which `min_size` bytes are mandatory.
    pub fn entry<T: FromBytes + IntoBytes>(&self, index: u32, min_size: usize) -> Result<T> {
        copy_array_entry(self.mem, self.uptr, self.entry_len, index, min_size)
    }

    /// Every entry, read before any is handled (as Linux copies the array
    /// into one allocation first, `ENOMEM` past its size limit).
    pub fn all<T: FromBytes + IntoBytes>(&self) -> Result<Vec<T>> {
        if u64::from(self.entry_num) * std::mem::size_of::<T>() as u64 > MAX_KERNEL_ALLOC {
            return Err(Errno::ENOMEM);
        }
        (0..self.entry_num).map(|i| self.entry(i, 0)).collect()
    }
}

/// Where a nested domain's stage-1 translation starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Start {
    /// Every access faults.
    Abort,
    /// Stage 1 is bypassed: IOVA is GPA.
    Bypass,
    /// A table the guest keeps; IOVAs beyond `ia_bits` fault.
    Table {
        /// The table's format and root.
        stage1: Stage1,
        /// Input address width.
        ia_bits: u32,
    },
    /// A descriptor of `len` bytes at guest address `gpa` names the table
    /// (SMMUv3's context descriptor), read at every access.
    Descriptor {
        /// Guest physical address of the descriptor.
        gpa: u64,
        /// Its size in bytes.
        len: usize,
    },
}

/// How one IOMMU driver behaves. Every method has the answer of a driver
/// that does not support the feature.
pub trait DriverOps: Sync {
    /// The leaf sizes a paging HWPT's driver data asks for (`None`: the
    /// driver's own). Called only for the driver's paging data type.
    fn paging_data(&self, _data: Payload<'_>) -> Result<Option<u64>> {
        Err(Errno::EOPNOTSUPP)
    }

    /// What the driver keeps with a device it is given.
    fn new_device_data(&self) -> DriverData {
        DriverData::default()
    }

    /// What the driver keeps with a nested HWPT made with `payload`.
    fn new_nested_data(&self, _payload: &[u8]) -> DriverData {
        DriverData::default()
    }

    /// What the driver keeps with a vIOMMU of `viommu_type`.
    fn new_viommu_data(&self, _viommu_type: u32) -> DriverData {
        DriverData::default()
    }

    /// The driver installs a domain on `pasid` of `device` (Linux
    /// `set_dev_pasid`); the core has checked everything else.
    fn set_dev_pasid(&self, _device: &mut Device, _pasid: u32) -> Result<()> {
        Ok(())
    }

    /// The driver takes the domain off `pasid` of `device`.
    fn remove_dev_pasid(&self, _device: &mut Device, _pasid: u32) {}

    /// Checks a nested HWPT's payload (already read with the size rules)
    /// as the driver does before it makes the domain.
    fn check_nested_data(&self, _data: &[u8]) -> Result<()> {
        Ok(())
    }

    /// User-managed cache invalidation of a nested HWPT (`HWPT_INVALIDATE`
    /// naming a nested HWPT). Stops at the first bad entry; `done` counts
    /// the entries handled.
    fn invalidate_hwpt(
        &self,
        _hwpt: &mut HwptNested,
        _array: InvalidationArray<'_>,
        _done: &mut u32,
    ) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Cache invalidation addressed to vIOMMU `viommu` (`HWPT_INVALIDATE`
    /// naming a vIOMMU); it may reach the vIOMMU's devices and nested HWPTs.
    fn invalidate_viommu(
        &self,
        _objects: &mut ObjectTable,
        _viommu: u32,
        _array: InvalidationArray<'_>,
        _done: &mut u32,
    ) -> Result<()> {
        Err(Errno::EOPNOTSUPP)
    }

    /// Where the stage 1 of a nested HWPT made with `data` starts, for
    /// emulated DMA; `EOPNOTSUPP` when the driver keeps no table to walk.
    fn stage1(&self, _data: &[u8]) -> Result<Stage1Start> {
        Err(Errno::EOPNOTSUPP)
    }

    /// The stage-1 table a descriptor read from guest memory names, and its
    /// input address width ([`Stage1Start::Descriptor`]).
    fn stage1_from_descriptor(
        &self,
        _descriptor: &[u8],
    ) -> std::result::Result<(Stage1, u32), FaultReason> {
        Err(FaultReason::NotPresent)
    }
}

/// The ops of the driver `info` describes; a driver this engine has no
/// model of behaves as one that supports none of the operations.
pub fn ops_for(info: &DriverInfo) -> &'static dyn DriverOps {
    match info.name.as_str() {
        "mock" => &mock::Mock,
        "intel-iommu" => &vtd::Vtd,
        "arm-smmu-v3" => &smmuv3::Smmuv3,
        "amd-iommu" => &amd::AmdV1,
        _ => &NoOps,
    }
}

/// A driver with none of the optional operations.
struct NoOps;

impl DriverOps for NoOps {}
