//! A context: what one open of `/dev/iommu` holds (Linux `struct iommufd_ctx`),
//! and the operations on its IO address spaces that both the ioctl decoder and
//! the typed API call.
//!
//! Ownership: a context owns its object table; objects own their state; pages
//! are shared (`Arc`) between areas that `IOAS_COPY` made alike. Accounting and
//! global pin counts live in [`EngineState`], one per engine, because a page pinned
//! through two contexts is still one page.

use crate::errno::Result;
use crate::ioas::{IoPagetable, Prot};
use crate::limits::RangeBudget;
use crate::memory::{AddressSpace, CallerFiles};
use crate::object::ObjectTable;
use crate::pages::{AccountMode, AccountOwner, EngineState};
use crate::sync::Locked;
use std::sync::Arc;

/// Who is calling: their memory, their descriptors and their privileges.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    /// The caller's memory: where ioctl arguments and user pages to map live
    /// (Linux: its `mm`).
    pub mem: &'a Arc<dyn AddressSpace>,
    /// The caller's file descriptors.
    pub files: &'a dyn CallerFiles,
    /// The caller's credentials.
    pub creds: Credentials,
}

/// The parts of a task's credentials iommufd looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user charged for pins in per-user accounting mode.
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
    /// Length of the mapping in bytes.
    pub length: u64,
    /// Access rights of the mapping.
    pub prot: Prot,
}

/// One context. Not `Sync`: a server serialises calls on one context.
#[derive(Debug)]
pub struct Context {
    pub(crate) shared: Arc<EngineState>,
    pub(crate) objects: ObjectTable,
    /// The IOAS the VFIO compatibility ioctls act on.
    /// Opened as the legacy VFIO container (`/dev/vfio/vfio`): maps of
    /// device memory (a VFIO BAR a program mapped) are followed, as
    /// `vfio_iommu_type1` does, where iommufd refuses them.
    pub(crate) legacy_vfio_container: bool,
    pub(crate) vfio_ioas: Option<u32>,
    /// `IOMMU_OPTION_RLIMIT_MODE`: charge new maps to the process (`Mm`)
    /// rather than to the user.
    pub(crate) account_mm: bool,
    /// This context as a DMA owner in the IOMMU core.
    pub(crate) owner: softiommu_iommu::OwnerId,
    /// Objects that stand behind a file of the caller, by the file's inode.
    pub(crate) side_files: std::collections::HashMap<u64, u32>,
    /// Bytes for the transport to write to side files after this call.
    pub(crate) side_output: Vec<(u64, Vec<u8>)>,
    /// The next PRI page-request group index device DMA faults use.
    pub(crate) page_request_group: u32,
    /// Regions mappable through the descriptor, by offset.
    pub(crate) mmap_regions: std::collections::BTreeMap<u64, crate::object::MmapRegion>,
    /// The IOVA ranges its IOASes hold, against its limit.
    pub(crate) ranges: RangeBudget,
    /// The context itself as [`into_shared`](Context::into_shared) made it:
    /// how a dma-buf it imports reaches it to revoke (`None` for a context
    /// never shared that way, which cannot import one).
    pub(crate) me: Option<std::sync::Weak<std::sync::Mutex<Context>>>,
}

/// A context as servers and VFIO files hold it: one lock per context.
pub type SharedContext = Arc<std::sync::Mutex<Context>>;

static NEXT_OWNER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Context {
    /// An empty context (no objects) of the engine whose shared state is
    /// `shared`.
    pub fn new(shared: Arc<EngineState>) -> Self {
        let owner =
            softiommu_iommu::OwnerId(NEXT_OWNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let limits = *shared.context_limits.locked();
        Context {
            shared,
            objects: ObjectTable::with_limit(limits.objects),
            ranges: RangeBudget::new(limits.ranges),
            vfio_ioas: None,
            legacy_vfio_container: false,
            account_mm: false,
            owner,
            side_files: std::collections::HashMap::new(),
            side_output: Vec::new(),
            mmap_regions: std::collections::BTreeMap::new(),
            page_request_group: 0,
            me: None,
        }
    }

    /// The context behind its lock, knowing itself there (so that an
    /// exporter of a dma-buf it maps can reach it).
    pub fn into_shared(self) -> SharedContext {
        Arc::new_cyclic(|me| {
            let mut context = self;
            context.me = Some(me.clone());
            std::sync::Mutex::new(context)
        })
    }

    /// Marks the context as opened through `/dev/vfio/vfio`, the legacy
    /// VFIO container (see [`Context`]'s `legacy_vfio_container`).
    pub fn set_legacy_vfio_container(&mut self) {
        self.legacy_vfio_container = true;
    }

    /// This context as a DMA owner in the IOMMU core.
    pub fn owner_id(&self) -> softiommu_iommu::OwnerId {
        self.owner
    }

    /// State shared with every context of the same engine.
    pub fn shared(&self) -> &Arc<EngineState> {
        &self.shared
    }

    /// Its object table (Linux `ictx->objects`).
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

    pub(crate) fn owner_for(&self, caller: &Caller<'_>) -> AccountOwner {
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
}

impl Drop for Context {
    fn drop(&mut self) {
        self.close();
    }
}
