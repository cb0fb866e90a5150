//! The rust-vmm face (cargo feature `vm-memory`): see [`DeviceIommu`].

use super::{DevId, Iommufd, Result};
use crate::errno::Error;
use crate::pages::physical::{Backing, CHUNK_SIZE};
use crate::pages::EngineState;
use crate::sync::Locked;
use softiommu_iommu::{DeviceId, DomainKind};
use std::sync::Arc;
use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, Iommu, Iotlb,
    MemoryRegionAddress, Permissions,
};

/// The rust-vmm face (cargo feature `vm-memory`): a device's current
/// translation as a [`vm_memory::Iommu`], so that a
/// [`vm_memory::IommuMemory`] over a VMM's guest memory reads and writes
/// where that device's DMA would — through the real page table of the
/// domain its group is attached to, with its permissions, and failing
/// where the device would fault.
///
/// The guest's RAM is mapped into the IOAS by its host addresses (as a VMM
/// maps guest RAM into an iommufd IOAS); a translation then goes IOVA →
/// page-table leaf → pinned page → host address → guest physical address,
/// the address space `IommuMemory`'s backend is indexed by.
///
/// No IOTLB is kept between calls: each [`translate`](Iommu::translate)
/// walks the table for the range it is asked about and answers from a
/// fresh [`Iotlb`], so an unmap is never missed and nothing needs
/// invalidating.
///
/// ```
/// use softiommu_engine::api::{DeviceIommu, Engine};
/// use softiommu_engine::Prot;
/// use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, IommuMemory};
///
/// let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x8000_0000), 1 << 20)]).unwrap();
/// let engine = Engine::new();
/// let mut fd = engine.open();
/// let (dev, _) = fd.bind_device("0000:02:00.0").unwrap();
/// let ioas = fd.alloc_ioas().unwrap();
/// let ram = guest.get_host_address(GuestAddress(0x8000_0000)).unwrap() as u64;
/// let rw = Prot { read: true, write: true };
/// fd.map_user(ioas, ram, 1 << 20, Some(0x10_0000), rw).unwrap();
/// fd.attach(dev, ioas).unwrap();
///
/// let iommu = DeviceIommu::new(&fd, dev, guest.clone()).unwrap();
/// let dma = IommuMemory::new(guest.clone(), iommu, true, ());
/// dma.write_slice(b"hello", GuestAddress(0x10_0010)).unwrap(); // an IOVA
/// let mut back = [0u8; 5];
/// guest.read_slice(&mut back, GuestAddress(0x8000_0010)).unwrap(); // the GPA behind it
/// assert_eq!(&back, b"hello");
/// assert!(dma.write_slice(b"x", GuestAddress(0x90_0000)).is_err()); // unmapped: a fault
/// ```
///
/// `M` is the guest's memory, used to turn the host addresses the IOAS
/// maps into the guest physical addresses `IommuMemory` reads through.
#[derive(Debug)]
pub struct DeviceIommu<M> {
    shared: Arc<EngineState>,
    dev: DeviceId,
    /// The address space the IOAS's user pages belong to: host addresses
    /// mean something only in it.
    space: u64,
    guest: M,
}

impl<M: GuestMemoryBackend> DeviceIommu<M> {
    /// The translation of `dev` (bound through `fd`), whatever domain its
    /// group is attached to now or later; `guest` is the memory `fd` mapped
    /// guest RAM from.
    pub fn new(fd: &Iommufd, dev: DevId, guest: M) -> Result<Self> {
        let device = fd
            .ctx
            .objects()
            .device(dev.0)
            .map_err(|e| Error::new(e, format!("device {}", dev.0)))?
            .dev;
        Ok(DeviceIommu {
            shared: fd.ctx.shared().clone(),
            dev: device,
            space: fd.caller.mem.id(),
            guest,
        })
    }

    /// The guest physical address of host address `host`, if `len` bytes
    /// from it lie in one guest region.
    fn guest_address(&self, host: u64, len: u64) -> Option<GuestAddress> {
        self.guest.iter().find_map(|region| {
            let base = region.get_host_address(MemoryRegionAddress(0)).ok()? as u64;
            let offset = host.checked_sub(base)?;
            (offset.checked_add(len)? <= region.len())
                .then(|| region.start_addr().unchecked_add(offset))
        })
    }
}

/// What a leaf's protection allows, as `vm-memory` says it.
fn permissions(prot: softiommu_pt::Prot) -> Permissions {
    match (prot.read, prot.write) {
        (true, true) => Permissions::ReadWrite,
        (true, false) => Permissions::Read,
        (false, true) => Permissions::Write,
        (false, false) => Permissions::No,
    }
}

impl<M: GuestMemoryBackend + std::fmt::Debug + Send + Sync> Iommu for DeviceIommu<M> {
    type IotlbGuard<'a>
        = Box<Iotlb>
    where
        Self: 'a;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> std::result::Result<IotlbIterator<Box<Iotlb>>, IommuError> {
        let fault = |reason: String| IommuError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason,
        };
        let end = iova
            .0
            .checked_add(length as u64)
            .ok_or_else(|| fault("the range wraps".into()))?;
        let table = {
            let core = self.shared.iommu.locked();
            let domain = core.device_domain(self.dev);
            match core.domain(domain).map(|d| &d.kind) {
                Some(DomainKind::Paging { table, .. }) => table.clone(),
                Some(DomainKind::Blocking) => {
                    return Err(fault("the device's DMA is blocked".into()))
                }
                other => {
                    let kind = other.map_or("no", |k| k.name());
                    return Err(IommuError::IommuMisconfigured {
                        reason: format!(
                            "the device translates through a {kind} domain, not a page table"
                        ),
                    });
                }
            }
        };
        let mut tlb = Iotlb::new();
        {
            let table = table.locked();
            let phys = self.shared.phys.locked();
            let mut at = iova.0;
            while at < end {
                let Some((_, leaf)) = table.lookup(at) else {
                    return Err(fault(format!("translation fault at IOVA {at:#x}")));
                };
                let perm = permissions(leaf.prot);
                if !perm.allow(access) {
                    return Err(fault(format!("permission fault at IOVA {at:#x}")));
                }
                let size = 1u64 << leaf.size_lg2;
                let pa = leaf.pa + (at & (size - 1));
                let n = (size - (at & (size - 1)))
                    .min(CHUNK_SIZE - pa % CHUNK_SIZE)
                    .min(end - at);
                let host = match phys.resolve(pa) {
                    Some((Backing::Memory { mm, va_delta }, byte)) if mm.id() == self.space => {
                        byte.wrapping_add(va_delta)
                    }
                    _ => {
                        return Err(fault(format!(
                            "IOVA {at:#x} maps no memory of this process"
                        )))
                    }
                };
                let gpa = self
                    .guest_address(host, n)
                    .ok_or_else(|| fault(format!("IOVA {at:#x} maps no guest memory")))?;
                tlb.set_mapping(GuestAddress(at), gpa, n as usize, perm)?;
                at += n;
            }
        }
        Iotlb::lookup(Box::new(tlb), iova, length, access)
            .map_err(|_| fault("the walk left a hole".into()))
    }
}
