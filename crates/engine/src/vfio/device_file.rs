//! One open of a VFIO device file (Linux `vfio_device_file` with
//! `device_cdev.c` and vfio-pci's `iommufd` ops).

use super::{Function, HostState, SharedContext};
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use softiommu_iommu::Affected;
use softiommu_uapi::vfio::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// A device file. Invariant: while `binding` is set, its context holds a
/// device object for the function that only this file may destroy.
#[derive(Debug)]
pub struct DeviceFile {
    function: Arc<Mutex<Function>>,
    binding: Option<Binding>,
    /// Opened through its group's `VFIO_GROUP_GET_DEVICE_FD`: born bound
    /// and attached to the container's compatibility IOAS; the cdev-only
    /// ioctls are not its.
    via_group: bool,
    pub(super) host: Arc<HostState>,
}

/// The iommufd context a device file is bound to.
#[derive(Debug)]
struct Binding {
    ctx: SharedContext,
    /// The device object in `ctx` (Linux `devid`).
    dev_id: u32,
    /// Attached to an IOAS or HWPT (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`).
    attached: bool,
    /// PASIDs this file attached (Linux keeps them in `vdev->pasids`).
    pasids: BTreeSet<u32>,
    /// For a VF: its PF's token, whose users this binding counts in.
    vf_user: Option<Arc<Mutex<super::VfToken>>>,
}

impl Binding {
    fn new(ctx: SharedContext, dev_id: u32, attached: bool, function: &Function) -> Self {
        let vf_user = function.sriov.vf_token().cloned();
        if let Some(token) = &vf_user {
            token.locked().users += 1;
        }
        Binding {
            ctx,
            dev_id,
            attached,
            pasids: BTreeSet::new(),
            vf_user,
        }
    }
}

impl Drop for Binding {
    fn drop(&mut self) {
        if let Some(token) = &self.vf_user {
            token.locked().users -= 1;
        }
    }
}

impl DeviceFile {
    /// An unbound file on `function`: `ENODEV` for a VF its PF removed.
    pub(super) fn new(function: Arc<Mutex<Function>>, host: Arc<HostState>) -> Result<Self> {
        {
            let mut f = function.locked();
            if f.removed {
                return Err(Errno::ENODEV);
            }
            f.open_files += 1;
        }
        Ok(DeviceFile {
            function,
            binding: None,
            via_group: false,
            host,
        })
    }

    /// A file opened through its group: bound to the container's context
    /// and attached to its compatibility IOAS (`ENODEV` when the container
    /// has none, as Linux's `iommufd_vfio_compat_ioas_get_id`). `token` is
    /// the VF token the name carried, checked first.
    pub(super) fn open_via_group(
        function: Arc<Mutex<Function>>,
        host: Arc<HostState>,
        ctx: SharedContext,
        token: Option<&[u8; 16]>,
    ) -> Result<Self> {
        let dev = {
            let f = function.locked();
            if f.removed {
                return Err(Errno::ENODEV);
            }
            f.sriov.match_token(token)?;
            f.dev
        };
        let dev_id = {
            let mut c = ctx.locked();
            let ioas = c.compat_ioas()?;
            let (dev_id, _) = c.device_bind_held(dev)?;
            if let Err(e) = c.device_attach(dev_id, ioas) {
                c.device_unbind_held(dev_id);
                return Err(e);
            }
            dev_id
        };
        let binding = Binding::new(ctx.clone(), dev_id, true, &function.locked());
        {
            let mut f = function.locked();
            f.open_files += 1;
            f.dma_port = Some((ctx, dev_id));
        }
        let file = DeviceFile {
            function,
            binding: Some(binding),
            via_group: true,
            host,
        };
        // On failure the file drops, which unbinds it.
        super::model::start_runner(&file.function)?;
        Ok(file)
    }

    /// Opened through a group file rather than the device's cdev.
    pub fn via_group(&self) -> bool {
        self.via_group
    }

    /// The function this file opens.
    pub fn function(&self) -> &Arc<Mutex<Function>> {
        &self.function
    }

    /// The device object id in the bound context, once bound.
    pub fn dev_id(&self) -> Option<u32> {
        self.binding.as_ref().map(|b| b.dev_id)
    }

    /// Binds to context `ctx` (`VFIO_DEVICE_BIND_IOMMUFD` after its
    /// argument checks): the context claims the function's DMA (its group
    /// leaves the default domain) and gains a device object, which
    /// `IOMMU_DESTROY` cannot remove. A second bind of this file is
    /// `EINVAL`. Returns the device object id and the devices whose DMA
    /// moved.
    pub fn bind(&mut self, ctx: SharedContext) -> Result<(u32, Affected)> {
        if self.binding.is_some() || self.via_group {
            return Err(Errno::EINVAL);
        }
        let (dev, group) = {
            let f = self.function.locked();
            (f.dev, f.group)
        };
        // A cdev bind blocks the group file (Linux `vfio_device_block_group`).
        {
            let mut use_ = self.host.groups.locked();
            if use_.open.contains(&group) {
                return Err(Errno::EBUSY);
            }
            *use_.cdev_bound.entry(group).or_default() += 1;
        }
        let bound = ctx.locked().device_bind_held(dev);
        let (dev_id, affected) = match bound {
            Ok(b) => b,
            Err(e) => {
                self.unblock_group(group);
                return Err(e);
            }
        };
        {
            let mut f = self.function.locked();
            self.binding = Some(Binding::new(ctx.clone(), dev_id, false, &f));
            f.dma_port = Some((ctx, dev_id));
        }
        if let Err(e) = super::model::start_runner(&self.function) {
            self.release();
            return Err(e);
        }
        Ok((dev_id, affected))
    }

