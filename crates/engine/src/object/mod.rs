//! The object table of one context (Linux `ictx->objects`).
//!
//! IDs are `u32`, allocated lowest-free from 1 (0 is never valid), as the
//! kernel's `XA_FLAGS_ALLOC1` xarray does. Each entry counts its long-term
//! `users`: 1 is the table's own reference; every other object pointing at it
//! adds one. Destroy succeeds only at exactly 1 (else `EBUSY`).

use crate::errno::{Errno, Result};
use crate::iopt::IoPagetable;
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::{DeviceId, DomainId};
use softiommu_pt::AnyPageTable;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Object types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    Ioas,
    Device,
    HwptPaging,
    HwptNested,
    /// The selftest's mock device (`MOCK_DOMAIN`).
    Selftest,
    /// An in-kernel user of an IOAS (Linux `iommufd_access`); not visible to
    /// `IOMMU_DESTROY`: it lives as long as the file that stands for it.
    Access,
    /// The selftest's dma-buf: device memory behind a file, which its exporter
    /// can revoke. Lives as long as its file.
    Dmabuf,
    /// A queue that delivers IO page faults to user space through a file
    /// (`IOMMU_FAULT_QUEUE_ALLOC`); its file holds a user of it.
    FaultQueue,
    /// A virtual IOMMU over a nest-parent HWPT (`IOMMU_VIOMMU_ALLOC`).
    Viommu,
    /// A device's identity inside a vIOMMU (`IOMMU_VDEVICE_ALLOC`).
    Vdevice,
    /// A queue that delivers a vIOMMU's events to user space through a file
    /// (`IOMMU_VEVENTQ_ALLOC`); its file holds a user of it.
    Veventq,
    /// A queue the guest's vIOMMU driver runs in its own memory, which the
    /// (mock) hardware reads (`IOMMU_HW_QUEUE_ALLOC`).
    HwQueue,
}

/// An IO address space.
#[derive(Debug)]
pub struct Ioas {
    pub iopt: IoPagetable,
}

/// A device bound to this context (Linux `struct iommufd_device`).
#[derive(Debug)]
pub struct Device {
    pub dev: DeviceId,
    /// The HWPT it is attached to, and that HWPT's IOAS.
    pub attached: Option<(u32, u32)>,
    /// Its vDEVICE, if a vIOMMU knows it.
    pub vdevice: Option<u32>,
    /// Where its vIOMMU events go: the vIOMMU and virtual id it had when it
    /// attached to a nested HWPT made through that vIOMMU (the mock driver
    /// keeps them until the next attach, even if the vDEVICE goes).
    pub vevent_target: Option<(u32, u64)>,
    /// The mock device's cache, which vIOMMU invalidation clears.
    pub cache: [u32; 4],
    /// HWPTs attached to its PASIDs (each holds a user of the HWPT).
    pub pasids: std::collections::BTreeMap<u32, u32>,
    /// The mock driver's armed fake failure on PASID 1024 (see
    /// [`crate::pasid`]).
    pub pasid_1024_armed: bool,
}

/// A paging HWPT: a domain filled from one IOAS.
#[derive(Debug)]
pub struct HwptPaging {
    /// Made with `IOMMU_HWPT_ALLOC_PASID`: PASIDs may attach to it, and a
    /// device with PASIDs attached may attach its RID only to such HWPTs.
    pub pasid_compat: bool,
    pub ioas: u32,
    pub domain: DomainId,
    pub table: Arc<Mutex<AnyPageTable>>,
    /// Made by an attach to an IOAS; destroyed with its last device.
    pub auto: bool,
    pub flags: PagingFlags,
    /// The fault queue its IO page faults go to (holds a user of it).
    pub fault: Option<u32>,
}

