//! `VFIO_DEVICE_FEATURE` (Linux `vfio_ioctl_device_feature` and vfio-pci's
//! `vfio_pci_core_ioctl_feature`): the header's checks, then per feature
//! PROBE, GET or SET.
//!
//! What a function has: the VF token (a PF's, SET only, as Linux refuses
//! to reveal it) and runtime low power (`LOW_POWER_ENTRY`, `_WITH_WAKEUP`,
//! `_EXIT`; any later access through the file wakes the function and
//! signals the wake-up eventfd), and DMA-buf export of BAR ranges (`GET`
//! only; see [`super::dmabuf`]). Migration and DMA logging are `ENOTTY`
//! (no migration driver).
//!
//! Deviation: Linux also revokes the BAR mappings while the function is in
//! low power; here they stay usable.

use super::function::LowPower;
use super::{DeviceFile, VfioFds};
use crate::context::Caller;
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use softiommu_uapi::vfio::*;

/// Bytes of `struct vfio_device_feature` before `data`.
const HEAD: u64 = 8;

/// Linux `vfio_check_feature`: `Ok(false)` for a PROBE that passed,
/// `Ok(true)` to go on with GET or SET.
fn check(flags: u32, data_len: u64, supported: u32, minsz: u64) -> Result<bool> {
    if flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & !supported != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & VFIO_DEVICE_FEATURE_PROBE != 0 {
        return Ok(false);
    }
    if flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) == 0 || data_len < minsz {
        return Err(Errno::EINVAL);
    }
    Ok(true)
}

impl DeviceFile {
    /// `VFIO_DEVICE_FEATURE` on a bound file.
    pub(super) fn ioctl_feature(
        &mut self,
        caller: &Caller<'_>,
        arg: &Arg<'_>,
        fds: &dyn VfioFds,
    ) -> Result<()> {
        let mut head = [0u8; HEAD as usize];
        arg.read(caller, 0, &mut head)?;
        let argsz = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let flags = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
        if u64::from(argsz) < HEAD {
            return Err(Errno::EINVAL);
        }
        let known = VFIO_DEVICE_FEATURE_MASK
            | VFIO_DEVICE_FEATURE_GET
            | VFIO_DEVICE_FEATURE_SET
            | VFIO_DEVICE_FEATURE_PROBE;
        if flags & !known != 0 {
            return Err(Errno::EINVAL);
        }
        let get_and_set = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET;
        if flags & VFIO_DEVICE_FEATURE_PROBE == 0 && flags & get_and_set == get_and_set {
            return Err(Errno::EINVAL);
        }
        let data_len = u64::from(argsz) - HEAD;
        match flags & VFIO_DEVICE_FEATURE_MASK {
            VFIO_DEVICE_FEATURE_PCI_VF_TOKEN => {
                let token = self.function().locked().sriov.pf_token().cloned();
                let token = token.ok_or(Errno::ENOTTY)?;
                if check(flags, data_len, VFIO_DEVICE_FEATURE_SET, 16)? {
                    let mut uuid = [0u8; 16];
                    arg.read(caller, HEAD, &mut uuid)?;
                    token.locked().uuid = uuid;
                }
                Ok(())
            }
            VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY => {
                if check(flags, data_len, VFIO_DEVICE_FEATURE_SET, 0)? {
                    self.enter_low_power(LowPower { wakeup: None })?;
                }
                Ok(())
            }
            VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP => {
                if check(flags, data_len, VFIO_DEVICE_FEATURE_SET, 8)? {
                    let mut entry = [0u8; 8];
                    arg.read(caller, HEAD, &mut entry)?;
                    let fd = i32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]);
                    if fd < 0 {
                        return Err(Errno::EINVAL);
                    }
                    let wakeup = caller.files.eventfd(fd)?;
                    self.enter_low_power(LowPower {
                        wakeup: Some(wakeup),
                    })?;
                }
                Ok(())
            }
            VFIO_DEVICE_FEATURE_LOW_POWER_EXIT => {
                if check(flags, data_len, VFIO_DEVICE_FEATURE_SET, 0)? {
                    let mut function = self.function().locked();
                    function.low_power = None;
                    function.sync_dmabufs(false);
                }
                Ok(())
            }
            VFIO_DEVICE_FEATURE_DMA_BUF => {
                // The request's ranges are read beyond `argsz`, as Linux
                // reads `nr_ranges` of them whatever `argsz` says.
                if check(flags, data_len, VFIO_DEVICE_FEATURE_GET, 16)? {
                    self.export_dmabuf(caller, arg, HEAD, fds)?;
                }
                Ok(())
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    fn enter_low_power(&self, state: LowPower) -> Result<()> {
        let mut function = self.function().locked();
        if function.low_power.is_some() {
            return Err(Errno::EINVAL);
        }
        function.low_power = Some(state);
        function.revoke_dmabufs();
        Ok(())
    }

    /// An access through the file while the function is in low power
    /// resumes it (Linux's runtime resume): with a wake-up eventfd, that
    /// eventfd is signalled and low power ends; without one, the function
    /// stays allowed to re-enter it.
    pub(super) fn wake(&self) {
        let mut function = self.function().locked();
        let wakes = function
            .low_power
            .as_ref()
            .is_some_and(|lp| lp.wakeup.is_some());
        if wakes {
            if let Some(wakeup) = function.low_power.take().and_then(|lp| lp.wakeup) {
                wakeup.signal();
            }
        }
    }
}
