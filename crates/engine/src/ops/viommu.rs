//! vIOMMUs and vDEVICEs (Linux `iommufd_viommu`, `iommufd_vdevice`): a
//! virtual IOMMU instance a VMM presents to its guest, built over a
//! nest-parent HWPT (the stage 2), and the devices it knows by their virtual
//! ids (vSID / vRID). Nested HWPTs can be made through a vIOMMU, and cache
//! invalidation addressed to a vIOMMU names devices by virtual id.
//!
//! References: the vIOMMU holds a user of its HWPT; a vDEVICE holds a user
//! of its vIOMMU but not of its device: destroying the device removes its
//! vDEVICE (whose id then no longer names anything).

use crate::context::Context;
use crate::driver::mock::{MockViommu, MOCK_HW_QUEUES};
use crate::errno::{Errno, Result};
use crate::object::{HwQueue, Object, Vdevice, Viommu};
use std::collections::BTreeMap;

/// The size of the mock driver's region: two pages.
const MOCK_MMAP_LENGTH: u64 = 2 * crate::memory::PAGE_SIZE;

impl Context {
    /// The vIOMMU `id`; `ENOENT` when missing or of another type.
    pub fn viommu(&self, id: u32) -> Result<&Viommu> {
        self.objects.viommu(id)
    }

