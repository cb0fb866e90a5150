//! A context: what one open of `/dev/iommu` holds (Linux `struct iommufd_ctx`),
//! and the operations on its IO address spaces that both the ioctl decoder and
//! the typed API call.
//!
//! Ownership: a context owns its object table; objects own their state; pages
//! are shared (`Arc`) between areas that `IOAS_COPY` made alike. Accounting and
//! global pin counts live in [`Shared`], one per engine, because a page pinned
//! through two contexts is still one page.

use crate::errno::{Errno, Result};
use crate::iopt::{IoPagetable, PagesSlice, Prot, ReservedOwner, ULONG_MAX};
use crate::memory::{AddressSpace, FileBacking, FileResolver, PAGE_SIZE};
use crate::object::{Ioas, Object, ObjectTable};
use crate::pages::{AccountMode, AccountOwner, Pages, Shared, Source};
use std::sync::Arc;

/// Who is calling: their memory, their descriptors and their privileges.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    pub mem: &'a Arc<dyn AddressSpace>,
    pub files: &'a dyn FileResolver,
    pub creds: Credentials,
}

/// The parts of a task's credentials iommufd looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    /// Pins are not charged (`CAP_IPC_LOCK`).
    pub cap_ipc_lock: bool,
    /// May change the accounting mode (`CAP_SYS_RESOURCE`).
    pub cap_sys_resource: bool,
    /// `RLIMIT_MEMLOCK` in bytes.
    pub memlock_limit: u64,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            uid: 1000,
            cap_ipc_lock: false,
            cap_sys_resource: false,
            memlock_limit: 8 << 20,
        }
    }
}

/// Arguments of a map from the caller's memory or from a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapArgs {
    /// `Some(iova)` for a fixed IOVA, `None` to allocate one.
    pub iova: Option<u64>,
    pub length: u64,
    pub prot: Prot,
}

/// One context. Not `Sync`: a server serialises calls on one context.
#[derive(Debug)]
pub struct Context {
    shared: Arc<Shared>,
    pub(crate) objects: ObjectTable,
    /// The IOAS the VFIO compatibility ioctls act on.
    pub(crate) vfio_ioas: Option<u32>,
    /// `IOMMU_OPTION_RLIMIT_MODE`: charge new maps to the process (`Mm`)
    /// rather than to the user.
    pub(crate) account_mm: bool,
    /// The selftest's temporary-memory limit (it only changes batching).
    pub(crate) temp_memory_limit: u32,
    /// This context as a DMA owner in the IOMMU core.
    pub(crate) owner: softiommu_iommu::OwnerId,
    /// Objects that stand behind a file of the caller, by the file's inode.
    pub(crate) side_files: std::collections::HashMap<u64, u32>,
    /// Bytes for the transport to write to side files after this call.
    pub(crate) side_output: Vec<(u64, Vec<u8>)>,
    /// The next PRI page-request group index device DMA faults use.
    pub(crate) page_request_group: u32,
    /// Regions mappable through the descriptor, by offset.
    pub(crate) mmap_regions: std::collections::BTreeMap<u64, crate::mmap::MmapRegion>,
}

