//! The typed Rust API: the same operations as the ioctls, with Rust types and
//! errors that carry the errno and say what failed.
//!
//! ```
//! use softiommu_engine::api::Engine;
//! use softiommu_engine::Prot;
//!
//! let engine = Engine::new();
//! let mut fd = engine.open();
//! let ioas = fd.alloc_ioas().unwrap();
//! let buffer = vec![7u8; 16384];
//! let iova = fd.map_buffer(ioas, &buffer, None, Prot { read: true, write: false }).unwrap();
//! let mut back = [0u8; 4];
//! fd.read(ioas, iova, &mut back).unwrap();
//! assert_eq!(back, [7; 4]);
//! assert_eq!(fd.unmap(ioas, iova, 16384).unwrap(), 16384);
//! ```

use crate::context::{Caller, Context, Credentials, MapArgs};
use crate::dispatch::Arg;
use crate::errno::{Errno, Error};
use crate::ioas::Prot;
use crate::memory::{AddressSpace, CallerFiles, FileBacking};
use crate::sync::Locked;
pub use softiommu_iommu::domain::PagingFlags;
pub use softiommu_iommu::Affected;
use std::sync::Arc;

/// Result of the typed API.
pub type Result<T> = std::result::Result<T, Error>;

mod device;
mod engine;
mod ids;
#[cfg(feature = "vm-memory")]
mod rust_vmm;

pub use device::VfioDevice;
pub use engine::{current_credentials, Engine};
pub use ids::{DevId, HwptId, IoasId, ObjectId, PtId};
#[cfg(feature = "vm-memory")]
pub use rust_vmm::DeviceIommu;

/// One mapping of an IOAS, as `inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaInfo {
    /// First IOVA of the mapping.
    pub iova: u64,
    /// Length of the mapping in bytes.
    pub length: u64,
    /// Access rights of the mapping.
    pub prot: Prot,
    /// Where the memory comes from.
    pub source: String,
    /// Pages of the backing currently pinned.
    pub pinned_pages: u64,
}

/// An open iommufd context with its caller.
#[derive(Debug)]
pub struct Iommufd {
    ctx: Context,
    caller: OwnedCaller,
}

/// What a [`Caller`] borrows, owned for the life of an [`Iommufd`].
#[derive(Debug)]
struct OwnedCaller {
    mem: Arc<dyn AddressSpace>,
    files: Box<dyn CallerFiles>,
    creds: Credentials,
}

impl OwnedCaller {
    fn as_caller(&self) -> Caller<'_> {
        Caller {
            mem: &self.mem,
            files: self.files.as_ref(),
            creds: self.creds,
        }
    }
}

fn err(what: &str) -> impl Fn(Errno) -> Error + '_ {
    move |e| Error::new(e, what)
}

impl Iommufd {
    /// The engine context, for inspection.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The raw ioctl entry point, for code that speaks the uAPI.
    pub fn ioctl(&mut self, request: u32, arg: Arg<'_>) -> std::result::Result<i64, Errno> {
        self.ctx.ioctl(&self.caller.as_caller(), request, arg)
    }

    /// Allocates an empty IOAS (`IOMMU_IOAS_ALLOC`).
    pub fn alloc_ioas(&mut self) -> Result<IoasId> {
        self.ctx
            .ioas_alloc()
            .map(IoasId)
            .map_err(err("allocating an IOAS"))
    }

    /// Destroys any object by id.
    pub fn destroy(&mut self, id: impl Into<ObjectId>) -> Result<()> {
        let id = id.into().0;
        self.ctx
            .destroy(id)
            .map_err(|e| Error::new(e, format!("destroying object {id}")))
    }

    /// Maps `length` bytes of the caller's memory at `user_va`; `iova: None`
    /// lets the engine choose. Returns the IOVA.
    pub fn map_user(
        &mut self,
        ioas: IoasId,
        user_va: u64,
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        self.ctx
            .ioas_map(
                &self.caller.as_caller(),
                ioas.0,
                user_va,
                MapArgs { iova, length, prot },
            )
            .map_err(|e| Error::new(e, format!("mapping {length:#x} bytes at {user_va:#x}")))
    }

    /// Maps a buffer of this process (the context must act for this process).
    pub fn map_buffer(
        &mut self,
        ioas: IoasId,
        buffer: &[u8],
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        self.map_user(
            ioas,
            buffer.as_ptr() as u64,
            buffer.len() as u64,
            iova,
            prot,
        )
    }

