//! The machine: IOMMU instances, the groups behind each, and their devices.
//! Built with [`Topology::builder`] or read from a TOML file:
//!
//! ```toml
//! [[iommu]]
//! name = "iommu0"
//! driver = "amd_v1"          # amd_v1, intel_vtd, arm_smmuv3 or mock
//!
//! [[group]]
//! iommu = "iommu0"
//! devices = ["0000:01:00.0", "0000:01:00.1"]
//!
//! [[device]]                 # optional per-device settings
//! name = "0000:01:00.0"
//! kernel_driver = "e1000e"   # bound at start
//! reserved = [{ start = 0xfee00000, length = 0x100000, type = "msi" }]
//!
//! model = "ioat"             # optional: a device model (see DEVICE_MODELS)
//!
//! [device.pci]               # a PCI function, reachable through VFIO
//! ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
//! bars = [{ index = 0, size = 0x20000, kind = { type = "mem32" } }]
//! msi_vectors = 1
//! pcie = true
//! interrupt_pin = 1
//! ```

use crate::driver::{DriverInfo, ReservedRegion, ReservedType};
use serde::Deserialize;
use softiommu_pci::FunctionSpec;
use std::collections::BTreeMap;

/// Index of an IOMMU instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IommuId(pub u32);
/// Index of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);
/// Index of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u32);

/// One IOMMU instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuSpec {
    /// Unique name (`iommu0`).
    pub name: String,
    /// What its driver supports.
    pub driver: DriverInfo,
}

/// One group: the devices its IOMMU cannot isolate from each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// The IOMMU the group sits behind.
    pub iommu: IommuId,
    /// Its devices; each names this group back.
    pub devices: Vec<DeviceId>,
}

/// One device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Unique name (a PCI address such as `0000:01:00.0`).
    pub name: String,
    /// The one group it belongs to.
    pub group: GroupId,
    /// A kernel driver bound when the machine starts.
    pub kernel_driver: Option<String>,
    /// The device's reserved IOVA regions (Linux `iommu_get_resv_regions`).
    pub reserved: Vec<ReservedRegion>,
    /// Its PCI function, when it is one: what VFIO presents of it.
    pub pci: Option<FunctionSpec>,
    /// The device model that gives the function behaviour (`"ioat"`), by
    /// name; `None` for a function whose BARs are plain memory.
    pub model: Option<String>,
}

/// Makes the PCI function a device model stands for.
pub type PresetFn = fn() -> FunctionSpec;

/// The device models a topology may name, with the PCI function each
/// stands for when the topology describes none.
pub const DEVICE_MODELS: &[(&str, PresetFn)] = &[
    ("ioat", softiommu_pci::presets::ioat_skx),
    ("dsa", softiommu_pci::presets::dsa_spr),
];

/// The whole machine. Invariant: every group names an existing IOMMU, every
/// device is in exactly one group, names are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// IOMMU instances, indexed by [`IommuId`].
    pub iommus: Vec<IommuSpec>,
    /// Groups, indexed by [`GroupId`].
    pub groups: Vec<GroupSpec>,
    /// Devices, indexed by [`DeviceId`].
    pub devices: Vec<DeviceSpec>,
}

/// Builds a [`Topology`].
#[derive(Debug, Default)]
pub struct TopologyBuilder {
    topo: Topology,
}

/// Why a topology was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl std::fmt::Display for TopologyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

