//! In-kernel users of an IOAS (accesses), dma-bufs and the selftest's mock
//! device: state only.

use std::collections::BTreeMap;

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
