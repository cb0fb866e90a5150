//! Dma-bufs that one part of the machine exports and another imports: a
//! VFIO function exports a range of a BAR (`VFIO_DEVICE_FEATURE_DMA_BUF`)
//! and an IOAS maps it (`IOMMU_IOAS_MAP_FILE`). The exporter may revoke the
//! memory at any time (a reset, memory decoding turned off, the function
//! closed); every importer then stops using it for good, as Linux's
//! iommufd does (`iopt_revoke_notify`: a revoked mapping never returns,
//! the program unmaps and maps again).

use super::FileBacking;
use crate::errno::Result;
use std::fmt::Debug;
use std::sync::{Arc, Weak};

/// Whoever maps an exported dma-buf: told when its exporter revokes it.
pub trait DmabufImporter: Send + Sync + Debug {
    /// The memory of file `file_id` (a [`FileBacking::id`]) was revoked:
    /// take it out of every domain, for good. Called with the exporter's
    /// locks held (a VFIO function's), never an importer's.
    fn revoke(&self, file_id: u64);
}

/// A dma-buf an exporter made, as an importer finds it by its file.
pub trait ExportedDmabuf: Send + Sync + Debug {
    /// Its size in bytes: the sum of its ranges.
    fn size(&self) -> u64;

    /// The memory to map, with `importer` told of every revoke from now
    /// on: `ENODEV` once revoked, `EOPNOTSUPP` for a dma-buf of more than
    /// one range (iommufd maps one physical range only).
    fn import(self: Arc<Self>, importer: Weak<dyn DmabufImporter>) -> Result<Arc<dyn FileBacking>>;
}