/// A nested HWPT: a user-owned stage 1 over a nest-parent paging HWPT.
#[derive(Debug)]
pub struct HwptNested {
    /// As [`HwptPaging::pasid_compat`].
    pub pasid_compat: bool,
    pub parent: u32,
    pub domain: DomainId,
    pub data_type: u32,
    /// The driver-specific payload it was made with.
    pub data: Vec<u8>,
    /// The mock driver's stage-1 IOTLB, seeded from the payload's first word.
    pub iotlb: [u32; 4],
    /// The fault queue its IO page faults go to (holds a user of it).
    pub fault: Option<u32>,
    /// The vIOMMU it was made through (holds a user of it, not of `parent`).
    pub viommu: Option<u32>,
    /// Stage-1 translations device DMA has walked (a driver format's table in
    /// guest memory), kept until the user invalidates them.
    pub stage1_tlb: softiommu_pt::nested::Stage1Tlb,
}

/// Pages an access pinned, by the access's item id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessItem {
    pub iova: u64,
    pub length: u64,
    /// The IO page table's pin id.
    pub pin: u64,
}

/// An access: an emulated device using an IOAS through the CPU (mdev-style).
#[derive(Debug)]
pub struct Access {
    pub ioas: u32,
    /// Created to pin pages (raises the IOAS alignment to PAGE_SIZE).
    pub needs_pin: bool,
    /// The inode of the file that stands for it.
    pub inode: u64,
    pub items: BTreeMap<u32, AccessItem>,
    pub next_item: u32,
}

/// A dma-buf: memory the engine owns, shared by file descriptor.
#[derive(Debug)]
pub struct Dmabuf {
    pub inode: u64,
    pub memory: std::sync::Arc<crate::memory::SimFile>,
    pub revoked: bool,
}

/// The selftest's mock device: a device object it bound and attached.
#[derive(Debug)]
pub struct Selftest {
    pub device: u32,
}

/// A typed object.
#[derive(Debug)]
pub enum Object {
    Ioas(Box<Ioas>),
    Device(Box<Device>),
    HwptPaging(Box<HwptPaging>),
    HwptNested(Box<HwptNested>),
    Selftest(Box<Selftest>),
    Access(Box<Access>),
    Dmabuf(Box<Dmabuf>),
    FaultQueue(Box<crate::fault_queue::FaultQueue>),
    Viommu(Box<crate::viommu::Viommu>),
    Vdevice(Box<crate::viommu::Vdevice>),
    Veventq(Box<crate::veventq::Veventq>),
    HwQueue(Box<crate::viommu::HwQueue>),
}

impl Object {
    pub fn kind(&self) -> ObjectType {
        match self {
            Object::Ioas(_) => ObjectType::Ioas,
            Object::Device(_) => ObjectType::Device,
            Object::HwptPaging(_) => ObjectType::HwptPaging,
            Object::HwptNested(_) => ObjectType::HwptNested,
            Object::Selftest(_) => ObjectType::Selftest,
            Object::Access(_) => ObjectType::Access,
            Object::Dmabuf(_) => ObjectType::Dmabuf,
            Object::FaultQueue(_) => ObjectType::FaultQueue,
            Object::Viommu(_) => ObjectType::Viommu,
            Object::Vdevice(_) => ObjectType::Vdevice,
            Object::Veventq(_) => ObjectType::Veventq,
            Object::HwQueue(_) => ObjectType::HwQueue,
        }
    }
}

#[derive(Debug)]
struct Entry {
    object: Object,
    users: u32,
}

/// The table. Invariant: `free_ids` holds exactly the ids below `next_id`
/// that no entry uses and that are no tombstones (ids of objects removed as a
/// side effect, which Linux never hands out again in the same context).
#[derive(Debug)]
pub struct ObjectTable {
    entries: BTreeMap<u32, Entry>,
    free_ids: BTreeSet<u32>,
    next_id: u32,
}

impl Default for ObjectTable {
    fn default() -> Self {
        ObjectTable {
            entries: BTreeMap::new(),
            free_ids: BTreeSet::new(),
            next_id: 1,
        }
    }
}

impl ObjectTable {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id the next insert will use.
    pub fn peek_id(&self) -> Result<u32> {
        match self.free_ids.first() {
            Some(&id) => Ok(id),
            None if self.next_id != u32::MAX => Ok(self.next_id),
            None => Err(Errno::ENOSPC),
        }
    }