    /// Maps `length` bytes of `file` from byte `start`.
    pub fn map_file(
        &mut self,
        ioas: IoasId,
        file: Arc<dyn FileBacking>,
        start: u64,
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        self.ctx
            .ioas_map_file(
                &self.caller.as_caller(),
                ioas.0,
                file,
                start,
                MapArgs { iova, length, prot },
            )
            .map_err(|e| {
                Error::new(
                    e,
                    format!("mapping {length:#x} bytes of a file at {start:#x}"),
                )
            })
    }

    /// Unmaps the areas inside `[iova, iova + length)`; returns the bytes unmapped.
    pub fn unmap(&mut self, ioas: IoasId, iova: u64, length: u64) -> Result<u64> {
        self.ctx
            .ioas_unmap(ioas.0, iova, length)
            .map_err(|e| Error::new(e, format!("unmapping [{iova:#x}, +{length:#x})")))
    }

    /// Unmaps every area of `ioas`; returns the bytes unmapped.
    pub fn unmap_all(&mut self, ioas: IoasId) -> Result<u64> {
        self.ctx
            .ioas_unmap(ioas.0, 0, u64::MAX)
            .map_err(err("unmapping everything"))
    }

    /// Maps the pages behind `[src_iova, +length)` of `src` into `dst`, sharing them.
    pub fn copy(
        &mut self,
        dst: IoasId,
        src: IoasId,
        src_iova: u64,
        length: u64,
        dst_iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        self.ctx
            .ioas_copy(
                dst.0,
                src.0,
                src_iova,
                MapArgs {
                    iova: dst_iova,
                    length,
                    prot,
                },
            )
            .map_err(|e| Error::new(e, format!("copying [{src_iova:#x}, +{length:#x})")))
    }

    /// The usable IOVA ranges and the IOVA alignment.
    pub fn iova_ranges(&self, ioas: IoasId) -> Result<(Vec<(u64, u64)>, u64)> {
        let iopt = self.ctx.ioas(ioas.0).map_err(err("reading IOVA ranges"))?;
        Ok((iopt.usable_ranges(), iopt.iova_alignment()))
    }

    /// Restricts automatic allocation to `ranges` (inclusive).
    pub fn allow_iovas(&mut self, ioas: IoasId, ranges: &[(u64, u64)]) -> Result<()> {
        self.ctx
            .ioas_allow_iovas(ioas.0, ranges)
            .map_err(err("setting allowed IOVA ranges"))
    }

    /// Reserves `[start, start + length)`.
    pub fn reserve(&mut self, ioas: IoasId, start: u64, length: u64) -> Result<()> {
        self.ctx
            .ioas_add_reserved(ioas.0, start, length)
            .map_err(err("reserving IOVA"))
    }

    /// `IOMMU_OPTION_HUGE_PAGES`.
    pub fn set_huge_pages(&mut self, ioas: IoasId, enabled: bool) -> Result<()> {
        let iopt = self
            .ctx
            .ioas_mut(ioas.0)
            .map_err(err("setting huge pages"))?;
        if enabled {
            iopt.enable_large_pages();
            Ok(())
        } else {
            iopt.disable_large_pages()
                .map_err(err("disabling huge pages"))
        }
    }

    /// Pins the pages behind `[iova, +length)`; returns a pin id.
    pub fn pin(&mut self, ioas: IoasId, iova: u64, length: u64, write: bool) -> Result<u64> {
        let iopt = self.ctx.ioas_mut(ioas.0).map_err(err("pinning"))?;
        iopt.pin(iova, length, write)
            .map_err(|e| Error::new(e, format!("pinning [{iova:#x}, +{length:#x})")))
    }

    /// Releases pin `pin` of `ioas`, as [`Iommufd::pin`] returned it.
    pub fn unpin(&mut self, ioas: IoasId, pin: u64) -> Result<()> {
        self.ctx
            .ioas_mut(ioas.0)
            .and_then(|t| t.unpin(pin))
            .map_err(err("unpinning"))
    }

    /// Reads through the IOAS as a device would.
    pub fn read(&self, ioas: IoasId, iova: u64, buf: &mut [u8]) -> Result<()> {
        let iopt = self.ctx.ioas(ioas.0).map_err(err("reading"))?;
        iopt.access_rw(iova, buf, false)
            .map_err(|e| Error::new(e, format!("reading at IOVA {iova:#x}")))
    }

    /// Writes through the IOAS as a device would.
    pub fn write(&mut self, ioas: IoasId, iova: u64, data: &[u8]) -> Result<()> {
        let iopt = self.ctx.ioas(ioas.0).map_err(err("writing"))?;
        let mut copy = data.to_vec();
        iopt.access_rw(iova, &mut copy, true)
            .map_err(|e| Error::new(e, format!("writing at IOVA {iova:#x}")))
    }

