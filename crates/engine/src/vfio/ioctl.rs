//! Decoding the device file's ioctls with vfio's `argsz` rules: the fixed
//! part (up to each struct's `minsz`) is read first (`EFAULT`), `argsz`
//! below `minsz` is `EINVAL`, and only `min(argsz, struct)` bytes go back.

use super::irqs::IrqData;
use super::{DeviceFile, VfioFds};
use crate::context::Caller;
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use softiommu_uapi::vfio::*;
use std::mem::{offset_of, size_of};
use zerocopy::{FromBytes, IntoBytes};

/// Reads the first `minsz` bytes of a `T` from the argument.
fn read_head<T: FromBytes + IntoBytes>(
    caller: &Caller<'_>,
    arg: &Arg<'_>,
    minsz: usize,
) -> Result<T> {
    let mut value = T::new_zeroed();
    arg.read(caller, 0, &mut value.as_mut_bytes()[..minsz])?;
    Ok(value)
}

/// Writes the first `n` bytes of `value` back.
fn write_head<T: IntoBytes + zerocopy::Immutable>(
    caller: &Caller<'_>,
    arg: &mut Arg<'_>,
    value: &T,
    n: usize,
) -> Result<()> {
    arg.write(caller, 0, &value.as_bytes()[..n])
}

impl DeviceFile {
    /// One ioctl on the device file (Linux `vfio_device_fops_unl_ioctl`).
    /// `fds` finds what the caller's descriptor numbers open. Unknown
    /// requests are `ENOTTY`.
    pub fn ioctl(
        &mut self,
        caller: &Caller<'_>,
        request: u32,
        mut arg: Arg<'_>,
        fds: &dyn VfioFds,
    ) -> Result<i64> {
        if request == VFIO_DEVICE_BIND_IOMMUFD {
            return self.ioctl_bind(caller, &mut arg, fds).map(|()| 0);
        }
        if !self.bound() {
            return Err(Errno::EINVAL);
        }
        self.wake();
        match request {
            // The cdev-only ioctls; a group's device file does not know them.
            VFIO_DEVICE_ATTACH_IOMMUFD_PT if !self.via_group() => {
                self.ioctl_attach(caller, &mut arg)
            }
            VFIO_DEVICE_DETACH_IOMMUFD_PT if !self.via_group() => self.ioctl_detach(caller, &arg),
            VFIO_DEVICE_GET_INFO => self.ioctl_info(caller, &mut arg),
            VFIO_DEVICE_GET_REGION_INFO => self.ioctl_region_info(caller, &mut arg),
            VFIO_DEVICE_GET_IRQ_INFO => self.ioctl_irq_info(caller, &mut arg),
            VFIO_DEVICE_SET_IRQS => self.ioctl_set_irqs(caller, &arg),
            VFIO_DEVICE_RESET => {
                let mut function = self.function().locked();
                if !function.reset_works() {
                    return Err(Errno::EINVAL);
                }
                function.reset();
                Ok(())
            }
            VFIO_DEVICE_GET_PCI_HOT_RESET_INFO => self.ioctl_hot_reset_info(caller, &mut arg),
            VFIO_DEVICE_PCI_HOT_RESET => self.ioctl_hot_reset(caller, &arg, fds),
            VFIO_DEVICE_FEATURE => self.ioctl_feature(caller, &arg, fds),
            _ => Err(Errno::ENOTTY),
        }
        .map(|()| 0)
    }