    /// Inserts a finished object; returns its id.
    pub fn insert(&mut self, object: Object) -> Result<u32> {
        let id = self.peek_id()?;
        if !self.free_ids.remove(&id) {
            self.next_id += 1;
        }
        self.entries.insert(id, Entry { object, users: 1 });
        Ok(id)
    }

    pub fn get(&self, id: u32) -> Option<&Object> {
        self.entries.get(&id).map(|e| &e.object)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Object> {
        self.entries.get_mut(&id).map(|e| &mut e.object)
    }

    pub fn kind(&self, id: u32) -> Option<ObjectType> {
        self.get(id).map(Object::kind)
    }

    /// The IOAS `id`; `ENOENT` when missing or of another type.
    pub fn ioas(&self, id: u32) -> Result<&Ioas> {
        match self.get(id) {
            Some(Object::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas> {
        match self.get_mut(id) {
            Some(Object::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn device(&self, id: u32) -> Result<&Device> {
        match self.get(id) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn device_mut(&mut self, id: u32) -> Result<&mut Device> {
        match self.get_mut(id) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn hwpt(&self, id: u32) -> Result<&HwptPaging> {
        match self.get(id) {
            Some(Object::HwptPaging(h)) => Ok(h),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The nested HWPT whose domain is `domain`.
    pub fn nested_by_domain_mut(
        &mut self,
        domain: softiommu_iommu::DomainId,
    ) -> Option<&mut HwptNested> {
        self.entries.values_mut().find_map(|e| match &mut e.object {
            Object::HwptNested(n) if n.domain == domain => Some(&mut **n),
            _ => None,
        })
    }

    pub fn hwpt_nested(&self, id: u32) -> Result<&HwptNested> {
        match self.get(id) {
            Some(Object::HwptNested(h)) => Ok(h),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn access_mut(&mut self, id: u32) -> Result<&mut Access> {
        match self.get_mut(id) {
            Some(Object::Access(a)) => Ok(a),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn selftest(&self, id: u32) -> Result<&Selftest> {
        match self.get(id) {
            Some(Object::Selftest(t)) => Ok(t),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Every object of one type, by id.
    pub fn ids_of(&self, kind: ObjectType) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| e.object.kind() == kind)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Adds a long-term user to `id` (another object now points at it).
    pub fn add_user(&mut self, id: u32) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.users += 1;
        }
    }

    /// Drops a long-term user of `id`.
    pub fn drop_user(&mut self, id: u32) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.users = e.users.saturating_sub(1).max(1);
        }
    }

    pub fn users(&self, id: u32) -> Option<u32> {
        self.entries.get(&id).map(|e| e.users)
    }

    /// Removes `id` whatever uses it, leaving its id unused for good.
    pub fn remove_as_tombstone(&mut self, id: u32) -> Result<Object> {
        self.entries
            .remove(&id)
            .map(|e| e.object)
            .ok_or(Errno::ENOENT)
    }

    /// Removes `id` if nothing else uses it: `ENOENT` if unknown, `EBUSY` if used.
    pub fn remove(&mut self, id: u32) -> Result<Object> {
        let e = self.entries.get(&id).ok_or(Errno::ENOENT)?;
        if e.users != 1 {
            return Err(Errno::EBUSY);
        }
        let e = self.entries.remove(&id).ok_or(Errno::ENOENT)?;
        self.release_id(id);
        Ok(e.object)
    }

    fn release_id(&mut self, id: u32) {
        if id + 1 == self.next_id {
            self.next_id -= 1;
            while let Some(&last) = self.free_ids.last() {
                if last + 1 != self.next_id {
                    break;
                }
                self.free_ids.remove(&last);
                self.next_id -= 1;
            }
        } else {
            self.free_ids.insert(id);
        }
    }

    /// Ids of objects only the table uses: what teardown can destroy next.
    pub fn leaves(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| e.users == 1)
            .map(|(&id, _)| id)
            .collect()
    }

    pub fn ids(&self) -> Vec<u32> {
        self.entries.keys().copied().collect()
    }
}