/// An Intel gigabit Ethernet port as the built-in machine has them: 128 KiB
/// of registers in BAR 0, the MSI-X table and PBA in a 16 KiB BAR 3, MSI,
/// INTA, PCI Express. `revision` tells the ports of one device apart.
/// An SR-IOV network port (Intel 82599-like): up to 8 VFs from routing
/// offset 0x80 in steps of 2, so VF 0 of 0000:04:00.0 is 0000:04:10.0, as
/// on the real part; each VF has two 16 KiB BARs and 3 MSI-X vectors.
fn sriov_port() -> FunctionSpec {
    use softiommu_pci::{BarKind, BarSpec, MsixSpec, SriovSpec};
    let bar = |index| BarSpec {
        index,
        size: 16 << 10,
        kind: BarKind::Mem64 {
            prefetchable: false,
        },
    };
    FunctionSpec {
        sriov: Some(SriovSpec {
            total_vfs: 8,
            vf_device: 0x10ed,
            first_vf_offset: 0x80,
            vf_stride: 2,
            vf_bars: vec![bar(0), bar(3)],
            vf_msix: Some(MsixSpec {
                vectors: 3,
                table_bar: 3,
                table_offset: 0,
                pba_bar: 3,
                pba_offset: 0x2000,
            }),
        }),
        ..ethernet_port(0x10fb, 1)
    }
}

fn ethernet_port(device: u16, revision: u8) -> FunctionSpec {
    use softiommu_pci::{BarKind, BarSpec, MsixSpec, PciIds};
    FunctionSpec {
        ids: PciIds {
            vendor: 0x8086,
            device,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0001,
            class: 0x02_00_00,
            revision,
        },
        bars: vec![
            BarSpec {
                index: 0,
                size: 128 << 10,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
            },
            BarSpec {
                index: 3,
                size: 16 << 10,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
            },
        ],
        msi_vectors: 1,
        msix: Some(MsixSpec {
            vectors: 5,
            table_bar: 3,
            table_offset: 0,
            pba_bar: 3,
            pba_offset: 0x2000,
        }),
        pcie: true,
        interrupt_pin: 1,
        ..FunctionSpec::default()
    }
}

/// An NVMe drive: 16 KiB of registers in a 64-bit BAR 0 with the MSI-X
/// table (32 vectors) and PBA inside it.
fn nvme_drive() -> FunctionSpec {
    use softiommu_pci::{BarKind, BarSpec, MsixSpec, PciIds};
    FunctionSpec {
        ids: PciIds {
            vendor: 0x144d,
            device: 0xa808,
            subsystem_vendor: 0x144d,
            subsystem_device: 0xa801,
            class: 0x01_08_02,
            revision: 0,
        },
        bars: vec![BarSpec {
            index: 0,
            size: 16 << 10,
            kind: BarKind::Mem64 {
                prefetchable: false,
            },
        }],
        msi_vectors: 0,
        msix: Some(MsixSpec {
            vectors: 32,
            table_bar: 0,
            table_offset: 0x3000,
            pba_bar: 0,
            pba_offset: 0x2000,
        }),
        pcie: true,
        interrupt_pin: 1,
        ..FunctionSpec::default()
    }
}

/// The x86 MSI window every PCI device reports.
const X86_MSI: ReservedRegion = ReservedRegion {
    start: 0xfee0_0000,
    length: 0x10_0000,
    kind: ReservedType::Msi,
};

impl TopologyBuilder {
    /// Adds an IOMMU instance.
    pub fn iommu(mut self, name: &str, driver: DriverInfo) -> Self {
        self.topo.iommus.push(IommuSpec {
            name: name.into(),
            driver,
        });
        self
    }

    /// Adds a group of new devices behind IOMMU `iommu`.
    pub fn group(mut self, iommu: &str, devices: &[&str]) -> Result<Self, TopologyError> {
        let iommu = self
            .topo
            .iommu_by_name(iommu)
            .ok_or_else(|| TopologyError(format!("no IOMMU named {iommu}")))?;
        if devices.is_empty() {
            return Err(TopologyError("a group needs at least one device".into()));
        }
        let group = GroupId(self.topo.groups.len() as u32);
        let mut ids = Vec::new();
        for &name in devices {
            if self.topo.device_by_name(name).is_some() {
                return Err(TopologyError(format!("device {name} appears twice")));
            }
            ids.push(DeviceId(self.topo.devices.len() as u32));
            self.topo.devices.push(DeviceSpec {
                name: name.into(),
                group,
                kernel_driver: None,
                reserved: Vec::new(),
                pci: None,
                model: None,
            });
        }
        self.topo.groups.push(GroupSpec {
            iommu,
            devices: ids,
        });
        Ok(self)
    }

