//! A VFIO device driven from this process, as a user-space driver holds
//! one: the function's device file bound to an iommufd context of its own,
//! an IOAS mapping this process's buffers, and the function's BARs and
//! configuration space through the file.
//!
//! ```
//! use softiommu_engine::api::Engine;
//! use softiommu_engine::Prot;
//!
//! let engine = Engine::new();
//! // The built-in machine's I/OAT channel.
//! let mut dev = engine.open_device("0000:00:04.0").unwrap();
//! let ioas = dev.alloc_ioas().unwrap();
//! // Domains map whole pages: a page-aligned buffer.
//! let memory = vec![0u8; 3 * 4096];
//! let at = memory.as_ptr().align_offset(4096);
//! let buffer = &memory[at..at + 8192];
//! dev.map(ioas, buffer, 0x100_0000, Prot { read: true, write: true }).unwrap();
//! dev.attach(ioas).unwrap();
//! dev.enable_bus_master().unwrap();
//! let mut version = [0u8];
//! dev.read_bar(0, 0x08, &mut version).unwrap();
//! assert_eq!(version[0], 0x33);
//! ```

use super::{err, HwptId, IoasId, OwnedCaller, Result};
use crate::context::{Context, MapArgs};
use crate::errno::{Errno, Error};
use crate::ioas::Prot;
use crate::memory::{ProcFiles, ProcessMemory};
use crate::sync::Locked;
use crate::vfio::{DeviceFile, SharedContext};
use softiommu_uapi::vfio::{VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_OFFSET_SHIFT};
use std::sync::Arc;

/// One PCI function's device file, bound to a context of its own.
#[derive(Debug)]
pub struct VfioDevice {
    name: String,
    file: DeviceFile,
    ctx: SharedContext,
    caller: OwnedCaller,
}

impl super::Engine {
    /// Opens the machine's function `bdf` as `/dev/vfio/devices/vfioN`
    /// would and binds it to a new context acting for this process
    /// (`ENODEV` for no such function).
    pub fn open_device(&self, bdf: &str) -> Result<VfioDevice> {
        let dev = self
            .shared
            .iommu
            .locked()
            .topology()
            .device_by_name(bdf)
            .ok_or_else(|| Error::new(Errno::ENODEV, format!("no PCI function {bdf}")))?;
        let mut file = self.vfio.open(dev).map_err(err("opening the device"))?;
        let ctx: SharedContext = Context::new(self.shared.clone()).into_shared();
        file.bind(ctx.clone()).map_err(err("binding the device"))?;
        Ok(VfioDevice {
            name: bdf.into(),
            file,
            ctx,
            caller: OwnedCaller {
                mem: Arc::new(ProcessMemory::current()),
                files: Box::new(ProcFiles::current()),
                creds: super::current_credentials(),
            },
        })
    }
}

fn region(index: u32) -> u64 {
    u64::from(index) << VFIO_PCI_OFFSET_SHIFT
}

impl VfioDevice {
    /// The function's address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its device object in its context (Linux's `devid`).
    pub fn dev_id(&self) -> u32 {
        self.file.dev_id().unwrap_or(0)
    }

    /// A new IOAS in the device's context.
    pub fn alloc_ioas(&mut self) -> Result<IoasId> {
        self.ctx
            .locked()
            .ioas_alloc()
            .map(IoasId)
            .map_err(err("allocating an IOAS"))
    }

    /// Maps `buffer` (this process's memory) at `iova`.
    pub fn map(&mut self, ioas: IoasId, buffer: &[u8], iova: u64, prot: Prot) -> Result<u64> {
        let args = MapArgs {
            iova: Some(iova),
            length: buffer.len() as u64,
            prot,
        };
        self.ctx
            .locked()
            .ioas_map(
                &self.caller.as_caller(),
                ioas.0,
                buffer.as_ptr() as u64,
                args,
            )
            .map_err(err("mapping a buffer"))
    }

    /// Unmaps `[iova, iova + length)`; the bytes unmapped.
    pub fn unmap(&mut self, ioas: IoasId, iova: u64, length: u64) -> Result<u64> {
        self.ctx
            .locked()
            .ioas_unmap(ioas.0, iova, length)
            .map_err(err("unmapping"))
    }

    /// Attaches the device to `ioas`; the HWPT its domain is.
    pub fn attach(&mut self, ioas: IoasId) -> Result<HwptId> {
        self.file
            .attach(ioas.0)
            .map(|(hwpt, _)| HwptId(hwpt))
            .map_err(err("attaching the device"))
    }

    /// Which IOMMU driver's page table the device's DMA goes through now
    /// (`intel-iommu`, `amd-iommu`, ...).
    pub fn iommu_driver(&self) -> String {
        let dev = self.file.function().locked().dev;
        let shared = self.ctx.locked().shared().clone();
        let core = shared.iommu.locked();
        let topology = core.topology();
        topology.iommu(topology.iommu_of(dev)).driver.name.clone()
    }

    /// Sets memory space and bus master in the command register, as a
    /// driver does before the device may DMA.
    pub fn enable_bus_master(&mut self) -> Result<()> {
        let config = region(VFIO_PCI_CONFIG_REGION_INDEX);
        self.file
            .write(config + 4, &0x6u16.to_le_bytes())
            .map(|_| ())
            .map_err(err("enabling bus mastering"))
    }

    /// Writes BAR `bar` at `offset`: a register write the device sees.
    pub fn write_bar(&mut self, bar: u32, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .write(region(bar) + offset, data)
            .map(|_| ())
            .map_err(err("writing a BAR"))
    }

    /// Reads BAR `bar` at `offset`.
    pub fn read_bar(&self, bar: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read(region(bar) + offset, buf)
            .map(|_| ())
            .map_err(err("reading a BAR"))
    }

    /// Reads configuration space at `offset`.
    pub fn read_config(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read(region(VFIO_PCI_CONFIG_REGION_INDEX) + offset, buf)
            .map(|_| ())
            .map_err(err("reading configuration space"))
    }
}
