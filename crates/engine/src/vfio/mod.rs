//! VFIO (Linux `drivers/vfio`): emulated PCI functions that a program opens
//! as device files, binds to an iommufd context, attaches to an IOAS or HWPT
//! and drives through their regions and interrupts.
//!
//! Vocabulary, as Linux has it:
//! - **function**: one emulated PCI function of the machine ([`Function`]):
//!   its configuration space as vfio-pci presents it, its BAR memory and its
//!   interrupt state. One per machine device that has a PCI description.
//! - **device file**: one open of `/dev/vfio/devices/vfioN` ([`DeviceFile`],
//!   Linux `vfio_device_file`). Unbound it answers only
//!   `VFIO_DEVICE_BIND_IOMMUFD` (everything else is `EINVAL`); bound, it
//!   holds a device object in one iommufd context until it is closed.
//!
//! Lock order: a function's lock before any context's lock; the host's map
//! of functions is never locked while either is held.

mod device_file;
mod function;
mod ioctl;
mod irqs;

pub use device_file::DeviceFile;
pub use function::{Function, IrqTrigger, Irqs, MAX_BAR_MEMORY};
pub use irqs::IrqData;

use crate::context::Context;
use crate::errno::{Errno, Result};
use softiommu_iommu::{DeviceId, Topology};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A context as a transport shares it between its descriptors and the
/// device files bound to it.
pub type SharedContext = Arc<Mutex<Context>>;

/// The machine's emulated PCI functions, by machine device.
#[derive(Debug, Default)]
pub struct VfioHost {
    functions: BTreeMap<DeviceId, Arc<Mutex<Function>>>,
}

impl VfioHost {
    /// A function for every device of `topology` that has a PCI description.
    pub fn new(topology: &Topology) -> Result<Self> {
        let mut functions = BTreeMap::new();
        for (i, dev) in topology.devices.iter().enumerate() {
            if let Some(spec) = &dev.pci {
                let id = DeviceId(i as u32);
                let function = Function::new(id, spec)?;
                functions.insert(id, Arc::new(Mutex::new(function)));
            }
        }
        Ok(VfioHost { functions })
    }

    /// The function behind machine device `dev`.
    pub fn function(&self, dev: DeviceId) -> Option<Arc<Mutex<Function>>> {
        self.functions.get(&dev).cloned()
    }

    /// Machine devices that are PCI functions, in order.
    pub fn devices(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.functions.keys().copied()
    }

    /// Opens machine device `dev` as a device file (`ENODEV` if it is no
    /// PCI function).
    pub fn open(&self, dev: DeviceId) -> Result<DeviceFile> {
        let function = self.function(dev).ok_or(Errno::ENODEV)?;
        Ok(DeviceFile::new(function))
    }
}
