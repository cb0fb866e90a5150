//! An engine: the machine that contexts share, and opening contexts on it.

use super::{Iommufd, OwnedCaller, Result};
use crate::context::{Context, Credentials};
use crate::errno::Error;
use crate::memory::{AddressSpace, CallerFiles, ProcFiles, ProcessMemory};
use crate::pages::EngineState;
use crate::sync::Locked;
use std::sync::Arc;

/// An engine: contexts that share accounting, pin counts and fault injection.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) shared: Arc<EngineState>,
    pub(super) vfio: Arc<crate::vfio::VfioHost>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::with_topology(softiommu_iommu::Topology::default_machine())
    }
}

impl Engine {
    /// An engine for the built-in machine
    /// ([`softiommu_iommu::Topology::default_machine`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// An engine for a machine of the given topology.
    ///
    /// A PCI function the VFIO model cannot build (a BAR past
    /// [`MAX_BAR_MEMORY`](crate::vfio::MAX_BAR_MEMORY)) is left out of
    /// [`vfio`](Self::vfio); [`try_with_topology`](Self::try_with_topology)
    /// says so instead.
    pub fn with_topology(topology: softiommu_iommu::Topology) -> Self {
        let vfio = crate::vfio::VfioHost::with_models(&topology, &crate::devices::model_for)
            .unwrap_or_default();
        Engine {
            shared: Arc::new(EngineState::with_topology(topology)),
            vfio: Arc::new(vfio),
        }
    }

    /// An engine for a machine of the given topology; `EINVAL` when one of
    /// its PCI functions cannot be emulated.
    pub fn try_with_topology(topology: softiommu_iommu::Topology) -> Result<Self> {
        let vfio = crate::vfio::VfioHost::with_models(&topology, &crate::devices::model_for)
            .map_err(|e| Error::new(e, "building the PCI functions"))?;
        Ok(Engine {
            shared: Arc::new(EngineState::with_topology(topology)),
            vfio: Arc::new(vfio),
        })
    }

    /// The machine's PCI functions, to open as VFIO device files.
    pub fn vfio(&self) -> &Arc<crate::vfio::VfioHost> {
        &self.vfio
    }

    /// Sets what each context opened from now on may hold (objects and
    /// IOVA ranges; see [`ContextLimits`](crate::limits::ContextLimits)).
    pub fn set_context_limits(&self, limits: crate::limits::ContextLimits) {
        *self.shared.context_limits.locked() = limits;
    }

    /// State shared by all contexts of this engine.
    pub fn shared(&self) -> &Arc<EngineState> {
        &self.shared
    }

    /// A context acting for this process, with this process's credentials.
    pub fn open(&self) -> Iommufd {
        self.open_as(
            Arc::new(ProcessMemory::current()),
            Box::new(ProcFiles::current()),
            current_credentials(),
        )
    }

    /// A context acting for the given memory, descriptors and credentials.
    pub fn open_as(
        &self,
        mem: Arc<dyn AddressSpace>,
        files: Box<dyn CallerFiles>,
        creds: Credentials,
    ) -> Iommufd {
        Iommufd {
            ctx: Context::new(self.shared.clone()),
            caller: OwnedCaller { mem, files, creds },
        }
    }
}

/// Capability bit numbers (`linux/capability.h`).
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_RESOURCE: u32 = 24;

/// The credentials of this process, read from the kernel.
pub fn current_credentials() -> Credentials {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let memlock = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_MEMLOCK)
        .map(|(soft, _)| soft)
        .unwrap_or(8 << 20);
    Credentials {
        uid: nix::unistd::getuid().as_raw(),
        cap_ipc_lock: cap_eff & (1 << CAP_IPC_LOCK) != 0,
        cap_sys_resource: cap_eff & (1 << CAP_SYS_RESOURCE) != 0,
        memlock_limit: memlock,
    }
}
