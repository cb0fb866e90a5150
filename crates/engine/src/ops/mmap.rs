//! Regions user space maps through the `/dev/iommu` descriptor (Linux
//! `iommufd_mmap`): a driver gives an object (the mock vIOMMU) memory that
//! the VMM maps with `mmap(fd, offset)` at the offset the driver reported.
//!
//! Linux's rules: offsets come from a per-context allocator that starts
//! after the first page (so none is 0) and are page aligned; a mapping must
//! be shared, not executable, and name a region by its exact offset and
//! length (`ENXIO` otherwise); the owner cannot be destroyed while mapped.
//!
//! The engine keeps the bookkeeping and each region's first contents; the
//! memory a program maps is the transport's (the server backs each region
//! with a memfd, named by the region's engine-wide unique id).

use crate::context::Context;
use crate::errno::{Errno, Result};
use crate::memory::PAGE_SIZE;
use crate::object::MmapRegion;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT_REGION: AtomicU64 = AtomicU64::new(1);

/// `PROT_EXEC` as `mmap(2)` takes it.
const PROT_EXEC: u32 = 0x4;
/// The mapping-type bits of `mmap(2)`'s flags, and the two shared types
/// (`MAP_SHARED`, `MAP_SHARED_VALIDATE`).
const MAP_TYPE: u32 = 0x3;
const MAP_SHARED: u32 = 0x1;
const MAP_SHARED_VALIDATE: u32 = 0x3;

impl Context {
    /// Gives object `owner` a region of `length` bytes starting with
    /// `contents`; returns its offset (the lowest free one).
    pub(crate) fn mmap_region_alloc(
        &mut self,
        owner: u32,
        length: u64,
        contents: Vec<u8>,
    ) -> Result<u64> {
        if length == 0 || length % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        self.shared().fail_nth.check()?;
        let mut offset = PAGE_SIZE;
        for (&start, region) in &self.mmap_regions {
            if offset.checked_add(length).ok_or(Errno::ENOSPC)? <= start {
                break;
            }
            offset = offset.max(start + region.length);
        }
        offset.checked_add(length).ok_or(Errno::ENOSPC)?;
        let region = MmapRegion {
            region_id: NEXT_REGION.fetch_add(1, Ordering::Relaxed),
            length,
            owner,
            contents,
        };
        self.mmap_regions.insert(offset, region);
        Ok(offset)
    }

    pub(crate) fn mmap_region_remove(&mut self, offset: u64) {
        self.mmap_regions.remove(&offset);
    }

    /// Checks a `mmap(2)` of this context's descriptor (Linux
    /// `iommufd_fops_mmap`) and returns the region it maps.
    pub fn mmap_check(
        &self,
        offset: u64,
        length: u64,
        prot: u32,
        flags: u32,
    ) -> Result<&MmapRegion> {
        if length % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        if !matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE) {
            return Err(Errno::EINVAL);
        }
        if prot & PROT_EXEC != 0 {
            return Err(Errno::EPERM);
        }
        let (&start, region) = self
            .mmap_regions
            .range(..=offset)
            .next_back()
            .filter(|(&s, r)| offset - s < r.length)
            .ok_or(Errno::ENXIO)?;
        if start != offset || region.length != length {
            return Err(Errno::ENXIO);
        }
        Ok(region)
    }

    /// The regions of object `owner`.
    pub fn mmap_regions_of(&self, owner: u32) -> impl Iterator<Item = &MmapRegion> {
        self.mmap_regions.values().filter(move |r| r.owner == owner)
    }
}