    /// Attaches to IOAS or HWPT `pt_id`, replacing any attachment as
    /// vfio-pci does (`iommufd_device_replace`). Returns the HWPT.
    pub fn attach(&mut self, pt_id: u32) -> Result<(u32, Affected)> {
        let b = self.binding.as_mut().ok_or(Errno::EINVAL)?;
        let mut ctx = b.ctx.locked();
        let outcome = if b.attached {
            ctx.device_replace(b.dev_id, pt_id)
        } else {
            ctx.device_attach(b.dev_id, pt_id)
        };
        drop(ctx);
        if outcome.is_ok() {
            b.attached = true;
        }
        outcome
    }

    /// Detaches; a file that is not attached stays as it is.
    pub fn detach(&mut self) -> Result<Affected> {
        let b = self.binding.as_mut().ok_or(Errno::EINVAL)?;
        if !b.attached {
            return Ok(Affected::default());
        }
        let affected = b.ctx.locked().device_detach(b.dev_id)?;
        b.attached = false;
        Ok(affected)
    }

    /// Attaches `pasid` to HWPT `pt_id`, replacing its HWPT when this file
    /// attached it before. Returns the HWPT.
    pub fn attach_pasid(&mut self, pasid: u32, pt_id: u32) -> Result<u32> {
        let b = self.binding.as_mut().ok_or(Errno::EINVAL)?;
        let mut ctx = b.ctx.locked();
        if b.pasids.contains(&pasid) {
            return ctx.pasid_replace(b.dev_id, pasid, pt_id);
        }
        let hwpt = ctx.pasid_attach(b.dev_id, pasid, pt_id)?;
        b.pasids.insert(pasid);
        Ok(hwpt)
    }

    /// Detaches `pasid`; one this file did not attach stays as it is.
    pub fn detach_pasid(&mut self, pasid: u32) -> Result<()> {
        let b = self.binding.as_mut().ok_or(Errno::EINVAL)?;
        if b.pasids.remove(&pasid) {
            b.ctx.locked().pasid_detach(b.dev_id, pasid)?;
        }
        Ok(())
    }

    /// Unbinds (the file's close): detaches, removes the device object and
    /// gives the function's DMA back. Never fails; a second call does
    /// nothing.
    pub fn release(&mut self) {
        if let Some(b) = self.binding.take() {
            // The device's DMA stops before its device object goes.
            self.function.locked().dma_port = None;
            let mut ctx = b.ctx.locked();
            for &pasid in &b.pasids {
                let _ = ctx.pasid_detach(b.dev_id, pasid);
            }
            if b.attached {
                let _ = ctx.device_detach(b.dev_id);
            }
            ctx.device_unbind_held(b.dev_id);
            drop(ctx);
            let group = {
                let mut f = self.function.locked();
                f.reset_irqs();
                // Linux `vfio_pci_core_close_device`: its dma-bufs die.
                f.close_dmabufs();
                f.group
            };
            if !self.via_group {
                self.unblock_group(group);
            }
        }
    }

    /// Ends this file's cdev hold on its group.
    fn unblock_group(&self, group: softiommu_iommu::GroupId) {
        let mut use_ = self.host.groups.locked();
        if let Some(n) = use_.cdev_bound.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                use_.cdev_bound.remove(&group);
            }
        }
    }

    /// Reads region bytes at file offset `offset` (region index in the bits
    /// from [`VFIO_PCI_OFFSET_SHIFT`] up, as vfio-pci lays them out):
    /// `EINVAL` unbound, for an unknown region or past its end.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.binding.as_ref().ok_or(Errno::EINVAL)?;
        self.wake();
        let (index, at) = split_offset(offset);
        let function = self.function.locked();
        match index {
            0..=5 => function.bar_read(index, at, buf)?,
            VFIO_PCI_CONFIG_REGION_INDEX => {
                function.config.read(at, buf).map_err(|_| Errno::EINVAL)?
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(buf.len())
    }

    /// Writes region bytes at file offset `offset`, as [`read`](Self::read).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<usize> {
        self.binding.as_ref().ok_or(Errno::EINVAL)?;
        self.wake();
        let (index, at) = split_offset(offset);
        let mut function = self.function.locked();
        match index {
            0..=5 => function.region_write(index, at, data)?,
            VFIO_PCI_CONFIG_REGION_INDEX => {
                function.config_write(at, data)?;
                // A write that reset the function (FLR) resets its model too.
                if function.config.resets() != function.model_resets {
                    function.reset_model();
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(data.len())
    }

    pub(super) fn bound(&self) -> bool {
        self.binding.is_some()
    }

    /// The context this file is bound to, once bound.
    pub(super) fn bound_context(&self) -> Option<&SharedContext> {
        self.binding.as_ref().map(|b| &b.ctx)
    }
}

impl Drop for DeviceFile {
    fn drop(&mut self) {
        self.release();
        self.function.locked().open_files -= 1;
    }
}

/// A file offset's region index and offset inside the region.
fn split_offset(offset: u64) -> (u32, u64) {
    let index = offset >> VFIO_PCI_OFFSET_SHIFT;
    let at = offset & ((1 << VFIO_PCI_OFFSET_SHIFT) - 1);
    (u32::try_from(index).unwrap_or(u32::MAX), at)
}