    fn viommu_mut(&mut self, id: u32) -> Result<&mut Viommu> {
        match self.objects.get_mut(id) {
            Some(Object::Viommu(v)) => Ok(v),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The vDEVICE `id`; `ENOENT` when missing or of another type.
    pub fn vdevice(&self, id: u32) -> Result<&Vdevice> {
        self.objects.vdevice(id)
    }

    /// Makes a vIOMMU of `viommu_type` for `dev_id`'s IOMMU over nest-parent
    /// HWPT `hwpt_id` (`IOMMU_VIOMMU_ALLOC`). Checks in Linux's order.
    pub fn viommu_alloc(&mut self, dev_id: u32, hwpt_id: u32, viommu_type: u32) -> Result<u32> {
        if viommu_type == softiommu_uapi::iommufd::IOMMU_VIOMMU_TYPE_DEFAULT {
            return Err(Errno::EOPNOTSUPP);
        }
        let dev = self.objects.device(dev_id)?.dev;
        let (iommu, driver_data) = {
            let core = self.core();
            let iommu = core.topology().iommu_of(dev);
            let driver = &core.topology().iommu(iommu).driver;
            if driver.viommu_type == 0 || driver.viommu_type != viommu_type {
                return Err(Errno::EOPNOTSUPP);
            }
            let driver_data = crate::driver::ops_for(driver).new_viommu_data(viommu_type);
            (iommu, driver_data)
        };
        if !self.objects.hwpt_paging(hwpt_id)?.flags.nest_parent {
            return Err(Errno::EINVAL);
        }
        self.shared().fail_nth.check()?;
        let viommu = Viommu {
            hwpt: hwpt_id,
            iommu,
            viommu_type,
            vdevs: BTreeMap::new(),
            veventqs: BTreeMap::new(),
            driver_data,
        };
        let id = self.objects.insert(Object::Viommu(Box::new(viommu)))?;
        self.objects.add_user(hwpt_id);
        Ok(id)
    }

    /// Gives device `dev_id` the virtual id `virt_id` in vIOMMU `viommu_id`
    /// (`IOMMU_VDEVICE_ALLOC`): `EINVAL` for a device behind another IOMMU,
    /// `EEXIST` if the device has a vDEVICE or the id is taken.
    pub fn vdevice_alloc(&mut self, viommu_id: u32, dev_id: u32, virt_id: u64) -> Result<u32> {
        let iommu = self.viommu(viommu_id)?.iommu;
        let device = self.objects.device(dev_id)?;
        let (dev, existing) = (device.dev, device.vdevice);
        if self.core().topology().iommu_of(dev) != iommu {
            return Err(Errno::EINVAL);
        }
        if existing.is_some() || self.viommu(viommu_id)?.vdevs.contains_key(&virt_id) {
            return Err(Errno::EEXIST);
        }
        self.shared().fail_nth.check()?;
        let vdev = Vdevice {
            viommu: viommu_id,
            device: dev_id,
            virt_id,
        };
        let id = self.objects.insert(Object::Vdevice(Box::new(vdev)))?;
        self.objects.add_user(viommu_id);
        self.viommu_mut(viommu_id)?.vdevs.insert(virt_id, id);
        self.objects.device_mut(dev_id)?.vdevice = Some(id);
        Ok(id)
    }

    pub(crate) fn destroy_viommu(&mut self, viommu: Viommu) {
        if let Some(offset) = viommu
            .driver_data
            .get::<MockViommu>()
            .and_then(|m| m.mmap_offset)
        {
            self.mmap_region_remove(offset);
        }
        self.objects.drop_user(viommu.hwpt);
    }

    /// The mock driver's vIOMMU data (`struct iommu_viommu_selftest`:
    /// `in_data`, `out_data`, `out_mmap_offset`, `out_mmap_length`): at least
    /// through `out_data` (`EINVAL`), a longer struct's tail must be zero
    /// (`E2BIG`) and is not written back (`EINVAL`). It gives the vIOMMU a
    /// two-page region whose first word is `in_data`, and writes back
    /// `out_data = in_data` and where to map the region.
    pub(crate) fn viommu_init_data(
        &mut self,
        caller: &crate::context::Caller<'_>,
        id: u32,
        data_uptr: u64,
        data_len: u32,
    ) -> Result<()> {
        use softiommu_uapi::test_cmd::IommuViommuSelftest;
        let size = std::mem::size_of::<IommuViommuSelftest>() as u32;
        let mut data: IommuViommuSelftest = crate::memory::user_copy::copy_struct(
            &**caller.mem,
            data_uptr,
            u64::from(data_len),
            std::mem::offset_of!(IommuViommuSelftest, out_mmap_offset),
        )?;
        // The mock writes its output back, which a longer struct cannot take.
        if data_len > size {
            return Err(Errno::EINVAL);
        }
        let offset =
            self.mmap_region_alloc(id, MOCK_MMAP_LENGTH, data.in_data.to_ne_bytes().to_vec())?;
        mock_viommu(self.viommu_mut(id)?)?.mmap_offset = Some(offset);
        data.out_data = data.in_data;
        data.out_mmap_offset = offset;
        data.out_mmap_length = MOCK_MMAP_LENGTH;
        let n = data_len.min(size) as usize;
        caller
            .mem
            .write(data_uptr, &zerocopy::IntoBytes::as_bytes(&data)[..n])
    }

    /// Makes HW queue `index` of `hw_queue_type` for vIOMMU `viommu_id` over
    /// `[iova, iova + length)` of its stage 2 (`IOMMU_HW_QUEUE_ALLOC` after
    /// its argument checks). Checks in Linux's order: the vIOMMU (`ENOENT`),
    /// the driver's queue type (`EOPNOTSUPP`), the IOVA's pages (`ENOENT`
    /// unmapped; `EFAULT` unless one area holds them all, the emulation's
    /// physically contiguous memory), then the mock driver: index in range
    /// (`EINVAL`), free (`EEXIST`), its predecessor allocated (`EIO`).
    pub fn hw_queue_alloc(
        &mut self,
        viommu_id: u32,
        hw_queue_type: u32,
        index: u32,
        iova: u64,
        length: u64,
    ) -> Result<u32> {
        use crate::memory::PAGE_SIZE;
        let (viommu_type, hwpt) = {
            let v = self.viommu(viommu_id)?;
            (v.viommu_type, v.hwpt)
        };
        if viommu_type != softiommu_uapi::test_cmd::IOMMU_VIOMMU_TYPE_SELFTEST
            || hw_queue_type != softiommu_uapi::test_cmd::IOMMU_HW_QUEUE_TYPE_SELFTEST
        {
            return Err(Errno::EOPNOTSUPP);
        }
        self.shared().fail_nth.check()?;
        let aligned = iova & !(PAGE_SIZE - 1);
        let span = (iova - aligned)
            .checked_add(length)
            .and_then(|l| l.checked_add(PAGE_SIZE - 1))
            .ok_or(Errno::ERANGE)?
            & !(PAGE_SIZE - 1);
        let ioas = self.objects.hwpt_paging(hwpt)?.ioas;
        let table = self.ioas_mut(ioas)?;
        let contiguous = table
            .area_at(aligned)
            .is_some_and(|a| aligned + (span - 1) <= a.last);
        let pin = table.pin(aligned, span, false)?;
        let slot = index as usize;
        let queues = self
            .viommu_mut(viommu_id)
            .and_then(mock_viommu)
            .map(|m| m.hw_queues);
        let placed = if slot >= MOCK_HW_QUEUES {
            Err(Errno::EINVAL)
        } else if !contiguous {
            Err(Errno::EFAULT)
        } else if let Err(e) = queues {
            Err(e)
        } else {
            let queues = queues.unwrap_or_default();
            match (queues[slot], slot.checked_sub(1).map(|p| queues[p])) {
                (Some(_), _) => Err(Errno::EEXIST),
                (None, Some(None)) => Err(Errno::EIO),
                (None, prev) => Ok(prev.flatten()),
            }
        };
        let prev = match placed {
            Ok(prev) => prev,
            Err(e) => {
                let _ = self.ioas_mut(ioas)?.unpin(pin);
                return Err(e);
            }
        };
        let queue = HwQueue {
            viommu: viommu_id,
            index,
            hw_queue_type,
            base_iova: iova,
            length,
            ioas,
            pin,
            prev,
        };
        let id = match self.objects.insert(Object::HwQueue(Box::new(queue))) {
            Ok(id) => id,
            Err(e) => {
                let _ = self.ioas_mut(ioas)?.unpin(pin);
                return Err(e);
            }
        };
        self.objects.add_user(viommu_id);
        if let Some(p) = prev {
            self.objects.add_user(p);
        }
        mock_viommu(self.viommu_mut(viommu_id)?)?.hw_queues[slot] = Some(id);
        Ok(id)
    }

    pub(crate) fn destroy_hw_queue(&mut self, id: u32, queue: HwQueue) {
        if let Ok(t) = self.ioas_mut(queue.ioas) {
            let _ = t.unpin(queue.pin);
        }
        if let Some(v) = self
            .viommu_mut(queue.viommu)
            .ok()
            .and_then(|v| v.driver_data.get_mut::<MockViommu>())
        {
            if let Some(slot) = v.hw_queues.get_mut(queue.index as usize) {
                if *slot == Some(id) {
                    *slot = None;
                }
            }
        }
        if let Some(p) = queue.prev {
            self.objects.drop_user(p);
        }
        self.objects.drop_user(queue.viommu);
    }

    pub(crate) fn destroy_vdevice(&mut self, vdev: Vdevice) {
        if let Ok(v) = self.viommu_mut(vdev.viommu) {
            v.vdevs.remove(&vdev.virt_id);
        }
        self.objects.drop_user(vdev.viommu);
        if let Ok(d) = self.objects.device_mut(vdev.device) {
            d.vdevice = None;
        }
    }
}

impl Context {
    /// Cache invalidation addressed to a vIOMMU: its driver handles the
    /// array (`EOPNOTSUPP` for a driver without vIOMMU invalidation).
    pub(crate) fn invalidate_viommu(
        &mut self,
        array: crate::driver::InvalidationArray<'_>,
        viommu: u32,
        done: &mut u32,
    ) -> Result<()> {
        let iommu = self.viommu(viommu)?.iommu;
        let ops = {
            let core = self.core();
            crate::driver::ops_for(&core.topology().iommu(iommu).driver)
        };
        ops.invalidate_viommu(&mut self.objects, viommu, array, done)
    }

    /// Device `dev_id` raises a vIOMMU event (the selftest's
    /// `TRIGGER_VEVENT`): `ENOENT` unless it attached to a nested HWPT made
    /// through a vIOMMU while it had a non-zero virtual id there. The event,
    /// the virtual id as a `u32`, goes to that vIOMMU's vEVENTQ of the mock's
    /// type (`EOPNOTSUPP` when there is none).
    pub fn report_vevent(
        &mut self,
        caller: &crate::context::Caller<'_>,
        dev_id: u32,
    ) -> Result<()> {
        match self.objects.device(dev_id)?.vevent_target {
            Some((viommu, virt_id)) if virt_id != 0 => {
                let event = (virt_id as u32).to_ne_bytes();
                let kind = softiommu_uapi::test_cmd::IOMMU_VEVENTQ_TYPE_SELFTEST;
                self.viommu_report_event(caller, viommu, kind, &event)
            }
            _ => Err(Errno::ENOENT),
        }
    }

    /// Attaching `dev_id` to `hwpt`: a nested HWPT made through a vIOMMU
    /// needs the device's vDEVICE in that vIOMMU (`ENOENT`, as the mock
    /// driver answers). Returns where the device's vIOMMU events will go.
    pub(crate) fn viommu_attach_check(&self, dev_id: u32, hwpt: u32) -> Result<Option<(u32, u64)>> {
        let Some(viommu) = self.objects.hwpt_nested(hwpt).ok().and_then(|n| n.viommu) else {
            return Ok(None);
        };
        let vdev = self
            .objects
            .device(dev_id)?
            .vdevice
            .and_then(|v| self.vdevice(v).ok())
            .filter(|v| v.viommu == viommu)
            .ok_or(Errno::ENOENT)?;
        Ok(Some((viommu, vdev.virt_id)))
    }
}

/// The mock driver's state of a vIOMMU: its region and HW queues exist only
/// for the selftest's vIOMMU type (`EOPNOTSUPP` for others).
fn mock_viommu(viommu: &mut Viommu) -> Result<&mut MockViommu> {
    viommu
        .driver_data
        .get_mut::<MockViommu>()
        .ok_or(Errno::EOPNOTSUPP)
}
