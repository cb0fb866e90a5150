//! Synthetic physical addresses for pinned pages.
//!
//! Domains are real page tables, so a pinned page needs a physical address to
//! put in a PTE, and emulated DMA needs the way back from that address to the
//! memory. A page's address depends only on its frame (address space or file,
//! and page), so two maps of the same memory give the same address, as on a
//! real machine. Frames are grouped in 2 MiB chunks that get contiguous
//! addresses, so 2 MiB-aligned memory can use 2 MiB leaves, as transparent huge
//! pages do. Frames of a 1 GiB huge page go further: their chunks take their
//! addresses from one 1 GiB-aligned block, in order, so such memory can use
//! 1 GiB leaves, as hugetlb's gigantic pages do on a real machine.
//!
//! Invariant: a chunk has an address while at least one of its frames is
//! pinned; `pinned` counts those frames. A block is held while at least one
//! of its chunks has an address; `chunks` counts them.

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
/// Size of a block of chunks of one 1 GiB huge page.
pub const BLOCK_SIZE: u64 = 1 << 30;
const CHUNKS_PER_BLOCK: u64 = BLOCK_SIZE / CHUNK_SIZE;
/// Where block addresses start, inside every format's output range (48
/// bits). Chunk addresses lie below (2^25 chunks with an address at once;
/// each holds a pinned page, so reaching it takes 128 GiB pinned); blocks
/// from here to [`BLOCKS_END`] (2^17 GiB of 1 GiB pages); past that,
/// chunks again (2^26 more).
const BLOCKS_START: u64 = 1 << 46;
const BLOCKS_END: u64 = 1 << 47;

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
    /// The block it takes its address from, if its frames are a 1 GiB
    /// huge page's.
    block: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Block {
    base: u64,
    chunks: u32,
}

/// Frames to addresses and back.
#[derive(Debug, Default)]
pub struct PhysMap {
    chunks: HashMap<(u64, u64), Chunk>,
    by_base: HashMap<u64, (u64, u64)>,
    free_bases: Vec<u64>,
    next_base: u64,
    /// Blocks by `(space, page / pages per block)`.
    blocks: HashMap<(u64, u64), Block>,
    free_blocks: Vec<u64>,
    next_block: u64,
}

impl PhysMap {
    fn key(frame: Frame) -> ((u64, u64), u64) {
        (
            (frame.space, frame.page / PAGES_PER_CHUNK),
            frame.page % PAGES_PER_CHUNK,
        )
    }

    /// Gives a newly pinned frame its address; `gigantic` when it lies in a
    /// 1 GiB huge page (see the module's documentation).
    pub fn pin(&mut self, frame: Frame, backing: &Backing, gigantic: bool) {
        self.pin_range(frame, 1, backing, gigantic);
    }

    /// [`pin`](Self::pin) of the `len` frames from `first`, a chunk at a
    /// time.
    pub fn pin_range(&mut self, first: Frame, len: u64, backing: &Backing, gigantic: bool) {
        for (frame, n) in Self::by_chunk(first, len) {
            self.pin_in_chunk(frame, n, backing, gigantic);
        }
    }

    /// The pieces of the `len` frames from `first` that lie in one chunk.
    fn by_chunk(first: Frame, len: u64) -> impl Iterator<Item = (Frame, u32)> {
        let end = first.page + len;
        let mut page = first.page;
        std::iter::from_fn(move || {
            (page < end).then(|| {
                let n = (PAGES_PER_CHUNK - page % PAGES_PER_CHUNK).min(end - page);
                let piece = (
                    Frame {
                        space: first.space,
                        page,
                    },
                    n as u32,
                );
                page += n;
                piece
            })
        })
    }

