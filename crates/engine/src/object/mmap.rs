//! A region user space maps through the `/dev/iommu` descriptor: state only.

/// A region. Invariant: regions of a context never overlap, start at or
/// after `PAGE_SIZE` and have page-aligned offsets and lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmapRegion {
    /// Unique across the engine, so a transport's cache never confuses a
    /// region with a later one at the same offset.
    pub region_id: u64,
    /// Length in bytes (page-aligned).
    pub length: u64,
    /// The object whose region it is.
    pub owner: u32,
    /// Its contents when first mapped (the rest is zero).
    pub contents: Vec<u8>,
}