    fn ioctl_bind(
        &mut self,
        caller: &Caller<'_>,
        arg: &mut Arg<'_>,
        fds: &dyn VfioFds,
    ) -> Result<()> {
        let minsz = offset_of!(VfioDeviceBindIommufd, out_devid) + 4;
        let size = size_of::<VfioDeviceBindIommufd>();
        let argsz: u32 = read_head(caller, arg, 4)?;
        if (argsz as usize) < minsz {
            return Err(Errno::EINVAL);
        }
        // copy_struct_from_user: zero-extended, a longer tail must be zero.
        let bind: VfioDeviceBindIommufd = read_head(caller, arg, (argsz as usize).min(size))?;
        arg.check_zero_tail(caller, size as u64, u64::from(argsz))?;
        if bind.iommufd < 0 || bind.flags & !VFIO_DEVICE_BIND_FLAG_TOKEN != 0 {
            return Err(Errno::EINVAL);
        }
        // Only cdev files bind; a second bind of one is refused.
        if self.via_group() || self.bound() {
            return Err(Errno::EINVAL);
        }
        let token = if bind.flags & VFIO_DEVICE_BIND_FLAG_TOKEN != 0 {
            let mut uuid = [0u8; 16];
            caller.mem.read(bind.token_uuid_ptr, &mut uuid)?;
            Some(uuid)
        } else {
            None
        };
        self.function().locked().sriov.match_token(token.as_ref())?;
        let ctx = fds.iommufd(bind.iommufd)?;
        let (dev_id, _) = self.bind(ctx)?;
        if let Err(e) = arg.write(
            caller,
            offset_of!(VfioDeviceBindIommufd, out_devid) as u64,
            &dev_id.to_ne_bytes(),
        ) {
            self.release();
            return Err(e);
        }
        Ok(())
    }

    fn ioctl_attach(&mut self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let minsz = offset_of!(VfioDeviceAttachIommufdPt, pt_id) + 4;
        let mut attach: VfioDeviceAttachIommufdPt = read_head(caller, arg, minsz)?;
        if (attach.argsz as usize) < minsz || attach.flags & !VFIO_DEVICE_ATTACH_PASID != 0 {
            return Err(Errno::EINVAL);
        }
        if attach.flags & VFIO_DEVICE_ATTACH_PASID != 0 {
            let xend = size_of::<VfioDeviceAttachIommufdPt>();
            if (attach.argsz as usize) < xend {
                return Err(Errno::EINVAL);
            }
            attach = read_head(caller, arg, xend)?;
            attach.pt_id = self.attach_pasid(attach.pasid, attach.pt_id)?;
        } else {
            attach.pt_id = self.attach(attach.pt_id)?.0;
        }
        let at = offset_of!(VfioDeviceAttachIommufdPt, pt_id) as u64;
        if let Err(e) = arg.write(caller, at, &attach.pt_id.to_ne_bytes()) {
            if attach.flags & VFIO_DEVICE_ATTACH_PASID != 0 {
                let _ = self.detach_pasid(attach.pasid);
            } else {
                let _ = self.detach();
            }
            return Err(e);
        }
        Ok(())
    }

    fn ioctl_detach(&mut self, caller: &Caller<'_>, arg: &Arg<'_>) -> Result<()> {
        let minsz = offset_of!(VfioDeviceDetachIommufdPt, flags) + 4;
        let detach: VfioDeviceDetachIommufdPt = read_head(caller, arg, minsz)?;
        if (detach.argsz as usize) < minsz || detach.flags & !VFIO_DEVICE_DETACH_PASID != 0 {
            return Err(Errno::EINVAL);
        }
        if detach.flags & VFIO_DEVICE_DETACH_PASID != 0 {
            let xend = size_of::<VfioDeviceDetachIommufdPt>();
            if (detach.argsz as usize) < xend {
                return Err(Errno::EINVAL);
            }
            let detach: VfioDeviceDetachIommufdPt = read_head(caller, arg, xend)?;
            return self.detach_pasid(detach.pasid);
        }
        self.detach().map(|_| ())
    }

    fn ioctl_info(&self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let minsz = offset_of!(VfioDeviceInfo, num_irqs) + 4;
        let mut info: VfioDeviceInfo = read_head(caller, arg, minsz)?;
        if (info.argsz as usize) < minsz {
            return Err(Errno::EINVAL);
        }
        let n = (info.argsz as usize).min(size_of::<VfioDeviceInfo>());
        let reset = self.function().locked().reset_works();
        info.flags = VFIO_DEVICE_FLAGS_PCI | if reset { VFIO_DEVICE_FLAGS_RESET } else { 0 };
        info.num_regions = VFIO_PCI_NUM_REGIONS;
        info.num_irqs = VFIO_PCI_NUM_IRQS;
        info.cap_offset = 0;
        write_head(caller, arg, &info, n)
    }

