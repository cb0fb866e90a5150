//! Request numbers and the per-command size table.

use crate::iommufd::*;
use crate::test_cmd::IommuTestCmd;
use core::mem::{offset_of, size_of};

/// `_IO(type, nr)`: no direction and no size bits.
pub const fn io(ty: u8, nr: u8) -> u32 {
    ((ty as u32) << 8) | nr as u32
}

/// The request number of iommufd command `nr`.
pub const fn iommufd_request(nr: u8) -> u32 {
    io(IOMMUFD_TYPE, nr)
}

pub const IOMMU_DESTROY: u32 = iommufd_request(nr::DESTROY);
pub const IOMMU_IOAS_ALLOC: u32 = iommufd_request(nr::IOAS_ALLOC);
pub const IOMMU_IOAS_ALLOW_IOVAS: u32 = iommufd_request(nr::IOAS_ALLOW_IOVAS);
pub const IOMMU_IOAS_COPY: u32 = iommufd_request(nr::IOAS_COPY);
pub const IOMMU_IOAS_IOVA_RANGES: u32 = iommufd_request(nr::IOAS_IOVA_RANGES);
pub const IOMMU_IOAS_MAP: u32 = iommufd_request(nr::IOAS_MAP);
pub const IOMMU_IOAS_UNMAP: u32 = iommufd_request(nr::IOAS_UNMAP);
pub const IOMMU_OPTION: u32 = iommufd_request(nr::OPTION);
pub const IOMMU_VFIO_IOAS: u32 = iommufd_request(nr::VFIO_IOAS);
pub const IOMMU_HWPT_ALLOC: u32 = iommufd_request(nr::HWPT_ALLOC);
pub const IOMMU_GET_HW_INFO: u32 = iommufd_request(nr::GET_HW_INFO);
pub const IOMMU_HWPT_SET_DIRTY_TRACKING: u32 = iommufd_request(nr::HWPT_SET_DIRTY_TRACKING);
pub const IOMMU_HWPT_GET_DIRTY_BITMAP: u32 = iommufd_request(nr::HWPT_GET_DIRTY_BITMAP);
pub const IOMMU_HWPT_INVALIDATE: u32 = iommufd_request(nr::HWPT_INVALIDATE);
pub const IOMMU_FAULT_QUEUE_ALLOC: u32 = iommufd_request(nr::FAULT_QUEUE_ALLOC);
pub const IOMMU_IOAS_MAP_FILE: u32 = iommufd_request(nr::IOAS_MAP_FILE);
pub const IOMMU_VIOMMU_ALLOC: u32 = iommufd_request(nr::VIOMMU_ALLOC);
pub const IOMMU_VDEVICE_ALLOC: u32 = iommufd_request(nr::VDEVICE_ALLOC);
pub const IOMMU_IOAS_CHANGE_PROCESS: u32 = iommufd_request(nr::IOAS_CHANGE_PROCESS);
pub const IOMMU_VEVENTQ_ALLOC: u32 = iommufd_request(nr::VEVENTQ_ALLOC);
pub const IOMMU_HW_QUEUE_ALLOC: u32 = iommufd_request(nr::HW_QUEUE_ALLOC);
pub const IOMMU_TEST_CMD: u32 = iommufd_request(nr::TEST_CMD);

/// What the dispatcher needs to know about one command before running it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The request number (`_IO(';', nr)`).
    pub request: u32,
    /// `sizeof` the struct in this ABI version.
    pub size: usize,
    /// `offsetofend` of the last mandatory field.
    pub min_size: usize,
}

macro_rules! info {
    ($req:expr, $ty:ty, $last:ident) => {
        CommandInfo {
            request: $req,
            size: size_of::<$ty>(),
            min_size: offset_of!($ty, $last) + size_of_field!($ty, $last),
        }
    };
}
macro_rules! size_of_field {
    ($ty:ty, $f:ident) => {{
        const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
            size_of::<F>()
        }
        field_size(|s: &$ty| &s.$f)
    }};
}

