//! The built-in machine's VFIO functions driven through device and group
//! files, with a simulated caller: the helpers VFIO tests share.

use softiommu_engine::memory::{AddressSpace, CallerFiles, EventSignal, FileBacking, SimMemory};
use softiommu_engine::pages::EngineState;
use softiommu_engine::vfio::{DeviceFile, GroupFile, GroupReply, SharedContext, VfioFds, VfioHost};
use softiommu_engine::{Arg, Caller, Context, Credentials, Errno, MapArgs, Prot};
use softiommu_iommu::{DeviceState, DomainKind, GroupId, Topology};
use softiommu_uapi::vfio::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// The iommufd descriptor number the resolver knows, and one that is open
/// but no iommufd.
pub const IOMMUFD: i32 = 3;
pub const NOT_IOMMUFD: i32 = 4;

/// An eventfd that counts its signals.
#[derive(Debug, Default)]
pub struct Counter(pub AtomicU64, pub AtomicU64);

impl EventSignal for Counter {
    fn signal(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// As an eventfd's read: takes the signals not taken yet.
    fn wait(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let (signalled, taken) = (self.0.load(Ordering::SeqCst), self.1.load(Ordering::SeqCst));
            if signalled > taken {
                self.1.store(signalled, Ordering::SeqCst);
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

/// The caller's descriptors: eventfds from 10 up, and side files (a fault
/// queue's) as the simulated caller makes them.
#[derive(Debug, Default)]
pub struct Eventfds(
    pub BTreeMap<i32, Arc<Counter>>,
    pub softiommu_engine::memory::SimFiles,
);

impl CallerFiles for Eventfds {
    fn resolve(&self, _fd: i32) -> Result<Arc<dyn FileBacking>, Errno> {
        Err(Errno::EBADF)
    }
    fn eventfd(&self, fd: i32) -> Result<Arc<dyn EventSignal>, Errno> {
        match self.0.get(&fd) {
            Some(c) => Ok(c.clone()),
            None if fd == NOT_IOMMUFD => Err(Errno::EINVAL),
            None => Err(Errno::EBADF),
        }
    }
    fn create_side_file(&self, fd_addr: u64) -> Result<(Option<i32>, u64), Errno> {
        self.1.create_side_file(fd_addr)
    }
    fn inode_of(&self, fd: i32) -> Result<u64, Errno> {
        self.1.inode_of(fd)
    }
}

/// Descriptor numbers of group files: `GROUP_FDS + n` is group `n`'s.
pub const GROUP_FDS: i32 = 20;

/// What the caller's descriptor numbers open for a device file's ioctl,
/// and the descriptor of a dma-buf it exported (a side file of the
/// caller's, the ioctl's return value).
pub struct Fds<'a> {
    pub ctx: SharedContext,
    pub files: &'a Eventfds,
    pub exported: std::cell::Cell<Option<i32>>,
}

impl VfioFds for Fds<'_> {
    fn dmabuf_file(
        &self,
        dmabuf: Arc<dyn softiommu_engine::memory::ExportedDmabuf>,
        _close_on_exec: bool,
    ) -> Result<(), Errno> {
        let (fd, inode) = self.files.create_side_file(u64::MAX)?;
        let shared = self.ctx.lock().unwrap().shared().clone();
        shared.register_dmabuf(inode, dmabuf);
        self.exported.set(fd);
        Ok(())
    }
    fn iommufd(&self, fd: i32) -> Result<SharedContext, Errno> {
        match fd {
            IOMMUFD => Ok(self.ctx.clone()),
            NOT_IOMMUFD => Err(Errno::EBADFD),
            _ => Err(Errno::EBADF),
        }
    }
    fn vfio_group(&self, fd: i32) -> Result<GroupId, Errno> {
        match fd {
            GROUP_FDS..30 => Ok(GroupId((fd - GROUP_FDS) as u32)),
            IOMMUFD | NOT_IOMMUFD => Err(Errno::EINVAL),
            _ => Err(Errno::EBADF),
        }
    }
}

pub struct Machine {
    pub host: VfioHost,
    pub shared: Arc<EngineState>,
    pub ctx: SharedContext,
    pub mem: Arc<dyn AddressSpace>,
    /// The same memory, to map more of it.
    pub sim: Arc<SimMemory>,
    pub files: Eventfds,
}

impl Machine {
    pub fn new() -> Self {
        Self::with(Topology::default_machine())
    }

    pub fn with(topology: Topology) -> Self {
        let host = VfioHost::with_models(&topology, &softiommu_engine::devices::model_for).unwrap();
        let shared = Arc::new(EngineState::with_topology(topology));
        let ctx = Context::new(shared.clone()).into_shared();
        let sim = Arc::new(SimMemory::new());
        sim.map(0x10000, 0x10000, true);
        let mut files = Eventfds::default();
        for fd in 10..16 {
            files.0.insert(fd, Arc::new(Counter::default()));
        }
        Machine {
            host,
            shared,
            ctx,
            mem: sim.clone(),
            sim,
            files,
        }
    }

    pub fn open(&self, name: &str) -> DeviceFile {
        let dev = self.dev(name);
        self.host.open(dev).unwrap()
    }

    pub fn dev(&self, name: &str) -> softiommu_iommu::DeviceId {
        self.shared
            .iommu
            .lock()
            .unwrap()
            .topology()
            .device_by_name(name)
            .unwrap()
    }

    pub fn caller(&self) -> Caller<'_> {
        Caller {
            mem: &self.mem,
            files: &self.files,
            creds: Credentials::default(),
        }
    }

    /// An ioctl with `bytes` as its argument.
    pub fn ioctl(
        &self,
        file: &mut DeviceFile,
        request: u32,
        bytes: &mut [u8],
    ) -> Result<i64, Errno> {
        let fds = Fds {
            ctx: self.ctx.clone(),
            files: &self.files,
            exported: std::cell::Cell::new(None),
        };
        let value = file.ioctl(&self.caller(), request, Arg::Bytes(bytes), &fds)?;
        Ok(fds.exported.get().map_or(value, i64::from))
    }

    pub fn bind(&self, file: &mut DeviceFile) -> Result<u32, Errno> {
        let mut bind = VfioDeviceBindIommufd {
            argsz: 24,
            iommufd: IOMMUFD,
            ..Default::default()
        };
        self.ioctl(file, VFIO_DEVICE_BIND_IOMMUFD, bind.as_mut_bytes())?;
        Ok(bind.out_devid)
    }

    pub fn attach(&self, file: &mut DeviceFile, pt_id: u32) -> Result<u32, Errno> {
        let mut attach = VfioDeviceAttachIommufdPt {
            argsz: 16,
            pt_id,
            ..Default::default()
        };
        self.ioctl(file, VFIO_DEVICE_ATTACH_IOMMUFD_PT, attach.as_mut_bytes())?;
        Ok(attach.pt_id)
    }

    /// Whether a context holds the device, and what its group translates
    /// through.
    pub fn state(&self, name: &str) -> (bool, &'static str) {
        let dev = self.dev(name);
        let core = self.shared.iommu.lock().unwrap();
        let claimed = matches!(core.device_state(dev), DeviceState::Claimed(_));
        let domain = match core.domain(core.device_domain(dev)).map(|d| &d.kind) {
            Some(DomainKind::Default) => "default",
            Some(DomainKind::Blocking) => "blocking",
            Some(DomainKind::Paging { .. }) => "paging",
            _ => "other",
        };
        (claimed, domain)
    }

    pub fn group(&self, group: u32) -> Result<GroupFile, Errno> {
        self.host.open_group(&self.shared, GroupId(group))
    }

    /// A group ioctl with `bytes` as its argument.
    pub fn group_ioctl(
        &self,
        file: &mut GroupFile,
        request: u32,
        bytes: &mut [u8],
    ) -> Result<GroupReply, Errno> {
        let ctx = self.ctx.clone();
        let resolve = move |fd: i32| match fd {
            IOMMUFD => Ok(ctx.clone()),
            NOT_IOMMUFD => Err(Errno::EBADFD),
            _ => Err(Errno::EBADF),
        };
        file.ioctl(&self.caller(), request, Arg::Bytes(bytes), &resolve)
    }

    pub fn status(&self, file: &mut GroupFile) -> u32 {
        let mut status = VfioGroupStatus { argsz: 8, flags: 0 };
        self.group_ioctl(file, VFIO_GROUP_GET_STATUS, status.as_mut_bytes())
            .unwrap();
        status.flags
    }

    pub fn counter(&self, fd: i32) -> u64 {
        self.files.0[&fd].0.load(Ordering::SeqCst)
    }
}

pub fn set_irqs(flags: u32, index: u32, start: u32, count: u32, data: &[u8]) -> Vec<u8> {
    let hdr = VfioIrqSet {
        argsz: (20 + data.len()) as u32,
        flags,
        index,
        start,
        count,
    };
    let mut bytes = hdr.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    bytes
}

pub fn fds(list: &[i32]) -> Vec<u8> {
    list.iter().flat_map(|fd| fd.to_ne_bytes()).collect()
}

impl Machine {
    /// A function driven as a user-space driver sets it up: `bdf` opened and
    /// bound, an IOAS mapping each `(address, length, prot)` of the
    /// caller's memory at the same IOVA (mapped in the simulated memory
    /// first), attached, bus mastering on, and MSI-X vector `vector` wired
    /// to eventfd `eventfd`. Returns the file and the IOAS.
    pub fn driven(
        &self,
        bdf: &str,
        regions: &[(u64, u64, Prot)],
        vector: u32,
        eventfd: i32,
    ) -> (DeviceFile, u32) {
        let mut file = self.open(bdf);
        self.bind(&mut file).unwrap();
        let ioas = self.ctx.lock().unwrap().ioas_alloc().unwrap();
        for &(va, length, prot) in regions {
            self.sim.map(va, length, prot.write);
            let args = MapArgs {
                iova: Some(va),
                length,
                prot,
            };
            self.ctx
                .lock()
                .unwrap()
                .ioas_map(&self.caller(), ioas, va, args)
                .unwrap();
        }
        self.attach(&mut file, ioas).unwrap();
        let config = region(VFIO_PCI_CONFIG_REGION_INDEX);
        file.write(config + 4, &0x6u16.to_le_bytes()).unwrap();
        let mut irq = set_irqs(
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            VFIO_PCI_MSIX_IRQ_INDEX,
            vector,
            1,
            &eventfd.to_ne_bytes(),
        );
        self.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut irq)
            .unwrap();
        (file, ioas)
    }
}

/// The file offset of region `index` (a BAR, or configuration space).
pub fn region(index: u32) -> u64 {
    u64::from(index) << VFIO_PCI_OFFSET_SHIFT
}

/// The little-endian `u64` of region `index` at `offset`, read through the
/// device file.
pub fn read_u64(file: &DeviceFile, index: u32, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    file.read(region(index) + offset, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A machine of one function, `bdf` with device model `model`, alone in a
/// group behind an IOMMU of driver `driver` (`amd_v1`, `intel_vtd`, ...).
pub fn alone_behind(driver: &str, bdf: &str, model: &str) -> Topology {
    Topology::builder()
        .iommu(
            "iommu0",
            softiommu_iommu::DriverInfo::by_name(driver).unwrap(),
        )
        .group("iommu0", &[bdf])
        .unwrap()
        .model(bdf, model)
        .unwrap()
        .build()
}
