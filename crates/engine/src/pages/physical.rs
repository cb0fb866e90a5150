//! Synthetic physical addresses for pinned pages.
//!
//! Domains are real page tables, so a pinned page needs a physical address to
//! put in a PTE, and emulated DMA needs the way back from that address to the
//! memory. A page's address depends only on its frame (address space or file,
//! and page), so two maps of the same memory give the same address, as on a
//! real machine. Frames are grouped in 2 MiB chunks that get contiguous
//! addresses, so 2 MiB-aligned memory can use 2 MiB leaves, as transparent huge
//! pages do.
//!
//! Invariant: a chunk has an address while at least one of its frames is
//! pinned; `pinned` counts those frames.

use crate::memory::{AddressSpace, FileBacking, PAGE_SIZE};
use std::collections::HashMap;
use std::sync::Arc;

/// The identity of one pinned page: its address space or file, and its
/// page-aligned address or offset. Two maps of the same memory pin the same
/// frames, as on Linux where pins count on the struct page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Id of the address space or file
    /// ([`PageIdentity::space`](crate::memory::PageIdentity::space)).
    pub space: u64,
    /// Page index in it: the address or offset divided by `PAGE_SIZE`.
    pub page: u64,
}

/// Size of a chunk of consecutive frames with consecutive addresses.
pub const CHUNK_SIZE: u64 = 2 << 20;
const PAGES_PER_CHUNK: u64 = CHUNK_SIZE / PAGE_SIZE;

/// Where a chunk's bytes live.
#[derive(Clone, Debug)]
pub enum Backing {
    /// Reached through an address space: byte `x` of the object is at
    /// address `x + va_delta` there.
    Memory {
        /// The address space.
        mm: Arc<dyn AddressSpace>,
        /// Added (wrapping) to a byte offset of the object to give its address
        /// in `mm`.
        va_delta: u64,
    },
    /// Reached through a file: byte `x` of the object is at offset `x`.
    File(Arc<dyn FileBacking>),
}

#[derive(Debug)]
struct Chunk {
    base: u64,
    pinned: u32,
    backing: Backing,
}

/// Frames to addresses and back.
#[derive(Debug, Default)]
pub struct PhysMap {
    chunks: HashMap<(u64, u64), Chunk>,
    by_base: HashMap<u64, (u64, u64)>,
    free_bases: Vec<u64>,
    next_base: u64,
}

impl PhysMap {
    fn key(frame: Frame) -> ((u64, u64), u64) {
        (
            (frame.space, frame.page / PAGES_PER_CHUNK),
            frame.page % PAGES_PER_CHUNK,
        )
    }

    /// Gives a newly pinned frame its address.
    pub fn pin(&mut self, frame: Frame, backing: &Backing) {
        let (key, _) = Self::key(frame);
        if let Some(c) = self.chunks.get_mut(&key) {
            c.pinned += 1;
            return;
        }
        let base = self.free_bases.pop().unwrap_or_else(|| {
            // Chunk 0 stays unused: address 0 never names a page.
            self.next_base += CHUNK_SIZE;
            self.next_base
        });
        self.by_base.insert(base, key);
        self.chunks.insert(
            key,
            Chunk {
                base,
                pinned: 1,
                backing: backing.clone(),
            },
        );
    }

    /// Takes the address away from a frame no longer pinned.
    pub fn unpin(&mut self, frame: Frame) {
        let (key, _) = Self::key(frame);
        if let Some(c) = self.chunks.get_mut(&key) {
            c.pinned -= 1;
            if c.pinned == 0 {
                let base = c.base;
                self.chunks.remove(&key);
                self.by_base.remove(&base);
                self.free_bases.push(base);
            }
        }
    }

    /// The address of a pinned frame.
    pub fn address(&self, frame: Frame) -> Option<u64> {
        let (key, index) = Self::key(frame);
        self.chunks.get(&key).map(|c| c.base + index * PAGE_SIZE)
    }

    /// The backing and byte offset (in its address space or file) of `pa`.
    pub fn resolve(&self, pa: u64) -> Option<(Backing, u64)> {
        let base = pa - pa % CHUNK_SIZE;
        let &(space, chunk) = self.by_base.get(&base)?;
        let c = self.chunks.get(&(space, chunk))?;
        Some((c.backing.clone(), chunk * CHUNK_SIZE + (pa - base)))
    }

    /// Chunks with an address.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}