/// The command table, indexed by `nr - IOMMUFD_CMD_BASE`; `None` for numbers
/// inside the table that name no command (Linux answers `ENOTTY` for them).
const TABLE: [Option<CommandInfo>; 33] = {
    let mut t: [Option<CommandInfo>; 33] = [None; 33];
    t[0x00] = Some(info!(IOMMU_DESTROY, IommuDestroy, id));
    t[0x01] = Some(info!(IOMMU_IOAS_ALLOC, IommuIoasAlloc, out_ioas_id));
    t[0x02] = Some(info!(
        IOMMU_IOAS_ALLOW_IOVAS,
        IommuIoasAllowIovas, allowed_iovas
    ));
    t[0x03] = Some(info!(IOMMU_IOAS_COPY, IommuIoasCopy, src_iova));
    t[0x04] = Some(info!(
        IOMMU_IOAS_IOVA_RANGES,
        IommuIoasIovaRanges, out_iova_alignment
    ));
    t[0x05] = Some(info!(IOMMU_IOAS_MAP, IommuIoasMap, iova));
    t[0x06] = Some(info!(IOMMU_IOAS_UNMAP, IommuIoasUnmap, length));
    t[0x07] = Some(info!(IOMMU_OPTION, IommuOption, val64));
    t[0x08] = Some(info!(IOMMU_VFIO_IOAS, IommuVfioIoas, reserved));
    t[0x09] = Some(info!(IOMMU_HWPT_ALLOC, IommuHwptAlloc, reserved));
    t[0x0a] = Some(info!(IOMMU_GET_HW_INFO, IommuHwInfo, reserved));
    t[0x0b] = Some(info!(
        IOMMU_HWPT_SET_DIRTY_TRACKING,
        IommuHwptSetDirtyTracking, reserved
    ));
    t[0x0c] = Some(info!(
        IOMMU_HWPT_GET_DIRTY_BITMAP,
        IommuHwptGetDirtyBitmap, data
    ));
    t[0x0d] = Some(info!(IOMMU_HWPT_INVALIDATE, IommuHwptInvalidate, reserved));
    t[0x0e] = Some(info!(
        IOMMU_FAULT_QUEUE_ALLOC,
        IommuFaultAlloc, out_fault_fd
    ));
    t[0x0f] = Some(info!(IOMMU_IOAS_MAP_FILE, IommuIoasMapFile, iova));
    t[0x10] = Some(info!(IOMMU_VIOMMU_ALLOC, IommuViommuAlloc, out_viommu_id));
    t[0x11] = Some(info!(IOMMU_VDEVICE_ALLOC, IommuVdeviceAlloc, virt_id));
    t[0x12] = Some(info!(
        IOMMU_IOAS_CHANGE_PROCESS,
        IommuIoasChangeProcess, reserved
    ));
    t[0x13] = Some(info!(
        IOMMU_VEVENTQ_ALLOC,
        IommuVeventqAlloc, out_veventq_fd
    ));
    t[0x14] = Some(info!(IOMMU_HW_QUEUE_ALLOC, IommuHwQueueAlloc, length));
    t[0x20] = Some(info!(IOMMU_TEST_CMD, IommuTestCmd, last));
    t
};

/// Looks up iommufd command `nr` (`_IOC_NR` of the request).
///
/// `Ok(None)`: `nr` is outside the iommufd table, so Linux routes the request
/// to the VFIO compatibility switch. `Err(())`: inside the table but not a
/// command Linux knows.
#[allow(clippy::result_unit_err)]
pub fn command_info(nr: u8) -> Result<Option<CommandInfo>, ()> {
    if nr < IOMMUFD_CMD_BASE {
        return Ok(None);
    }
    match TABLE.get(usize::from(nr - IOMMUFD_CMD_BASE)) {
        None => Ok(None),
        Some(Some(info)) => Ok(Some(*info)),
        Some(None) => Err(()),
    }
}