    /// Binds the machine device called `name` to this context, claiming its
    /// DMA. Returns the device object id and every device whose DMA moved.
    pub fn bind_device(&mut self, name: &str) -> Result<(DevId, Affected)> {
        let dev = {
            let core = self.ctx.shared().iommu.locked();
            core.topology().device_by_name(name)
        }
        .ok_or_else(|| Error::new(Errno::ENODEV, format!("no device named {name}")))?;
        self.ctx
            .device_bind(dev)
            .map(|(id, affected)| (DevId(id), affected))
            .map_err(|e| Error::new(e, format!("binding {name}")))
    }

    /// Attaches a bound device to an IOAS or HWPT; returns the HWPT and every
    /// device whose DMA moved (the whole group for its first device).
    pub fn attach(&mut self, device: DevId, pt: impl Into<PtId>) -> Result<(HwptId, Affected)> {
        let pt = pt.into();
        self.ctx
            .device_attach(device.0, pt.0)
            .map(|(hwpt, affected)| (HwptId(hwpt), affected))
            .map_err(|e| Error::new(e, format!("attaching device {} to {}", device.0, pt.0)))
    }

    /// Moves an attached device (and its group) to another IOAS or HWPT at once.
    pub fn replace(&mut self, device: DevId, pt: impl Into<PtId>) -> Result<(HwptId, Affected)> {
        let pt = pt.into();
        self.ctx
            .device_replace(device.0, pt.0)
            .map(|(hwpt, affected)| (HwptId(hwpt), affected))
            .map_err(|e| Error::new(e, format!("replacing device {} onto {}", device.0, pt.0)))
    }

    /// Detaches a device; a device that is not attached is left as it is.
    pub fn detach(&mut self, device: DevId) -> Result<Affected> {
        self.ctx
            .device_detach(device.0)
            .map_err(|e| Error::new(e, format!("detaching device {}", device.0)))
    }

    /// Allocates a paging HWPT for a bound device's IOMMU, filled from `ioas`.
    pub fn alloc_hwpt(
        &mut self,
        device: DevId,
        ioas: IoasId,
        flags: PagingFlags,
    ) -> Result<HwptId> {
        self.ctx
            .hwpt_alloc(
                device.0,
                crate::ops::hwpt::HwptSpec::Paging {
                    ioas: ioas.0,
                    flags,
                    pgsize_bitmap: None,
                },
            )
            .map(HwptId)
            .map_err(err("allocating a HWPT"))
    }

    /// Bound device `device` reads `buf.len()` bytes at `iova` through its
    /// domain, as an emulated device's DMA would.
    pub fn dma_read(
        &mut self,
        device: DevId,
        iova: u64,
        buf: &mut [u8],
    ) -> std::result::Result<(), crate::ops::dma::DmaError> {
        self.ctx.device_dma(device.0, iova, buf, false)
    }

    /// Bound device `device` writes `data` at `iova` through its domain
    /// (setting dirty bits while tracking is on).
    pub fn dma_write(
        &mut self,
        device: DevId,
        iova: u64,
        data: &[u8],
    ) -> std::result::Result<(), crate::ops::dma::DmaError> {
        let mut copy = data.to_vec();
        self.ctx.device_dma(device.0, iova, &mut copy, true)
    }

    /// Starts or stops dirty tracking on a HWPT allocated with it.
    pub fn set_dirty_tracking(&mut self, hwpt: HwptId, enable: bool) -> Result<()> {
        self.ctx
            .hwpt_set_dirty_tracking(hwpt.0, enable)
            .map_err(err("setting dirty tracking"))
    }

    /// What `softiommu inspect` prints.
    pub fn inspect(&self) -> crate::inspect::Report {
        crate::inspect::report(&self.ctx)
    }

    /// The areas of an IOAS.
    pub fn areas(&self, ioas: IoasId) -> Result<Vec<AreaInfo>> {
        let iopt = self.ctx.ioas(ioas.0).map_err(err("listing areas"))?;
        Ok(iopt
            .areas()
            .map(|a| AreaInfo {
                iova: a.start,
                length: a.length(),
                prot: a.prot,
                source: a.pages.describe(a.start_byte),
                pinned_pages: a.pages.pinned(),
            })
            .collect())
    }
}

impl Caller<'_> {
    /// A caller for tests and embedders: `mem`, no descriptors, default credentials.
    pub fn simple<'a>(mem: &'a Arc<dyn AddressSpace>, files: &'a dyn CallerFiles) -> Caller<'a> {
        Caller {
            mem,
            files,
            creds: Credentials::default(),
        }
    }
}