    /// `n` more frames of `frame`'s chunk pinned, from `frame` on.
    fn pin_in_chunk(&mut self, frame: Frame, n: u32, backing: &Backing, gigantic: bool) {
        let (key, _) = Self::key(frame);
        if let Some(c) = self.chunks.get_mut(&key) {
            c.pinned += n;
            return;
        }
        let block_key = (frame.space, key.1 / CHUNKS_PER_BLOCK);
        // A chunk of a block already made joins it, whatever this pin knew.
        let (base, block) = if gigantic || self.blocks.contains_key(&block_key) {
            let block = self.blocks.entry(block_key).or_insert_with(|| {
                let base = self.free_blocks.pop().unwrap_or_else(|| {
                    let base = BLOCKS_START + self.next_block * BLOCK_SIZE;
                    self.next_block += 1;
                    base
                });
                Block { base, chunks: 0 }
            });
            block.chunks += 1;
            let base = block.base + (key.1 % CHUNKS_PER_BLOCK) * CHUNK_SIZE;
            (base, Some(block_key))
        } else {
            let base = self.free_bases.pop().unwrap_or_else(|| {
                // Chunk 0 stays unused: address 0 never names a page.
                self.next_base += CHUNK_SIZE;
                if self.next_base == BLOCKS_START {
                    self.next_base = BLOCKS_END;
                }
                self.next_base
            });
            (base, None)
        };
        self.by_base.insert(base, key);
        self.chunks.insert(
            key,
            Chunk {
                base,
                pinned: n,
                backing: backing.clone(),
                block,
            },
        );
    }

    /// Takes the address away from a frame no longer pinned.
    pub fn unpin(&mut self, frame: Frame) {
        self.unpin_range(frame, 1);
    }

    /// [`unpin`](Self::unpin) of the `len` frames from `first`.
    pub fn unpin_range(&mut self, first: Frame, len: u64) {
        for (frame, n) in Self::by_chunk(first, len) {
            self.unpin_in_chunk(frame, n);
        }
    }

    fn unpin_in_chunk(&mut self, frame: Frame, n: u32) {
        let (key, _) = Self::key(frame);
        let Some(c) = self.chunks.get_mut(&key) else {
            return;
        };
        debug_assert!(c.pinned >= n, "a chunk unpinned more than it pinned");
        c.pinned = c.pinned.saturating_sub(n);
        if c.pinned > 0 {
            return;
        }
        let (base, block) = (c.base, c.block);
        self.chunks.remove(&key);
        self.by_base.remove(&base);
        match block {
            None => self.free_bases.push(base),
            Some(block_key) => {
                if let Some(b) = self.blocks.get_mut(&block_key) {
                    b.chunks -= 1;
                    if b.chunks == 0 {
                        let base = b.base;
                        self.blocks.remove(&block_key);
                        self.free_blocks.push(base);
                    }
                }
            }
        }
    }

    /// Appends the addresses of the `len` frames from `first` to `out`, one
    /// `(address, frames)` per chunk's piece; false when a frame has none.
    pub fn address_runs(&self, first: Frame, len: u64, out: &mut Vec<(u64, u64)>) -> bool {
        for (frame, n) in Self::by_chunk(first, len) {
            let Some(at) = self.address(frame) else {
                return false;
            };
            out.push((at, u64::from(n)));
        }
        true
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A backing for frames whose contents a test does not read.
    pub(in crate::pages) fn backing() -> Backing {
        Backing::File(Arc::new(crate::memory::SimFile::new(0, true)))
    }

    #[test]
    fn a_gigantic_page_gets_one_aligned_gigabyte_of_addresses() {
        let mut phys = PhysMap::default();
        let pages = BLOCK_SIZE / PAGE_SIZE;
        // Pinned out of order, and a block's last chunk first.
        let frames = [pages * 3 + pages - 1, pages * 3, pages * 3 + 700];
        for page in frames {
            phys.pin(Frame { space: 9, page }, &backing(), true);
        }
        let first = phys
            .address(Frame {
                space: 9,
                page: pages * 3,
            })
            .unwrap();
        assert_eq!(first % BLOCK_SIZE, 0, "the block is aligned");
        for page in frames {
            let at = phys.address(Frame { space: 9, page }).unwrap();
            assert_eq!(at - first, (page - pages * 3) * PAGE_SIZE, "page {page:#x}");
        }
        // A later pin of the block that did not know it joins it all the same.
        let late = Frame {
            space: 9,
            page: pages * 3 + 1024,
        };
        phys.pin(late, &backing(), false);
        assert_eq!(phys.address(late), Some(first + 1024 * PAGE_SIZE));
        phys.unpin(late);
        // An ordinary frame's chunk takes no block address.
        phys.pin(Frame { space: 9, page: 1 }, &backing(), false);
        assert!(phys.address(Frame { space: 9, page: 1 }).unwrap() < BLOCKS_START);
        // Unpinned, the block is given again.
        for page in frames {
            phys.unpin(Frame { space: 9, page });
        }
        assert!(phys.blocks.is_empty());
        phys.pin(Frame { space: 10, page: 0 }, &backing(), true);
        assert_eq!(phys.address(Frame { space: 10, page: 0 }), Some(first));
    }
}