static NEXT_OWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Context {
    pub fn new(shared: Arc<Shared>) -> Self {
        let owner =
            softiommu_iommu::OwnerId(NEXT_OWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Context {
            shared,
            objects: ObjectTable::default(),
            vfio_ioas: None,
            account_mm: false,
            temp_memory_limit: 65536,
            owner,
            side_files: std::collections::HashMap::new(),
            side_output: Vec::new(),
            mmap_regions: std::collections::BTreeMap::new(),
            page_request_group: 0,
        }
    }

    /// This context as a DMA owner in the IOMMU core.
    pub fn owner_id(&self) -> softiommu_iommu::OwnerId {
        self.owner
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn objects(&self) -> &ObjectTable {
        &self.objects
    }

    /// The IOAS `id`, for inspection.
    pub fn ioas(&self, id: u32) -> Result<&IoPagetable> {
        Ok(&self.objects.ioas(id)?.iopt)
    }

    /// The IOAS `id`, for pinning and emulated device access.
    pub fn ioas_mut(&mut self, id: u32) -> Result<&mut IoPagetable> {
        Ok(&mut self.objects.ioas_mut(id)?.iopt)
    }

    fn owner_for(&self, caller: &Caller<'_>) -> AccountOwner {
        let mode = if caller.creds.cap_ipc_lock {
            AccountMode::None
        } else if self.account_mm {
            AccountMode::Mm
        } else {
            AccountMode::User
        };
        AccountOwner {
            mode,
            uid: caller.creds.uid,
            mm: caller.mem.id(),
            limit_bytes: caller.creds.memlock_limit,
        }
    }

    /// Allocates an IOAS (object creation can fail under fault injection).
    pub fn ioas_alloc(&mut self) -> Result<u32> {
        self.shared.faults.check()?;
        let iopt = IoPagetable::new(self.shared.faults.clone());
        self.objects.insert(Object::Ioas(Box::new(Ioas { iopt })))
    }

    /// Destroys any object: `ENOENT` unknown, `EBUSY` in use.
    pub fn destroy(&mut self, id: u32) -> Result<()> {
        // Accesses are not user objects: only their file's close ends them.
        if matches!(
            self.objects.kind(id),
            Some(crate::object::ObjectType::Access | crate::object::ObjectType::Dmabuf)
        ) {
            return Err(Errno::ENOENT);
        }
        let object = self.objects.remove(id)?;
        if self.vfio_ioas == Some(id) {
            self.vfio_ioas = None;
        }
        self.destroy_object(id, object);
        Ok(())
    }

    pub(crate) fn destroy_object(&mut self, id: u32, object: Object) {
        match object {
            Object::Ioas(mut ioas) => {
                ioas.iopt.release_all_pins();
                let _ = ioas.iopt.unmap_all();
            }
            Object::Device(dev) => self.destroy_device(*dev),
            Object::HwptPaging(hwpt) => self.destroy_hwpt(id, *hwpt),
            Object::HwptNested(hwpt) => self.destroy_nested(*hwpt),
            Object::Access(a) => self.destroy_access(*a),
            Object::Dmabuf(d) => {
                self.side_files.remove(&d.inode);
            }
            Object::FaultQueue(q) => {
                self.side_files.remove(&q.inode);
            }
            Object::Viommu(v) => self.destroy_viommu(*v),
            Object::Vdevice(v) => self.destroy_vdevice(*v),
            Object::Veventq(q) => self.destroy_veventq(*q),
            Object::HwQueue(q) => self.destroy_hw_queue(id, *q),
            Object::Selftest(t) => {
                self.objects.drop_user(t.device);
                let _ = self.destroy(t.device);
            }
        }
    }

    /// Maps `length` bytes of the caller's memory at `user_va`.
    pub fn ioas_map(
        &mut self,
        caller: &Caller<'_>,
        ioas: u32,
        user_va: u64,
        args: MapArgs,
    ) -> Result<u64> {
        let owner = self.owner_for(caller);
        // Fail an unknown IOAS before building anything.
        self.objects.ioas(ioas)?;
        user_va.checked_add(args.length).ok_or(Errno::EOVERFLOW)?;
        let base = user_va & !(PAGE_SIZE - 1);
        let start_byte = user_va - base;
        let pages = Pages::new(
            Source::User {
                mm: caller.mem.clone(),
                base,
            },
            start_byte,
            args.length,
            args.prot.write,
            owner,
            &self.shared,
        )?;
        let slice = PagesSlice {
            pages,
            start_byte,
            length: args.length,
        };
        self.ioas_mut(ioas)?
            .map_pages(&[slice], args.length, args.iova, args.prot)
    }

    /// Maps `length` bytes of `file` from byte `start`.
    pub fn ioas_map_file(
        &mut self,
        caller: &Caller<'_>,
        ioas: u32,
        file: Arc<dyn FileBacking>,
        start: u64,
        args: MapArgs,
    ) -> Result<u64> {
        let owner = self.owner_for(caller);
        self.objects.ioas(ioas)?;
        if args.prot.write && !file.writable() {
            return Err(Errno::EPERM);
        }
        if args.length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(args.length - 1).ok_or(Errno::EOVERFLOW)?;
        if last >= file.size()? {
            return Err(Errno::EINVAL);
        }
        let base = start & !(PAGE_SIZE - 1);
        let start_byte = start - base;
        let pages = Pages::new(
            Source::File { file, base },
            start_byte,
            args.length,
            args.prot.write,
            owner,
            &self.shared,
        )?;
        let slice = PagesSlice {
            pages,
            start_byte,
            length: args.length,
        };
        self.ioas_mut(ioas)?
            .map_pages(&[slice], args.length, args.iova, args.prot)
    }

    /// Shares the pages behind `[src_iova, +length)` of `src` into `dst`.
    pub fn ioas_copy(&mut self, dst: u32, src: u32, src_iova: u64, args: MapArgs) -> Result<u64> {
        let slices = self
            .objects
            .ioas(src)?
            .iopt
            .get_pages(src_iova, args.length)?;
        self.ioas_mut(dst)?
            .map_pages(&slices, args.length, args.iova, args.prot)
    }

    /// Unmaps `[iova, +length)`; `(0, u64::MAX)` unmaps everything.
    pub fn ioas_unmap(&mut self, ioas: u32, iova: u64, length: u64) -> Result<u64> {
        let all = iova == 0 && length == u64::MAX;
        let attempt = |ctx: &mut Context| -> Result<u64> {
            let iopt = ctx.ioas_mut(ioas)?;
            if all {
                return iopt.unmap_all();
            }
            if iova == ULONG_MAX || length == ULONG_MAX {
                return Err(Errno::EOVERFLOW);
            }
            iopt.unmap(iova, length)
        };
        match attempt(self) {
            // Areas pinned by accesses: they give their pins up, then retry.
            Err(Errno::EBUSY) => {
                let last = if all {
                    u64::MAX
                } else {
                    iova.saturating_add(length - 1)
                };
                if self.notify_accesses(ioas, if all { 0 } else { iova }, last) {
                    attempt(self)
                } else {
                    Err(Errno::EBUSY)
                }
            }
            other => other,
        }
    }

    /// Replaces the allowed ranges; each must have `start < last` and none may
    /// overlap another (`EINVAL`), nor a reserved range (`EADDRINUSE`).
    pub fn ioas_allow_iovas(&mut self, ioas: u32, ranges: &[(u64, u64)]) -> Result<()> {
        self.objects.ioas(ioas)?;
        let mut checked: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for &(s, l) in ranges {
            if s >= l || checked.iter().any(|&(cs, cl)| s <= cl && cs <= l) {
                return Err(Errno::EINVAL);
            }
            self.shared.faults.check()?;
            checked.push((s, l));
        }
        self.ioas_mut(ioas)?.set_allowed(&checked)
    }

    /// Reserves `[start, start + length)` (the selftest's `ADD_RESERVED`).
    pub fn ioas_add_reserved(&mut self, ioas: u32, start: u64, length: u64) -> Result<()> {
        // The range is checked before the IOAS is looked up, as in Linux.
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = start.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.ioas_mut(ioas)?
            .reserve(start, last, ReservedOwner::User)
    }

    /// `IOMMU_IOAS_CHANGE_PROCESS`: charge every file-backed map to the caller.
    pub fn ioas_change_process(&mut self, caller: &Caller<'_>) -> Result<()> {
        let owner = self.owner_for(caller);
        let ids = self.objects.ids();
        let ioas_ids: Vec<u32> = ids
            .into_iter()
            .filter(|&id| self.objects.ioas(id).is_ok())
            .collect();
        for &id in &ioas_ids {
            if self
                .objects
                .ioas(id)?
                .iopt
                .areas()
                .any(|a| !a.pages.is_file())
            {
                return Err(Errno::EINVAL);
            }
        }
        let mut done: Vec<(Arc<Pages>, AccountOwner)> = Vec::new();
        for &id in &ioas_ids {
            let previous: Vec<(Arc<Pages>, AccountOwner)> = self
                .objects
                .ioas(id)?
                .iopt
                .areas()
                .map(|a| (a.pages.clone(), a.pages.owner()))
                .collect();
            if let Err(e) = self.ioas_mut(id)?.change_owner(owner) {
                for (pages, prev) in done.into_iter().rev() {
                    let _ = pages.change_owner(prev);
                }
                return Err(e);
            }
            done.extend(previous);
        }
        Ok(())
    }

    /// Destroys every object, leaves first; never fails (Linux `iommufd_fops_release`).
    pub fn close(&mut self) {
        // A fault queue's open file outlives the context here (Linux keeps
        // the context for it instead): the queue stops delivering.
        for id in self.objects.ids_of(crate::object::ObjectType::FaultQueue) {
            self.fault_queue_file_closed(id);
        }
        for id in self.objects.ids_of(crate::object::ObjectType::Veventq) {
            self.veventq_file_closed(id);
        }
        while !self.objects.is_empty() {
            let leaves = self.objects.leaves();
            if leaves.is_empty() {
                break;
            }
            for id in leaves {
                if let Ok(object) = self.objects.remove(id) {
                    self.destroy_object(id, object);
                }
            }
        }
        self.vfio_ioas = None;
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        self.close();
    }
}
