//! What every context of one engine shares: accounting, the global pin table,
//! the synthetic physical map, the fail-nth hook and the IOMMU core.

use super::pin_table::PinTable;
use super::{Accounting, Frame};
use crate::fail_nth::FailNth;
use crate::limits::ContextLimits;
use crate::memory::ExportedDmabuf;
use crate::pages::physical::{Backing, PhysMap};
use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// State shared by every context of one engine: accounting, global pin
/// counts and the fault-injection hook.
#[derive(Debug, Default)]
pub struct EngineState {
    /// Locked-memory counters of every user and address space.
    pub accounting: Accounting,
    /// Pins per frame, of every context. Lock order: before `phys`.
    pins: Mutex<PinTable>,
    /// Addresses of pinned frames. Lock order: after `pins`.
    pub phys: Mutex<PhysMap>,
    /// The fault-injection hook every context of the engine consults.
    pub fail_nth: FailNth,
    /// The machine's IOMMU core. Lock order: before any IO page table's
    /// domains and before `pins`.
    pub iommu: Mutex<softiommu_iommu::IommuCore>,
    /// What each context opened from now on may hold.
    pub context_limits: Mutex<ContextLimits>,
    /// Dma-bufs exported by VFIO functions, by the inode of the file that
    /// stands for each (an importer names it by a descriptor). An entry
    /// lives while that file is open. Lock order: a leaf.
    dmabufs: Mutex<HashMap<u64, Arc<dyn ExportedDmabuf>>>,
}

impl EngineState {
    /// State for a machine of the given topology.
    pub fn with_topology(topology: softiommu_iommu::Topology) -> Self {
        EngineState {
            iommu: Mutex::new(softiommu_iommu::IommuCore::new(topology)),
            ..EngineState::default()
        }
    }
}

impl EngineState {
    /// Makes `dmabuf` findable by its file's inode.
    pub fn register_dmabuf(&self, inode: u64, dmabuf: Arc<dyn ExportedDmabuf>) {
        self.dmabufs.locked().insert(inode, dmabuf);
    }

    /// Forgets the dma-buf of inode `inode` (its file's last close); what
    /// already maps it keeps it.
    pub fn forget_dmabuf(&self, inode: u64) {
        self.dmabufs.locked().remove(&inode);
    }

    /// The exported dma-buf whose file has inode `inode`.
    pub fn exported_dmabuf(&self, inode: u64) -> Option<Arc<dyn ExportedDmabuf>> {
        self.dmabufs.locked().get(&inode).cloned()
    }

    /// Pins held on a frame by every `Pages` of every context (`MD_CHECK_REFS`).
    pub fn pin_count(&self, frame: Frame) -> u32 {
        self.pins.locked().count(frame)
    }

    /// Frames pinned anywhere.
    pub fn pinned_frames(&self) -> usize {
        self.pins.locked().frames() as usize
    }

    /// One more pin on each of the `len` frames from `first`; frames pinned
    /// for the first time get their addresses, reached through `backing`
    /// (`gigantic`: they lie in a 1 GiB huge page).
    pub(super) fn pin_frames(&self, first: Frame, len: u64, backing: &Backing, gigantic: bool) {
        let mut pins = self.pins.locked();
        let mut phys = self.phys.locked();
        pins.pin(first, len, &mut phys, backing, gigantic);
    }

    /// One pin fewer on each of the `len` frames from `first`; frames no
    /// longer pinned lose their addresses.
    pub(super) fn unpin_frames(&self, first: Frame, len: u64) {
        let mut pins = self.pins.locked();
        let mut phys = self.phys.locked();
        pins.unpin(first, len, &mut phys);
    }

    /// The synthetic physical address of a pinned frame.
    pub fn address_of(&self, frame: Frame) -> Option<u64> {
        self.phys.locked().address(frame)
    }
}