    /// Binds a kernel driver to `device` at start.
    pub fn kernel_driver(mut self, device: &str, driver: &str) -> Result<Self, TopologyError> {
        let d = self
            .topo
            .device_by_name(device)
            .ok_or_else(|| TopologyError(format!("no device named {device}")))?;
        self.topo.devices[d.0 as usize].kernel_driver = Some(driver.into());
        Ok(self)
    }

    /// Makes `device` a PCI function described by `spec` (checked).
    pub fn pci(mut self, device: &str, spec: FunctionSpec) -> Result<Self, TopologyError> {
        let d = self
            .topo
            .device_by_name(device)
            .ok_or_else(|| TopologyError(format!("no device named {device}")))?;
        spec.validate()
            .map_err(|e| TopologyError(format!("PCI function {device}: {e}")))?;
        self.topo.devices[d.0 as usize].pci = Some(spec);
        Ok(self)
    }

    /// Gives `device` the device model `model` (one of [`DEVICE_MODELS`]),
    /// and that model's PCI function when it has none yet.
    pub fn model(mut self, device: &str, model: &str) -> Result<Self, TopologyError> {
        let d = self
            .topo
            .device_by_name(device)
            .ok_or_else(|| TopologyError(format!("no device named {device}")))?;
        let (_, preset) = DEVICE_MODELS
            .iter()
            .find(|(name, _)| *name == model)
            .ok_or_else(|| TopologyError(format!("unknown device model {model}")))?;
        let spec = &mut self.topo.devices[d.0 as usize];
        spec.model = Some(model.into());
        if spec.pci.is_none() {
            spec.pci = Some(preset());
        }
        Ok(self)
    }

    /// Gives `device` a reserved region.
    pub fn reserved(mut self, device: &str, region: ReservedRegion) -> Result<Self, TopologyError> {
        let d = self
            .topo
            .device_by_name(device)
            .ok_or_else(|| TopologyError(format!("no device named {device}")))?;
        self.topo.devices[d.0 as usize].reserved.push(region);
        Ok(self)
    }