    fn ioctl_region_info(&self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let minsz = size_of::<VfioRegionInfo>();
        let mut info: VfioRegionInfo = read_head(caller, arg, minsz)?;
        if (info.argsz as usize) < minsz {
            return Err(Errno::EINVAL);
        }
        let function = self.function().locked();
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        info.offset = u64::from(info.index) << VFIO_PCI_OFFSET_SHIFT;
        info.cap_offset = 0;
        let mut caps = false;
        match info.index {
            0..=5 => {
                info.size = function.bar_size(info.index);
                info.flags = if info.size == 0 { 0 } else { rw };
                if info.size != 0 && function.bar_mmap(info.index) {
                    info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                    // The MSI-X table may be mapped too (x86 keeps it safe
                    // through interrupt remapping): vfio-pci says so with a
                    // capability.
                    let msix_bar = function.spec().msix.map(|m| u32::from(m.table_bar));
                    if msix_bar == Some(info.index) {
                        caps = true;
                    }
                }
            }
            VFIO_PCI_ROM_REGION_INDEX => {
                info.size = 0;
                info.flags = 0;
            }
            VFIO_PCI_CONFIG_REGION_INDEX => {
                info.size = function.config.len() as u64;
                info.flags = rw;
            }
            // No VGA, and no device-specific regions.
            _ => return Err(Errno::EINVAL),
        }
        drop(function);
        if caps {
            // One capability, right after the struct when it fits.
            let cap = VfioInfoCapHeader {
                id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
                version: 1,
                next: 0,
            };
            let needed = (minsz + size_of::<VfioInfoCapHeader>()) as u32;
            info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
            if info.argsz < needed {
                info.argsz = needed;
            } else {
                arg.write(caller, minsz as u64, zerocopy::IntoBytes::as_bytes(&cap))?;
                info.cap_offset = minsz as u32;
            }
        }
        write_head(caller, arg, &info, minsz)
    }

    fn ioctl_irq_info(&self, caller: &Caller<'_>, arg: &mut Arg<'_>) -> Result<()> {
        let minsz = size_of::<VfioIrqInfo>();
        let mut info: VfioIrqInfo = read_head(caller, arg, minsz)?;
        if (info.argsz as usize) < minsz || info.index >= VFIO_PCI_NUM_IRQS {
            return Err(Errno::EINVAL);
        }
        let function = self.function().locked();
        if info.index == VFIO_PCI_ERR_IRQ_INDEX && !function.spec().pcie {
            return Err(Errno::EINVAL);
        }
        info.flags = VFIO_IRQ_INFO_EVENTFD;
        info.count = function.irq_count(info.index);
        match info.index {
            VFIO_PCI_INTX_IRQ_INDEX => {
                info.flags |= VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            }
            // x86 allocates MSI-X vectors dynamically, so only MSI-X resizes.
            VFIO_PCI_MSIX_IRQ_INDEX => {}
            _ => info.flags |= VFIO_IRQ_INFO_NORESIZE,
        }
        drop(function);
        write_head(caller, arg, &info, minsz)
    }

    fn ioctl_set_irqs(&self, caller: &Caller<'_>, arg: &Arg<'_>) -> Result<()> {
        let minsz = size_of::<VfioIrqSet>();
        let hdr: VfioIrqSet = read_head(caller, arg, minsz)?;
        let mut function = self.function().locked();
        let max = function.irq_count(hdr.index);
        if (hdr.argsz as usize) < minsz
            || hdr.index >= VFIO_PCI_NUM_IRQS
            || hdr.count >= u32::MAX - hdr.start
            || hdr.flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
        {
            return Err(Errno::EINVAL);
        }
        if hdr.start >= max || hdr.start + hdr.count > max {
            return Err(Errno::EINVAL);
        }
        let item = match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return Err(Errno::EINVAL),
        };
        // `count` is below the function's vector count, so this is small.
        let data_len = hdr.count as usize * item;
        if (hdr.argsz as usize - minsz) < data_len {
            return Err(Errno::EINVAL);
        }
        let mut bytes = vec![0u8; data_len];
        arg.read(caller, minsz as u64, &mut bytes)?;
        let fds: Vec<i32> = bytes
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let data = match item {
            0 => IrqData::None,
            1 => IrqData::Bool(&bytes),
            _ => IrqData::Eventfd(&fds),
        };
        let action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        function.set_irqs(caller.files, action, hdr.index, hdr.start, hdr.count, data)?;
        function.sync_msix_enable();
        drop(function);
        super::irqs::watch_unmask(self.function());
        Ok(())
    }
}
