//! In-kernel users of an IOAS (accesses), dma-bufs and the selftest's mock
//! device: state only.

use std::collections::BTreeMap;

/// Pages an access pinned, by the access's item id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessItem {
    /// First IOVA pinned.
    pub iova: u64,
    /// Length pinned, in bytes.
    pub length: u64,
    /// The IO page table's pin id.
    pub pin: u64,
}

/// An access: an emulated device using an IOAS through the CPU (mdev-style).
#[derive(Debug)]
pub struct Access {
    /// Object id of the IOAS it uses.
    pub ioas: u32,
    /// Created to pin pages (raises the IOAS alignment to PAGE_SIZE).
    pub needs_pin: bool,
    /// The inode of the file that stands for it.
    pub inode: u64,
    /// Its pins, by item id.
    pub items: BTreeMap<u32, AccessItem>,
    /// The item id the next pin takes (wraps).
    pub next_item: u32,
}

/// A dma-buf: memory the engine owns, shared by file descriptor.
#[derive(Debug)]
pub struct Dmabuf {
    /// The inode of the file that stands for it.
    pub inode: u64,
    /// The memory behind its file.
    pub memory: std::sync::Arc<crate::memory::SimFile>,
    /// Its exporter revoked it: new maps of it fail with `ENODEV`, and
    /// domains must not map its pages.
    pub revoked: bool,
}

/// The selftest's mock device: a device object it bound and attached.
#[derive(Debug)]
pub struct Selftest {
    /// Object id of the device object.
    pub device: u32,
}
