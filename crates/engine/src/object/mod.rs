//! The object table of one context (Linux `ictx->objects`).
//!
//! IDs are `u32`, allocated lowest-free from 1 (0 is never valid), as the
//! kernel's `XA_FLAGS_ALLOC1` xarray does. Each entry counts its long-term
//! `users`: 1 is the table's own reference; every other object pointing at it
//! adds one. Destroy succeeds only at exactly 1 (else `EBUSY`).

use crate::errno::{Errno, Result};
use crate::ioas::IoPagetable;
use std::collections::{BTreeMap, BTreeSet};

mod access;
mod device;
mod eventq;
mod mmap;
mod viommu;

pub use access::{Access, AccessItem, Dmabuf, Selftest};
pub use device::{Device, HwptNested, HwptPaging};
pub use eventq::{AwaitingFault, FaultQueue, PageRequest, Veventq};
pub use mmap::MmapRegion;
pub use viommu::{HwQueue, Vdevice, Viommu};

/// State a driver keeps with an object, as Linux drivers embed the core's
/// struct in their own and reach it with `container_of`. The engine's core
/// never looks inside; only the driver that made it downcasts it.
#[derive(Default)]
pub struct DriverData(Option<Box<dyn std::any::Any + Send>>);

impl DriverData {
    /// Driver state `value`.
    pub fn new<T: std::any::Any + Send>(value: T) -> Self {
        DriverData(Some(Box::new(value)))
    }

    /// The state, if it is a `T`.
    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.as_ref()?.downcast_ref()
    }

    /// The state for changing, if it is a `T`.
    pub fn get_mut<T: std::any::Any>(&mut self) -> Option<&mut T> {
        self.0.as_mut()?.downcast_mut()
    }
}

impl std::fmt::Debug for DriverData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DriverData(..)"
        } else {
            "DriverData(none)"
        })
    }
}

/// Object types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    /// An IO address space (`IOMMU_IOAS_ALLOC`).
    Ioas,
    /// A device bound to the context (Linux `iommufd_device`).
    Device,
    /// A paging HWPT: a domain filled from one IOAS.
    HwptPaging,
    /// A nested HWPT: a user-owned stage 1 over a nest-parent paging HWPT.
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

impl ObjectType {
    /// The type's name as Linux's `enum iommufd_object_type` spells it
    /// (without the prefix), as `inspect` shows it.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::Ioas => "IOAS",
            ObjectType::Device => "DEVICE",
            ObjectType::HwptPaging => "HWPT_PAGING",
            ObjectType::HwptNested => "HWPT_NESTED",
            ObjectType::Selftest => "SELFTEST",
            ObjectType::Access => "ACCESS",
            ObjectType::Dmabuf => "DMABUF",
            ObjectType::FaultQueue => "FAULT",
            ObjectType::Viommu => "VIOMMU",
            ObjectType::Vdevice => "VDEVICE",
            ObjectType::Veventq => "VEVENTQ",
            ObjectType::HwQueue => "HW_QUEUE",
        }
    }
}

/// An IO address space.
#[derive(Debug)]
pub struct Ioas {
    /// Its IO page table.
    pub iopt: IoPagetable,
}

/// A typed object.
#[derive(Debug)]
pub enum Object {
    /// An IO address space.
    Ioas(Box<Ioas>),
    /// A bound device.
    Device(Box<Device>),
    /// A paging HWPT.
    HwptPaging(Box<HwptPaging>),
    /// A nested HWPT.
    HwptNested(Box<HwptNested>),
    /// The selftest's mock device.
    Selftest(Box<Selftest>),
    /// An in-kernel user of an IOAS.
    Access(Box<Access>),
    /// The selftest's dma-buf.
    Dmabuf(Box<Dmabuf>),
    /// An IO page-fault queue.
    FaultQueue(Box<FaultQueue>),
    /// A virtual IOMMU.
    Viommu(Box<Viommu>),
    /// A device's identity inside a vIOMMU.
    Vdevice(Box<Vdevice>),
    /// A vIOMMU event queue.
    Veventq(Box<Veventq>),
    /// A vIOMMU's HW queue.
    HwQueue(Box<HwQueue>),
}

