//! Devices and hardware page tables of a context (Linux `device.c` and
//! `hw_pagetable.c`): binding claims a device's DMA for the context; attaching
//! to an IOAS picks or makes an automatic paging HWPT whose domain mirrors the
//! IOAS; attaching to a HWPT uses it as it is. Every call that moves DMA
//! returns the [`Affected`] devices from the IOMMU core.
//!
//! Reference counts: a HWPT holds a user on its IOAS; each attached device
//! holds a user on its HWPT. An automatic HWPT is destroyed when its last
//! device leaves; a manual one only by `IOMMU_DESTROY`.

use crate::context::Context;
use crate::errno::{Errno, Result};
use crate::ioas::ReservedOwner;
use crate::object::{Device, Object, ObjectType};
use crate::sync::Locked;
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::{Affected, DeviceId, IommuCore};
use std::sync::MutexGuard;

impl Context {
    pub(crate) fn core(&self) -> MutexGuard<'_, IommuCore> {
        self.shared().iommu.locked()
    }

    /// What the driver of machine device `dev`'s IOMMU supports.
    pub(crate) fn driver_of(&self, dev: DeviceId) -> softiommu_iommu::DriverInfo {
        let core = self.core();
        core.topology()
            .iommu(core.topology().iommu_of(dev))
            .driver
            .clone()
    }

    /// The ops of the driver that made `domain` (`ENOENT` if it is gone).
    pub(crate) fn driver_ops_of_domain(
        &self,
        domain: softiommu_iommu::DomainId,
    ) -> Result<&'static dyn crate::driver::DriverOps> {
        let core = self.core();
        let iommu = core.domain(domain).ok_or(Errno::ENOENT)?.iommu;
        Ok(crate::driver::ops_for(&core.topology().iommu(iommu).driver))
    }

    /// Binds machine device `dev` for a kernel driver (VFIO's
    /// `iommufd_device_bind`): as [`device_bind`](Self::device_bind), and
    /// the driver holds the object, so `IOMMU_DESTROY` answers `EBUSY`
    /// until [`device_unbind_held`](Self::device_unbind_held).
    pub fn device_bind_held(&mut self, dev: DeviceId) -> Result<(u32, Affected)> {
        let (id, affected) = self.device_bind(dev)?;
        self.objects.add_user(id);
        Ok((id, affected))
    }

    /// Ends a driver's hold on device object `id` and destroys it (it must
    /// be detached); never fails.
    pub fn device_unbind_held(&mut self, id: u32) {
        self.objects.drop_user(id);
        let _ = self.destroy(id);
    }

    /// Binds machine device `dev` to this context (claims its DMA). Returns
    /// the device object id and the devices whose DMA moved (the whole group,
    /// onto the blocking domain, for the first device of a group).
    pub fn device_bind(&mut self, dev: DeviceId) -> Result<(u32, Affected)> {
        let owner = self.owner;
        let (affected, driver_data) = {
            let mut core = self.core();
            if (dev.0 as usize) >= core.topology().devices.len() {
                return Err(Errno::ENODEV);
            }
            let driver = &core.topology().iommu(core.topology().iommu_of(dev)).driver;
            if !driver.cache_coherency {
                return Err(Errno::EINVAL);
            }
            if !driver.isolated_msi {
                return Err(Errno::EPERM);
            }
            let driver_data = crate::driver::ops_for(driver).new_device_data();
            (core.claim(owner, dev)?, driver_data)
        };
        match self.shared().fail_nth.check().and_then(|()| {
            self.objects.insert(Object::Device(Box::new(Device {
                dev,
                attached: None,
                vdevice: None,
                vevent_target: None,
                pasids: Default::default(),
                driver_data,
            })))
        }) {
            Ok(id) => Ok((id, affected)),
            Err(e) => {
                let _ = self.core().release(owner, dev);
                Err(e)
            }
        }
    }

    pub(crate) fn destroy_device(&mut self, device: Device) {
        // Its vDEVICE goes with it; the vDEVICE's id stays taken, as in Linux.
        if let Some(vdev) = device.vdevice {
            if let Ok(Object::Vdevice(v)) = self.objects.remove_as_tombstone(vdev) {
                self.destroy_vdevice(*v);
            }
        }
        let owner = self.owner;
        for &hwpt in device.pasids.values() {
            self.objects.drop_user(hwpt);
        }
        if let Some((hwpt, ioas)) = device.attached {
            self.drop_attachment(device.dev, hwpt, ioas, None);
        }
        let _ = self.core().release(owner, device.dev);
    }

    /// Reserves a device's reserved regions in an IOAS (`EADDRINUSE` on conflict).
    fn reserve_device_regions(&mut self, dev_id: u32, dev: DeviceId, ioas: u32) -> Result<()> {
        let regions = self.core().topology().device(dev).reserved.clone();
        let iopt = self.ioas_mut(ioas)?;
        for r in regions {
            if r.kind == softiommu_iommu::ReservedType::DirectRelaxable || r.length == 0 {
                continue;
            }
            let last = r.start.saturating_add(r.length - 1);
            if let Err(e) = iopt.reserve(r.start, last, ReservedOwner::Device(dev_id)) {
                iopt.remove_reserved(ReservedOwner::Device(dev_id));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Attaches device `dev_id` to `pt_id`: an IOAS (an automatic HWPT is
    /// reused if one is compatible, else made) or a paging HWPT. Returns the
    /// HWPT id and the devices whose DMA moved.
    pub fn device_attach(&mut self, dev_id: u32, pt_id: u32) -> Result<(u32, Affected)> {
        let device = self.objects.device(dev_id)?;
        if device.attached.is_some() {
            return Err(Errno::EINVAL);
        }
        let dev = device.dev;
        match self.objects.kind(pt_id) {
            Some(ObjectType::HwptPaging | ObjectType::HwptNested) => {
                self.attach_hwpt(dev_id, dev, pt_id).map(|a| (pt_id, a))
            }
            Some(ObjectType::Ioas) => {
                // An automatic HWPT is never PASID-compatible.
                if !self.objects.device(dev_id)?.pasids.is_empty() {
                    return Err(Errno::EINVAL);
                }
                // Reuse an automatic HWPT of this IOAS that the device accepts.
                for hwpt in self.objects.ids_of(ObjectType::HwptPaging) {
                    let h = self.objects.hwpt_paging(hwpt)?;
                    if !h.auto || h.ioas != pt_id {
                        continue;
                    }
                    match self.attach_hwpt(dev_id, dev, hwpt) {
                        Err(Errno::EINVAL) => continue,
                        other => return other.map(|a| (hwpt, a)),
                    }
                }
                let hwpt = self.new_paging_hwpt(dev, pt_id, PagingFlags::default(), true, None)?;
                match self.attach_hwpt(dev_id, dev, hwpt) {
                    Ok(a) => Ok((hwpt, a)),
                    Err(e) => {
                        let _ = self.destroy(hwpt);
                        Err(e)
                    }
                }
            }
            Some(_) => Err(Errno::EINVAL),
            None => Err(Errno::ENOENT),
        }
    }

    fn attach_hwpt(&mut self, dev_id: u32, dev: DeviceId, hwpt: u32) -> Result<Affected> {
        self.rid_pasid_compat(dev_id, hwpt)?;
        let (domain, ioas) = self.hwpt_target(hwpt)?;
        let vevent_target = self.viommu_attach_check(dev_id, hwpt)?;
        let owner = self.owner;
        let affected = self.core().attach(owner, dev, domain)?;
        if let Err(e) = self.reserve_device_regions(dev_id, dev, ioas) {
            let _ = self.core().detach(owner, dev);
            return Err(e);
        }
        self.objects.add_user(hwpt);
        let device = self.objects.device_mut(dev_id)?;
        device.attached = Some((hwpt, ioas));
        device.vevent_target = vevent_target;
        Ok(affected)
    }

    /// Undoes an attachment's bookkeeping; with `core_affected` the core detach
    /// result is stored there.
    fn drop_attachment(
        &mut self,
        dev: DeviceId,
        hwpt: u32,
        ioas: u32,
        core_affected: Option<&mut Affected>,
    ) {
        let owner = self.owner;
        let affected = self.core().detach(owner, dev).unwrap_or_default();
        if let Some(out) = core_affected {
            *out = affected;
        }
        self.release_hwpt_user(hwpt, ioas);
    }

    /// Drops a device's hold on a HWPT; an automatic HWPT goes with its last device.
    fn release_hwpt_user(&mut self, hwpt: u32, ioas: u32) {
        // Device regions were reserved per device; the callers remove them.
        let _ = ioas;
        self.objects.drop_user(hwpt);
        let auto = self
            .objects
            .hwpt_paging(hwpt)
            .map(|h| h.auto)
            .unwrap_or(false);
        if auto && self.objects.users(hwpt) == Some(1) {
            let _ = self.destroy(hwpt);
        }
    }

    /// Detaches device `dev_id`. A device that is not attached is left as it
    /// is, whatever its group: `Ok` with nothing affected.
    pub fn device_detach(&mut self, dev_id: u32) -> Result<Affected> {
        let device = self.objects.device(dev_id)?;
        let dev = device.dev;
        let Some((hwpt, ioas)) = device.attached else {
            return Ok(Affected::default());
        };
        if let Ok(t) = self.ioas_mut(ioas) {
            t.remove_reserved(ReservedOwner::Device(dev_id));
        }
        self.objects.device_mut(dev_id)?.attached = None;
        let mut affected = Affected::default();
        self.drop_attachment(dev, hwpt, ioas, Some(&mut affected));
        Ok(affected)
    }

    /// Moves attached device `dev_id` (and its group) to `pt_id` in one step.
    pub fn device_replace(&mut self, dev_id: u32, pt_id: u32) -> Result<(u32, Affected)> {
        let device = self.objects.device(dev_id)?;
        let dev = device.dev;
        let Some((old_hwpt, old_ioas)) = device.attached else {
            return Err(Errno::EINVAL);
        };
        let target = match self.objects.kind(pt_id) {
            Some(ObjectType::HwptPaging | ObjectType::HwptNested) => pt_id,
            Some(ObjectType::Ioas) => {
                if old_ioas == pt_id && self.objects.hwpt_paging(old_hwpt).is_ok_and(|h| h.auto) {
                    return Ok((old_hwpt, Affected::default()));
                }
                // An automatic HWPT is never PASID-compatible.
                if !self.objects.device(dev_id)?.pasids.is_empty() {
                    return Err(Errno::EINVAL);
                }
                self.new_paging_hwpt(dev, pt_id, PagingFlags::default(), true, None)?
            }
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        };
        if target == old_hwpt {
            return Ok((target, Affected::default()));
        }
        self.rid_pasid_compat(dev_id, target)?;
        let (domain, new_ioas) = self.hwpt_target(target)?;
        let made_auto = self.objects.hwpt_paging(target).is_ok_and(|h| h.auto)
            && self.objects.users(target) == Some(1);
        let cleanup = |ctx: &mut Context| {
            if made_auto {
                let _ = ctx.destroy(target);
            }
        };
        let vevent_target = match self.viommu_attach_check(dev_id, target) {
            Ok(t) => t,
            Err(e) => {
                cleanup(self);
                return Err(e);
            }
        };
        if new_ioas != old_ioas {
            if let Err(e) = self.reserve_device_regions(dev_id, dev, new_ioas) {
                cleanup(self);
                return Err(e);
            }
        }
        let owner = self.owner;
        let replaced = self.core().replace(owner, dev, domain);
        let affected = match replaced {
            Ok(a) => a,
            Err(e) => {
                if new_ioas != old_ioas {
                    if let Ok(t) = self.ioas_mut(new_ioas) {
                        t.remove_reserved(ReservedOwner::Device(dev_id));
                    }
                }
                cleanup(self);
                return Err(e);
            }
        };
        if new_ioas != old_ioas {
            if let Ok(t) = self.ioas_mut(old_ioas) {
                t.remove_reserved(ReservedOwner::Device(dev_id));
            }
        }
        self.objects.add_user(target);
        let device = self.objects.device_mut(dev_id)?;
        device.attached = Some((target, new_ioas));
        device.vevent_target = vevent_target;
        self.release_hwpt_user(old_hwpt, old_ioas);
        Ok((target, affected))
    }
}
