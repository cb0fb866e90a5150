//! The selftest's mock driver (Linux `selftest.c`): paging data that picks
//! the table shape, a four-slot IOTLB per nested domain and a four-slot
//! cache per device, both cleared by user invalidation.

use super::{DriverOps, InvalidationArray};
use crate::errno::{Errno, Result};
use crate::memory::user_copy::Payload;
use crate::memory::PAGE_SIZE;
use crate::object::{Device, DriverData, HwptNested, ObjectTable};
use softiommu_uapi::test_cmd as t;
use zerocopy::FromBytes;

/// `pagetable_type` values of `struct iommu_hwpt_selftest`.
const MOCK_IOMMUPT_DEFAULT: u32 = 0;
const MOCK_IOMMUPT_HUGE: u32 = 1;

/// The PASID on which the mock's `set_dev_pasid` fails every other call.
const FAKE_FAILURE_PASID: u32 = 1024;

/// How many HW queues the mock vIOMMU has (`IOMMU_TEST_HW_QUEUE_MAX`).
pub const MOCK_HW_QUEUES: usize = t::IOMMU_TEST_HW_QUEUE_MAX as usize;

/// The mock's device state (Linux `struct mock_dev`).
#[derive(Debug)]
pub struct MockDevice {
    /// The device's cache, which vIOMMU invalidation clears.
    pub cache: [u32; 4],
    /// The armed fake failure on PASID 1024: the first `set_dev_pasid` there
    /// arms it, the next fails with `ENOMEM` and disarms it.
    pasid_1024_armed: bool,
}

/// The mock's nested-domain state (`struct mock_iommu_domain_nested`).
#[derive(Debug)]
pub struct MockNested {
    /// Its stage-1 IOTLB, seeded from the payload's first word.
    pub iotlb: [u32; 4],
}

/// The mock's vIOMMU state (`struct mock_viommu`).
#[derive(Debug, Default)]
pub struct MockViommu {
    /// The offset of its region mappable through the descriptor, made when
    /// the vIOMMU is allocated with driver data.
    pub mmap_offset: Option<u64>,
    /// Its HW queues by index, as object ids.
    pub hw_queues: [Option<u32>; MOCK_HW_QUEUES],
}

/// The mock driver's ops.
pub struct Mock;

impl DriverOps for Mock {
    fn new_device_data(&self) -> DriverData {
        DriverData::new(MockDevice {
            cache: [t::IOMMU_TEST_DEV_CACHE_DEFAULT; 4],
            pasid_1024_armed: false,
        })
    }

    fn new_nested_data(&self, payload: &[u8]) -> DriverData {
        let mut seed = [0u8; 4];
        for (d, s) in seed.iter_mut().zip(payload) {
            *d = *s;
        }
        DriverData::new(MockNested {
            iotlb: [u32::from_ne_bytes(seed); 4],
        })
    }

    fn new_viommu_data(&self, viommu_type: u32) -> DriverData {
        if viommu_type == t::IOMMU_VIOMMU_TYPE_SELFTEST {
            DriverData::new(MockViommu::default())
        } else {
            DriverData::default()
        }
    }

    fn set_dev_pasid(&self, device: &mut Device, pasid: u32) -> Result<()> {
        let Some(mock) = device.driver_data.get_mut::<MockDevice>() else {
            return Ok(());
        };
        if pasid != FAKE_FAILURE_PASID {
            return Ok(());
        }
        mock.pasid_1024_armed = !mock.pasid_1024_armed;
        if mock.pasid_1024_armed {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    fn remove_dev_pasid(&self, device: &mut Device, pasid: u32) {
        if let Some(mock) = device.driver_data.get_mut::<MockDevice>() {
            if pasid == FAKE_FAILURE_PASID {
                mock.pasid_1024_armed = false;
            }
        }
    }

    /// `struct iommu_hwpt_selftest`, at least through `iotlb`: the huge
    /// table shape asks for 1 MiB leaves (and the CPU page, which iommufd
    /// needs to accept the domain).
    fn paging_data(&self, data: Payload<'_>) -> Result<Option<u64>> {
        let size = std::mem::size_of::<t::IommuHwptSelftest>();
        let min = std::mem::offset_of!(t::IommuHwptSelftest, pagetable_type);
        let bytes = data.read(min, size)?;
        let data = t::IommuHwptSelftest::read_from_bytes(&bytes).map_err(|_| Errno::EINVAL)?;
        match data.pagetable_type {
            MOCK_IOMMUPT_DEFAULT => Ok(None),
            MOCK_IOMMUPT_HUGE => Ok(Some((512 * 2048) | PAGE_SIZE)),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// Entries `{flags, iotlb_id}` of exactly their struct's size zero one
    /// IOTLB slot or, with FLAG_ALL, all.
    fn invalidate_hwpt(
        &self,
        hwpt: &mut HwptNested,
        array: InvalidationArray<'_>,
        done: &mut u32,
    ) -> Result<()> {
        const ENTRY: usize = std::mem::size_of::<t::IommuHwptInvalidateSelftest>();
        if array.data_type != t::IOMMU_HWPT_INVALIDATE_DATA_SELFTEST {
            return Err(Errno::EINVAL);
        }
        for i in 0..array.entry_num {
            if array.entry_len as usize != ENTRY {
                return Err(Errno::EINVAL);
            }
            let entry: t::IommuHwptInvalidateSelftest = array.entry(i, ENTRY)?;
            if entry.flags & !t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            if entry.iotlb_id > t::MOCK_NESTED_DOMAIN_IOTLB_ID_MAX {
                return Err(Errno::EINVAL);
            }
            let mock = hwpt
                .driver_data
                .get_mut::<MockNested>()
                .ok_or(Errno::EINVAL)?;
            if entry.flags & t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                mock.iotlb = [0; 4];
            } else {
                mock.iotlb[entry.iotlb_id as usize] = 0;
            }
            *done += 1;
        }
        Ok(())
    }

    /// Entries `{flags, vdev_id, cache_id}` name a device by virtual id and
    /// clear one of its cache slots, or all with FLAG_ALL. The whole array
    /// is read first; an empty one of the right type does nothing.
    fn invalidate_viommu(
        &self,
        objects: &mut ObjectTable,
        viommu: u32,
        array: InvalidationArray<'_>,
        done: &mut u32,
    ) -> Result<()> {
        if array.data_type != t::IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST {
            return Err(Errno::EINVAL);
        }
        if array.entry_num == 0 {
            return Ok(());
        }
        let entries: Vec<t::IommuViommuInvalidateSelftest> = array.all()?;
        for entry in entries {
            if entry.flags & !t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            if entry.cache_id > t::MOCK_DEV_CACHE_ID_MAX {
                return Err(Errno::EINVAL);
            }
            let device = objects
                .device_by_virt_id(viommu, u64::from(entry.vdev_id))
                .ok_or(Errno::EINVAL)?;
            let mock = objects
                .device_mut(device)?
                .driver_data
                .get_mut::<MockDevice>()
                .ok_or(Errno::EINVAL)?;
            if entry.flags & t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                mock.cache = [0; 4];
            } else {
                mock.cache[entry.cache_id as usize] = 0;
            }
            *done += 1;
        }
        Ok(())
    }
}
