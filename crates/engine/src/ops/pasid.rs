//! PASID attachments (Linux `iommufd_device_attach` / `_replace` /
//! `_detach` with a PASID): a device with PASID support translates each
//! PASID's DMA through its own HWPT, beside the HWPT its RID (requests
//! without a PASID) uses.
//!
//! Rules, as Linux has them: only HWPTs (paging or nested) attach to a
//! PASID, never an IOAS (`EINVAL`: automatic domains have no PASID form); the
//! PASID must be below the device's PASID width (`EINVAL`, so any PASID of a
//! device without PASID support); attaching an attached PASID is `EBUSY`
//! (use replace), replacing an unattached one `EINVAL`. A HWPT is
//! PASID-compatible when made with `IOMMU_HWPT_ALLOC_PASID`: a PASID only
//! attaches to such HWPTs, and only while the RID's HWPT (if any) is one; and
//! while any PASID is attached, the RID only attaches to such HWPTs
//! (`EINVAL`).
//!
//! The driver installs each domain (`DriverOps::set_dev_pasid`); the mock
//! driver keeps its fault injection there: the first attach of PASID 1024
//! arms a failure that the next change of its domain consumes (`ENOMEM`,
//! the old HWPT staying), and detaching disarms it.

use crate::context::Context;
use crate::errno::{Errno, Result};
use crate::object::{Object, ObjectType};

impl Context {
    /// Whether `hwpt` was made PASID-compatible.
    fn hwpt_pasid_compat(&self, hwpt: u32) -> bool {
        match self.objects.get(hwpt) {
            Some(Object::HwptPaging(h)) => h.pasid_compat,
            Some(Object::HwptNested(h)) => h.pasid_compat,
            _ => false,
        }
    }

    /// Marks `hwpt` as made with `IOMMU_HWPT_ALLOC_PASID`.
    pub(crate) fn set_pasid_compat(&mut self, hwpt: u32) {
        match self.objects.get_mut(hwpt) {
            Some(Object::HwptPaging(h)) => h.pasid_compat = true,
            Some(Object::HwptNested(h)) => h.pasid_compat = true,
            _ => {}
        }
    }

    /// The RID of `dev_id` may move to `hwpt`: not to a PASID-incompatible
    /// HWPT while PASIDs are attached (`EINVAL`).
    pub(crate) fn rid_pasid_compat(&self, dev_id: u32, hwpt: u32) -> Result<()> {
        if !self.objects.device(dev_id)?.pasids.is_empty() && !self.hwpt_pasid_compat(hwpt) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// The HWPT a PASID may use: `pt_id` must name one (`ENOENT` for no
    /// object, `EINVAL` for an IOAS or anything else), below the device's
    /// PASID width (`EINVAL`).
    fn pasid_target(&self, dev_id: u32, pasid: u32, pt_id: u32) -> Result<u32> {
        let dev = self.objects.device(dev_id)?.dev;
        match self.objects.kind(pt_id) {
            Some(ObjectType::HwptPaging | ObjectType::HwptNested) => {}
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        }
        let width = {
            let core = self.core();
            core.topology()
                .iommu(core.topology().iommu_of(dev))
                .driver
                .max_pasid_log2
        };
        if pasid == 0 || width == 0 || u64::from(pasid) >= 1u64 << width {
            return Err(Errno::EINVAL);
        }
        Ok(pt_id)
    }

    /// `hwpt` may serve a PASID of `dev_id`: it and the RID's HWPT are
    /// PASID-compatible (`EINVAL`).
    fn pasid_compat(&self, dev_id: u32, hwpt: u32) -> Result<()> {
        let rid = self.objects.device(dev_id)?.attached.map(|(h, _)| h);
        if !self.hwpt_pasid_compat(hwpt) || rid.is_some_and(|h| !self.hwpt_pasid_compat(h)) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// The device's driver installs a domain on `pasid`.
    fn set_dev_pasid(&mut self, dev_id: u32, pasid: u32) -> Result<()> {
        let ops = crate::driver::ops_for(&self.driver_of(self.objects.device(dev_id)?.dev));
        ops.set_dev_pasid(self.objects.device_mut(dev_id)?, pasid)
    }

    /// Attaches HWPT `pt_id` to `pasid` of device `dev_id`.
    pub fn pasid_attach(&mut self, dev_id: u32, pasid: u32, pt_id: u32) -> Result<u32> {
        let hwpt = self.pasid_target(dev_id, pasid, pt_id)?;
        if self.objects.device(dev_id)?.pasids.contains_key(&pasid) {
            return Err(Errno::EBUSY);
        }
        self.pasid_compat(dev_id, hwpt)?;
        self.shared().fail_nth.check()?;
        self.set_dev_pasid(dev_id, pasid)?;
        self.objects.device_mut(dev_id)?.pasids.insert(pasid, hwpt);
        self.objects.add_user(hwpt);
        Ok(hwpt)
    }

    /// Moves `pasid` of device `dev_id` to HWPT `pt_id` without passing
    /// through a blocked state; on failure the old HWPT stays.
    pub fn pasid_replace(&mut self, dev_id: u32, pasid: u32, pt_id: u32) -> Result<u32> {
        let hwpt = self.pasid_target(dev_id, pasid, pt_id)?;
        let Some(&old) = self.objects.device(dev_id)?.pasids.get(&pasid) else {
            return Err(Errno::EINVAL);
        };
        if old == hwpt {
            return Ok(hwpt);
        }
        self.pasid_compat(dev_id, hwpt)?;
        self.shared().fail_nth.check()?;
        self.set_dev_pasid(dev_id, pasid)?;
        self.objects.device_mut(dev_id)?.pasids.insert(pasid, hwpt);
        self.objects.add_user(hwpt);
        self.objects.drop_user(old);
        Ok(hwpt)
    }

    /// Detaches `pasid` of device `dev_id`; nothing happens if it is not
    /// attached.
    pub fn pasid_detach(&mut self, dev_id: u32, pasid: u32) -> Result<()> {
        let ops = crate::driver::ops_for(&self.driver_of(self.objects.device(dev_id)?.dev));
        let device = self.objects.device_mut(dev_id)?;
        if let Some(old) = device.pasids.remove(&pasid) {
            ops.remove_dev_pasid(device, pasid);
            self.objects.drop_user(old);
        }
        Ok(())
    }

    /// The HWPT attached to `pasid` of device `dev_id`.
    pub fn pasid_hwpt(&self, dev_id: u32, pasid: u32) -> Result<Option<u32>> {
        Ok(self.objects.device(dev_id)?.pasids.get(&pasid).copied())
    }
}
