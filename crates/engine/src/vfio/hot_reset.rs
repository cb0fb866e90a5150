//! PCI hot reset through a device file (vfio-pci's
//! `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` and `VFIO_DEVICE_PCI_HOT_RESET`).
//!
//! The machine has no hot-plug slots, so a hot reset is a secondary bus
//! reset: it resets every function on the device's bus. A root bus (number
//! 0) has no bridge above it to do that: `ENODEV`, as Linux's
//! `pci_probe_reset_bus` answers. The reset runs only when every function
//! on the bus is VFIO's (Linux's dev_set) and the caller owns each one:
//! through its iommufd context for a cdev-opened file (bound there, or its
//! group is), through the group files it passes otherwise.

use super::{DeviceFile, VfioFds};
use crate::context::{Caller, Context};
use crate::dispatch::Arg;
use crate::errno::{Errno, Result};
use crate::object::ObjectType;
use crate::sync::Locked;
use softiommu_iommu::{DeviceId, GroupId, Topology};
use softiommu_uapi::vfio::*;
use std::mem::size_of;
use zerocopy::{FromZeros, IntoBytes};

/// Bytes of the fixed part of both requests (`offsetofend(count)`).
const HEAD: usize = size_of::<VfioPciHotResetHead>();

/// A function's address on its PCI segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BusAddress {
    segment: u16,
    bus: u8,
    devfn: u8,
}

impl BusAddress {
    /// The address a `ssss:bb:dd.f` device name gives, if it is one.
    fn parse(name: &str) -> Option<Self> {
        fn hex(text: &str, digits: usize) -> Option<u32> {
            if text.len() != digits || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(text, 16).ok()
        }
        let (segment, rest) = name.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        let (slot, function) = (hex(slot, 2)?, hex(function, 1)?);
        if slot >= 32 || function >= 8 {
            return None;
        }
        Some(BusAddress {
            segment: hex(segment, 4)? as u16,
            bus: hex(bus, 2)? as u8,
            devfn: (slot << 3 | function) as u8,
        })
    }
}

/// One function a hot reset resets.
#[derive(Debug)]
struct Affected {
    dev: DeviceId,
    address: BusAddress,
    group: GroupId,
    /// VFIO's (vfio-pci bound), not a kernel driver's.
    vfio: bool,
}

/// The functions a bus reset of `dev` resets, in address order; `ENODEV`
/// when there is no bus reset for it.
fn reset_scope(topology: &Topology, dev: DeviceId) -> Result<Vec<Affected>> {
    let own = BusAddress::parse(&topology.device(dev).name).ok_or(Errno::ENODEV)?;
    if own.bus == 0 {
        return Err(Errno::ENODEV);
    }
    let mut scope: Vec<Affected> = (0..topology.devices.len() as u32)
        .map(DeviceId)
        .filter_map(|d| {
            let spec = topology.device(d);
            spec.pci.as_ref()?;
            let address = BusAddress::parse(&spec.name)?;
            (address.segment == own.segment && address.bus == own.bus).then_some(Affected {
                dev: d,
                address,
                group: spec.group,
                vfio: spec.kernel_driver.is_none(),
            })
        })
        .collect();
    scope.sort_by_key(|a| a.address);
    Ok(scope)
}

/// How context `ctx` owns `a` (Linux `vfio_iommufd_get_dev_id`): its
/// device object id when bound there, [`VFIO_PCI_DEVID_OWNED`] when a
/// device of its group is, else [`VFIO_PCI_DEVID_NOT_OWNED`].
fn devid_in(ctx: &Context, topology: &Topology, a: &Affected) -> u32 {
    if !a.vfio {
        return VFIO_PCI_DEVID_NOT_OWNED;
    }
    let objects = ctx.objects();
    let mut group_owned = false;
    for id in objects.ids_of(ObjectType::Device) {
        if let Ok(device) = objects.device(id) {
            if device.dev == a.dev {
                return id;
            }
            group_owned |= topology.device(device.dev).group == a.group;
        }
    }
    if group_owned {
        VFIO_PCI_DEVID_OWNED
    } else {
        VFIO_PCI_DEVID_NOT_OWNED
    }
}