    /// The topology built so far.
    pub fn build(self) -> Topology {
        self.topo
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopology {
    #[serde(default)]
    iommu: Vec<FileIommu>,
    #[serde(default)]
    group: Vec<FileGroup>,
    #[serde(default)]
    device: Vec<FileDevice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIommu {
    name: String,
    driver: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    iommu: String,
    devices: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDevice {
    name: String,
    kernel_driver: Option<String>,
    #[serde(default)]
    reserved: Vec<ReservedRegion>,
    pci: Option<FunctionSpec>,
    model: Option<String>,
}

impl Topology {
    /// An empty builder.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The built-in machine: an Intel VT-d unit with a three-function device
    /// in one group and a NIC alone in another; a second VT-d unit with an
    /// NVMe drive that the kernel's nvme driver holds; and a mock IOMMU (the
    /// selftest's) with one device.
    pub fn default_machine() -> Topology {
        let build = || -> Result<Topology, TopologyError> {
            // One vendor, as on a real machine: programs that find Intel's
            // IOMMU debugfs expect every function's entry there.
            let mut b = Topology::builder()
                .iommu("dmar0", DriverInfo::intel_vtd())
                .iommu("dmar1", DriverInfo::intel_vtd())
                .iommu("mock0", DriverInfo::mock())
                .group("dmar0", &["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"])?
                .group("dmar0", &["0000:02:00.0"])?
                .group("dmar1", &["0000:03:00.0"])?
                .group("mock0", &["mock:0"])?
                .group("dmar0", &["0000:04:00.0"])?
                .group("dmar1", &["0000:00:04.0"])?
                .group("dmar1", &["0000:6a:01.0"])?
                .kernel_driver("0000:03:00.0", "nvme")?;
            for (dev, function) in [
                ("0000:01:00.0", ethernet_port(0x10c9, 0)),
                ("0000:01:00.1", ethernet_port(0x10c9, 1)),
                ("0000:01:00.2", ethernet_port(0x10c9, 2)),
                ("0000:02:00.0", ethernet_port(0x1533, 0)),
                ("0000:03:00.0", nvme_drive()),
                ("0000:04:00.0", sriov_port()),
            ] {
                b = b.pci(dev, function)?;
            }
            for dev in [
                "0000:01:00.0",
                "0000:01:00.1",
                "0000:01:00.2",
                "0000:02:00.0",
                "0000:03:00.0",
                "0000:04:00.0",
                "0000:00:04.0",
                "0000:6a:01.0",
            ] {
                b = b.reserved(dev, X86_MSI)?;
            }
            b = b.model("0000:00:04.0", "ioat")?;
            b = b.model("0000:6a:01.0", "dsa")?;
            Ok(b.build())
        };
        build().unwrap_or_default()
    }

    /// Reads a topology from TOML text.
    pub fn from_toml(text: &str) -> Result<Topology, TopologyError> {
        let file: FileTopology = toml::from_str(text).map_err(|e| TopologyError(e.to_string()))?;
        let mut b = Topology::builder();
        for i in &file.iommu {
            if b.topo.iommu_by_name(&i.name).is_some() {
                return Err(TopologyError(format!("IOMMU {} appears twice", i.name)));
            }
            let driver = DriverInfo::by_name(&i.driver)
                .ok_or_else(|| TopologyError(format!("unknown driver {}", i.driver)))?;
            b = b.iommu(&i.name, driver);
        }
        for g in &file.group {
            let names: Vec<&str> = g.devices.iter().map(String::as_str).collect();
            b = b.group(&g.iommu, &names)?;
        }
        for d in file.device {
            if let Some(k) = &d.kernel_driver {
                b = b.kernel_driver(&d.name, k)?;
            }
            if let Some(spec) = d.pci {
                b = b.pci(&d.name, spec)?;
            }
            if let Some(model) = &d.model {
                b = b.model(&d.name, model)?;
            }
            for r in d.reserved {
                if r.length == 0 || r.start.checked_add(r.length - 1).is_none() {
                    return Err(TopologyError(format!("bad reserved region on {}", d.name)));
                }
                b = b.reserved(&d.name, r)?;
            }
        }
        Ok(b.build())
    }

    /// The IOMMU instance named `name`.
    pub fn iommu_by_name(&self, name: &str) -> Option<IommuId> {
        self.iommus
            .iter()
            .position(|i| i.name == name)
            .map(|i| IommuId(i as u32))
    }

    /// The device named `name`.
    pub fn device_by_name(&self, name: &str) -> Option<DeviceId> {
        self.devices
            .iter()
            .position(|d| d.name == name)
            .map(|i| DeviceId(i as u32))
    }

    /// The device `id`; panics if it does not exist.
    pub fn device(&self, id: DeviceId) -> &DeviceSpec {
        &self.devices[id.0 as usize]
    }

    /// The group `id`; panics if it does not exist.
    pub fn group(&self, id: GroupId) -> &GroupSpec {
        &self.groups[id.0 as usize]
    }

    /// The IOMMU instance `id`; panics if it does not exist.
    pub fn iommu(&self, id: IommuId) -> &IommuSpec {
        &self.iommus[id.0 as usize]
    }

    /// The IOMMU behind a device.
    pub fn iommu_of(&self, dev: DeviceId) -> IommuId {
        self.group(self.device(dev).group).iommu
    }

    /// Device names by group, for display.
    pub fn group_names(&self) -> BTreeMap<u32, Vec<String>> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                (
                    i as u32,
                    g.devices
                        .iter()
                        .map(|d| self.device(*d).name.clone())
                        .collect(),
                )
            })
            .collect()
    }
}