impl Object {
    /// Its type.
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
/// side effect, which Linux never hands out again in the same context);
/// `entries` never holds more than `limit` objects.
#[derive(Debug)]
pub struct ObjectTable {
    entries: BTreeMap<u32, Entry>,
    free_ids: BTreeSet<u32>,
    next_id: u32,
    limit: u32,
}

impl Default for ObjectTable {
    fn default() -> Self {
        Self::with_limit(u32::MAX)
    }
}

impl ObjectTable {
    /// An empty table that holds at most `limit` live objects.
    pub fn with_limit(limit: u32) -> Self {
        ObjectTable {
            entries: BTreeMap::new(),
            free_ids: BTreeSet::new(),
            next_id: 1,
            limit,
        }
    }

    /// Whether no object is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The id the next insert will use: `ENOMEM` when the table is at its
    /// limit (where Linux's memory cgroup would refuse the allocation),
    /// `ENOSPC` when no id is left.
    pub fn peek_id(&self) -> Result<u32> {
        if self.entries.len() >= self.limit as usize {
            return Err(Errno::ENOMEM);
        }
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

    /// The object `id`, if live.
    pub fn get(&self, id: u32) -> Option<&Object> {
        self.entries.get(&id).map(|e| &e.object)
    }

    /// The object `id`, if live.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Object> {
        self.entries.get_mut(&id).map(|e| &mut e.object)
    }

    /// The type of object `id`, if live.
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

    /// The IOAS `id`; `ENOENT` when missing or of another type.
    pub fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas> {
        match self.get_mut(id) {
            Some(Object::Ioas(i)) => Ok(i),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The device `id`; `ENOENT` when missing or of another type.
    pub fn device(&self, id: u32) -> Result<&Device> {
        match self.get(id) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The device `id`; `ENOENT` when missing or of another type.
    pub fn device_mut(&mut self, id: u32) -> Result<&mut Device> {
        match self.get_mut(id) {
            Some(Object::Device(d)) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The paging HWPT `id`; `ENOENT` when missing or of another type.
    pub fn hwpt_paging(&self, id: u32) -> Result<&HwptPaging> {
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

    /// The nested HWPT `id`; `ENOENT` when missing or of another type.
    pub fn hwpt_nested(&self, id: u32) -> Result<&HwptNested> {
        match self.get(id) {
            Some(Object::HwptNested(h)) => Ok(h),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The access `id`; `ENOENT` when missing or of another type.
    pub fn access_mut(&mut self, id: u32) -> Result<&mut Access> {
        match self.get_mut(id) {
            Some(Object::Access(a)) => Ok(a),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The selftest mock device `id`; `ENOENT` when missing or of another type.
    pub fn selftest(&self, id: u32) -> Result<&Selftest> {
        match self.get(id) {
            Some(Object::Selftest(t)) => Ok(t),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The vIOMMU `id`; `ENOENT` when missing or of another type.
    pub fn viommu(&self, id: u32) -> Result<&Viommu> {
        match self.get(id) {
            Some(Object::Viommu(v)) => Ok(v),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The vDEVICE `id`; `ENOENT` when missing or of another type.
    pub fn vdevice(&self, id: u32) -> Result<&Vdevice> {
        match self.get(id) {
            Some(Object::Vdevice(v)) => Ok(v),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The device object vIOMMU `viommu` knows by `virt_id`.
    pub fn device_by_virt_id(&self, viommu: u32, virt_id: u64) -> Option<u32> {
        let vdev = *self.viommu(viommu).ok()?.vdevs.get(&virt_id)?;
        self.vdevice(vdev).ok().map(|v| v.device)
    }

    /// The nested HWPTs made through vIOMMU `viommu`.
    pub fn nested_of_viommu(&self, viommu: u32) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(&e.object, Object::HwptNested(n) if n.viommu == Some(viommu)))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Every live object as `(id, type name)`, by id.
    pub fn kinds(&self) -> Vec<(u32, &'static str)> {
        self.entries
            .iter()
            .map(|(&id, e)| (id, e.object.kind().name()))
            .collect()
    }

    /// Ids of the live objects of type `kind`, ascending.
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

    /// Long-term users of `id` (1: only the table's); `None` if not live.
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

    /// Every live id, ascending.
    pub fn ids(&self) -> Vec<u32> {
        self.entries.keys().copied().collect()
    }
}