impl DeviceFile {
    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the functions a hot reset of
    /// this one affects, by device id (cdev) or group id (group-opened).
    /// `ENOSPC` with the count when `argsz` has no room for them all.
    pub(super) fn ioctl_hot_reset_info(
        &self,
        caller: &Caller<'_>,
        arg: &mut Arg<'_>,
    ) -> Result<()> {
        let mut head = VfioPciHotResetHead::new_zeroed();
        arg.read(caller, 0, head.as_mut_bytes())?;
        if (head.argsz as usize) < HEAD {
            return Err(Errno::EINVAL);
        }
        let ctx = self.bound_context().ok_or(Errno::EINVAL)?.clone();
        let dev = self.function().locked().dev;
        let ctx = ctx.locked();
        let core = ctx.shared().iommu.locked();
        let topology = core.topology();
        let scope = reset_scope(topology, dev)?;
        head.flags = 0;
        head.count = scope.len() as u32;
        let room = (head.argsz as usize - HEAD) / size_of::<VfioPciDependentDevice>();
        if scope.len() > room {
            arg.write(caller, 0, head.as_bytes())?;
            return Err(Errno::ENOSPC);
        }
        let by_devid = !self.via_group();
        if by_devid {
            head.flags = VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
        }
        let mut devices = Vec::with_capacity(scope.len());
        for a in &scope {
            let id = if by_devid {
                let id = devid_in(&ctx, topology, a);
                if id == VFIO_PCI_DEVID_NOT_OWNED {
                    head.flags &= !VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
                }
                id
            } else {
                a.group.0
            };
            devices.push(VfioPciDependentDevice {
                id,
                segment: a.address.segment,
                bus: a.address.bus,
                devfn: a.address.devfn,
            });
        }
        arg.write(caller, HEAD as u64, devices.as_bytes())?;
        arg.write(caller, 0, head.as_bytes())
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET`: resets every function on the bus, once
    /// the caller is shown to own them all — by its iommufd context for a
    /// cdev-opened file (no group fds), by group fds otherwise.
    pub(super) fn ioctl_hot_reset(
        &self,
        caller: &Caller<'_>,
        arg: &Arg<'_>,
        fds: &dyn VfioFds,
    ) -> Result<()> {
        let mut head = VfioPciHotResetHead::new_zeroed();
        arg.read(caller, 0, head.as_mut_bytes())?;
        if (head.argsz as usize) < HEAD || head.flags != 0 {
            return Err(Errno::EINVAL);
        }
        // An empty group list exactly when the file is cdev-opened.
        if (head.count != 0) != self.via_group() {
            return Err(Errno::EINVAL);
        }
        let ctx = self.bound_context().ok_or(Errno::EINVAL)?.clone();
        let dev = self.function().locked().dev;
        let scope = {
            let ctx = ctx.locked();
            let core = ctx.shared().iommu.locked();
            reset_scope(core.topology(), dev)?
        };
        let groups = if head.count == 0 {
            Vec::new()
        } else {
            // One group per affected device at most.
            if head.count as usize > scope.len() {
                return Err(Errno::EINVAL);
            }
            let mut raw = vec![0i32; head.count as usize];
            arg.read(caller, HEAD as u64, raw.as_mut_bytes())?;
            raw.iter()
                .map(|&fd| fds.vfio_group(fd))
                .collect::<Result<Vec<GroupId>>>()?
        };
        // Functions first (in address order, the one order any code locks
        // several in), then the context: the lock order of this layer.
        // Held throughout, so that ownership cannot change before the reset.
        let functions = scope
            .iter()
            .map(|a| self.host.function(a.dev).ok_or(Errno::EINVAL))
            .collect::<Result<Vec<_>>>()?;
        let mut locked: Vec<_> = functions.iter().map(|f| f.locked()).collect();
        {
            let ctx = ctx.locked();
            let core = ctx.shared().iommu.locked();
            for a in &scope {
                let owned = a.vfio
                    && if groups.is_empty() {
                        devid_in(&ctx, core.topology(), a) != VFIO_PCI_DEVID_NOT_OWNED
                    } else {
                        groups.contains(&a.group)
                    };
                if !owned {
                    return Err(Errno::EINVAL);
                }
            }
        }
        for function in &mut locked {
            function.reset();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_addresses_are_read_from_device_names() {
        assert_eq!(
            BusAddress::parse("0000:01:00.1"),
            Some(BusAddress {
                segment: 0,
                bus: 1,
                devfn: 1
            })
        );
        assert_eq!(
            BusAddress::parse("abcd:ff:1f.7").map(|a| (a.segment, a.bus, a.devfn)),
            Some((0xabcd, 0xff, 0xff))
        );
        for bad in [
            "mock0",
            "0000:01:20.0",
            "0000:01:00.8",
            "000:01:00.0",
            "0000:01:00",
            "",
        ] {
            assert_eq!(BusAddress::parse(bad), None, "{bad}");
        }
    }
}
