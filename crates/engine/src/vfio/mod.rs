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
//! Lock order: the host's group use, then functions (several in address
//! order), then a context, then the IOMMU core. The host's map of
//! functions and a VF token's lock are leaves: held only to look up or
//! change an entry, never while taking another lock.

mod device_file;
mod dmabuf;
mod feature;
mod function;
mod group;
mod hot_reset;
mod ioctl;
mod irqs;
mod model;
mod sriov;

pub use device_file::DeviceFile;
pub use dmabuf::VfioDmabuf;
pub use function::{Function, IrqTrigger, Irqs, MAX_BAR_MEMORY};
pub use group::{GroupFile, GroupReply};
pub use irqs::IrqData;
pub use model::{DeviceModel, DmaFailure, MAX_IDLE_SLEEP};
pub use sriov::{RemovedVf, SriovChange, SriovRole, VfToken};

use crate::errno::{Errno, Result};
use crate::pages::EngineState;
use crate::sync::Locked;
use softiommu_iommu::{DeviceId, GroupId, Topology};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Makes the device model a topology names (`None` for a name it does not
/// know).
pub type ModelFactory = dyn Fn(&str) -> Option<Box<dyn DeviceModel>>;

/// A context as a transport shares it between its descriptors and the
/// device files bound to it.
pub use crate::context::SharedContext;

/// The machine's emulated PCI functions, by machine device.
#[derive(Debug, Default)]
pub struct VfioHost {
    host: Arc<HostState>,
}

/// What every VFIO file of the machine shares: the functions and how their
/// groups are in use.
#[derive(Debug, Default)]
pub(crate) struct HostState {
    /// The functions. Changes only when a PF enables or disables its VFs.
    /// A leaf lock (see the module's lock order).
    pub functions: Mutex<Functions>,
    /// Which groups are held open and which have device files bound
    /// through `/dev/vfio/devices`: the two ways in exclude each other.
    pub groups: Mutex<GroupUse>,
}

impl HostState {
    /// The function behind machine device `dev`.
    pub fn function(&self, dev: DeviceId) -> Option<Arc<Mutex<Function>>> {
        self.functions.locked().by_dev.get(&dev).cloned()
    }
}

/// The machine's functions. Invariant: `minors` maps each function's
/// `minor` to its device and nothing else.
#[derive(Debug, Default)]
pub(crate) struct Functions {
    pub by_dev: BTreeMap<DeviceId, Arc<Mutex<Function>>>,
    pub minors: BTreeMap<u32, DeviceId>,
}

impl Functions {
    /// Adds `function` under `dev` with minor `minor`.
    pub fn insert(&mut self, dev: DeviceId, minor: u32, function: Function) {
        self.by_dev.insert(dev, Arc::new(Mutex::new(function)));
        self.minors.insert(minor, dev);
    }

    /// Removes `dev`'s function.
    pub fn remove(&mut self, dev: DeviceId) {
        self.by_dev.remove(&dev);
        self.minors.retain(|_, d| *d != dev);
    }

    /// The lowest minor number no function has (Linux's IDA).
    pub fn free_minor(&self) -> u32 {
        (0..).find(|m| !self.minors.contains_key(m)).unwrap_or(0)
    }
}

/// How a VFIO ioctl finds what the caller's descriptor numbers open (the
/// transport knows its callers' descriptors).
pub trait VfioFds {
    /// The iommufd context `fd` opens: `EBADF` for no descriptor, `EBADFD`
    /// for one that is not an iommufd (Linux `iommufd_ctx_from_fd`).
    fn iommufd(&self, fd: i32) -> Result<SharedContext>;
    /// The group whose file `fd` is: `EBADF` for no descriptor, `EINVAL`
    /// for one that is no VFIO group file (Linux `vfio_file_is_group`).
    fn vfio_group(&self, fd: i32) -> Result<GroupId>;
    /// Makes the file that stands for `dmabuf` (`VFIO_DEVICE_FEATURE_DMA_BUF`),
    /// to be the ioctl's return value (closed on `exec` when
    /// `close_on_exec`), and lets importers find it by that file
    /// ([`crate::pages::EngineState::register_dmabuf`]) while it is open.
    /// `EMFILE` or `ENOMEM` when no file can be made.
    fn dmabuf_file(
        &self,
        dmabuf: Arc<dyn crate::memory::ExportedDmabuf>,
        close_on_exec: bool,
    ) -> Result<()>;
}

/// How the machine's groups are in use through VFIO. Invariant: a group is
/// never both open as a group file and counted in `cdev_bound`.
#[derive(Debug, Default)]
pub(crate) struct GroupUse {
    /// Groups whose `/dev/vfio/<n>` is open (one file at a time).
    pub open: BTreeSet<GroupId>,
    /// Device files bound through their cdev, per group.
    pub cdev_bound: BTreeMap<GroupId, u32>,
}

impl VfioHost {
    /// A function for every device of `topology` that has a PCI description,
    /// numbered (`/dev/vfio/devices/vfio<minor>`) in device order, with
    /// plain memory behind every BAR.
    pub fn new(topology: &Topology) -> Result<Self> {
        Self::build(topology, None)
    }

    /// As [`new`](Self::new), with the device model `models` makes for each
    /// model name a device gives in the topology (`EINVAL` for a name it
    /// does not know).
    pub fn with_models(topology: &Topology, models: &ModelFactory) -> Result<Self> {
        Self::build(topology, Some(models))
    }

    fn build(topology: &Topology, models: Option<&ModelFactory>) -> Result<Self> {
        let mut functions = Functions::default();
        for (i, dev) in topology.devices.iter().enumerate() {
            if let Some(spec) = &dev.pci {
                let id = DeviceId(i as u32);
                let minor = functions.by_dev.len() as u32;
                let mut function = Function::new(id, dev.group, spec, minor)?;
                function.sriov = SriovRole::for_spec(spec);
                if let (Some(name), Some(models)) = (&dev.model, models) {
                    function.install_model(models(name).ok_or(Errno::EINVAL)?);
                }
                functions.insert(id, minor, function);
            }
        }
        Ok(VfioHost {
            host: Arc::new(HostState {
                functions: Mutex::new(functions),
                groups: Mutex::default(),
            }),
        })
    }

    /// The function behind machine device `dev`.
    pub fn function(&self, dev: DeviceId) -> Option<Arc<Mutex<Function>>> {
        self.host.function(dev)
    }

    /// Machine devices that are PCI functions now, in order.
    pub fn devices(&self) -> Vec<DeviceId> {
        self.host
            .functions
            .locked()
            .by_dev
            .keys()
            .copied()
            .collect()
    }

    /// The machine device whose device node is `vfio<minor>`.
    pub fn device_by_minor(&self, minor: u32) -> Option<DeviceId> {
        self.host.functions.locked().minors.get(&minor).copied()
    }

    /// Opens machine device `dev` as a device file (`ENODEV` if it is no
    /// PCI function).
    pub fn open(&self, dev: DeviceId) -> Result<DeviceFile> {
        let function = self.function(dev).ok_or(Errno::ENODEV)?;
        DeviceFile::new(function, self.host.clone())
    }

    /// Opens group `group`'s file (`/dev/vfio/<n>`): `ENODEV` when no
    /// function of the group is VFIO's, `EBUSY` while another file has it
    /// open or one of its devices is bound through its cdev.
    pub fn open_group(&self, shared: &Arc<EngineState>, group: GroupId) -> Result<GroupFile> {
        let members: Vec<Arc<Mutex<Function>>> = {
            let core = shared.iommu.locked();
            let topology = core.topology();
            let spec = topology.groups.get(group.0 as usize).ok_or(Errno::ENODEV)?;
            spec.devices
                .iter()
                .filter(|&&d| topology.device(d).kernel_driver.is_none())
                .filter_map(|&d| self.function(d))
                .collect()
        };
        if members.is_empty() {
            return Err(Errno::ENODEV);
        }
        let mut use_ = self.host.groups.locked();
        if use_.open.contains(&group) || use_.cdev_bound.get(&group).is_some_and(|&n| n > 0) {
            return Err(Errno::EBUSY);
        }
        // A VF its PF removed meanwhile is gone (checked with the group use
        // held, as the removal does).
        if members.iter().any(|f| f.locked().removed) {
            return Err(Errno::ENODEV);
        }
        use_.open.insert(group);
        drop(use_);
        Ok(GroupFile::new(
            group,
            members,
            shared.clone(),
            self.host.clone(),
        ))
    }
}

/// What Linux's Intel IOMMU driver shows of machine device `dev` in
/// `/sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct`, read
/// now: `None` when the device is not behind an Intel IOMMU.
pub fn intel_translation_struct(shared: &EngineState, dev: DeviceId) -> Option<String> {
    use softiommu_iommu::DomainKind;
    let core = shared.iommu.locked();
    let topology = core.topology();
    if !core.is_present(dev) || topology.iommu(topology.iommu_of(dev)).driver.name != "intel-iommu"
    {
        return None;
    }
    let bdf = topology.device(dev).name.clone();
    let table = match core.domain(core.device_domain(dev)).map(|d| &d.kind) {
        Some(DomainKind::Paging { table, .. }) => Some(table.clone()),
        _ => None,
    };
    drop(core);
    let table = table.as_ref().map(|t| t.locked());
    Some(crate::driver::vtd::translation_struct(
        &bdf,
        table.as_deref(),
    ))
}
