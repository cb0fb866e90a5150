//! Simulated memory and files: byte buffers, for tests and for the byte-buffer
//! entry point.

use super::*;
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

/// A simulated address space: regions of bytes with a writable bit.
///
/// Invariant: regions never overlap; each `data` is exactly the region length.
#[derive(Debug)]
pub struct SimMemory {
    id: u64,
    regions: Mutex<BTreeMap<u64, SimRegion>>,
}

#[derive(Debug)]
struct SimRegion {
    writable: bool,
    data: Vec<u8>,
}

impl Default for SimMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl SimMemory {
    /// An empty address space with a fresh id: nothing is mapped.
    pub fn new() -> Self {
        SimMemory {
            id: new_space_id(),
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Maps `len` zeroed bytes at `addr`, replacing nothing (panics on overlap:
    /// a test bug, not an input error).
    pub fn map(&self, addr: u64, len: u64, writable: bool) {
        let mut regions = self.regions.locked();
        let end = addr.checked_add(len).expect("region end overflows");
        let overlaps = regions
            .range(..end)
            .next_back()
            .is_some_and(|(s, r)| s + r.data.len() as u64 > addr);
        assert!(!overlaps, "SimMemory::map over an existing region");
        let data = vec![0; usize::try_from(len).expect("region too large")];
        regions.insert(addr, SimRegion { writable, data });
    }

    /// Stores bytes regardless of the writable bit (test setup of read-only memory).
    pub fn poke(&self, addr: u64, bytes: &[u8]) -> Result<()> {
        self.with_range(addr, bytes.len(), false, |dst, at| {
            dst.copy_from_slice(&bytes[at..at + dst.len()])
        })
    }

    /// Removes the region that starts at `addr`.
    pub fn unmap(&self, addr: u64) {
        self.regions.locked().remove(&addr);
    }

    fn with_range<R>(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut [u8], usize) -> R,
    ) -> Result<()> {
        let mut regions = self.regions.locked();
        let mut done = 0usize;
        while done < len {
            let at = addr.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let (start, region) = regions.range_mut(..=at).next_back().ok_or(Errno::EFAULT)?;
            let offset = usize::try_from(at - *start).map_err(|_| Errno::EFAULT)?;
            if offset >= region.data.len() || (write && !region.writable) {
                return Err(Errno::EFAULT);
            }
            let n = (region.data.len() - offset).min(len - done);
            f(&mut region.data[offset..offset + n], done);
            done += n;
        }
        Ok(())
    }
}

impl AddressSpace for SimMemory {
    fn id(&self) -> u64 {
        self.id
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        // Check first so that a failing read leaves `buf` untouched.
        self.with_range(addr, buf.len(), false, |_, _| ())?;
        self.with_range(addr, buf.len(), false, |src, at| {
            buf[at..at + src.len()].copy_from_slice(src)
        })
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        self.with_range(addr, buf.len(), true, |_, _| ())?;
        self.with_range(addr, buf.len(), true, |dst, at| {
            dst.copy_from_slice(&buf[at..at + dst.len()])
        })
    }

    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()> {
        let len = usize::try_from(len).map_err(|_| Errno::EFAULT)?;
        self.with_range(addr, len, write, |_, _| ())
    }
}

/// A simulated file.
#[derive(Debug)]
pub struct SimFile {
    id: u64,
    writable: bool,
    /// It stands for a dma-buf (see [`FileBacking::is_dmabuf`]).
    dmabuf: bool,
    data: Mutex<Vec<u8>>,
}

impl SimFile {
    /// A file of `len` zero bytes with a fresh id; `writable` as
    /// [`FileBacking::writable`](crate::memory::FileBacking::writable).
    pub fn new(len: usize, writable: bool) -> Self {
        SimFile {
            id: new_space_id(),
            writable,
            dmabuf: false,
            data: Mutex::new(vec![0; len]),
        }
    }

    /// A writable dma-buf of `len` zero bytes (the selftest's exporter).
    pub fn dmabuf(len: usize) -> Self {
        SimFile {
            dmabuf: true,
            ..SimFile::new(len, true)
        }
    }

    /// Changes the size, as `ftruncate` would.
    pub fn truncate(&self, len: usize) {
        self.data.locked().resize(len, 0);
    }
}

impl FileBacking for SimFile {
    fn id(&self) -> u64 {
        self.id
    }
    fn size(&self) -> Result<u64> {
        Ok(self.data.locked().len() as u64)
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn is_dmabuf(&self) -> bool {
        self.dmabuf
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let data = self.data.locked();
        let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
        let src = data
            .get(start..start.saturating_add(buf.len()))
            .ok_or(Errno::EFAULT)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let mut data = self.data.locked();
        let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
        let dst = data
            .get_mut(start..start.saturating_add(buf.len()))
            .ok_or(Errno::EFAULT)?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}

/// Resolves descriptors from a table, and hands out side files as numbers
/// from 100 up, for tests.
#[derive(Debug, Default)]
pub struct SimFiles {
    files: BTreeMap<i32, Arc<dyn FileBacking>>,
    side: Mutex<BTreeMap<i32, u64>>,
}

impl SimFiles {
    /// Makes descriptor `fd` stand for `file`, replacing any file it stood for.
    pub fn insert(&mut self, fd: i32, file: Arc<dyn FileBacking>) {
        self.files.insert(fd, file);
    }

    /// Closes a side file; returns its inode, for `Context::side_file_closed`.
    pub fn close_side_file(&self, fd: i32) -> Option<u64> {
        self.side.locked().remove(&fd)
    }
}

impl CallerFiles for SimFiles {
    fn resolve(&self, fd: i32) -> Result<Arc<dyn FileBacking>> {
        self.files.get(&fd).cloned().ok_or(Errno::EBADF)
    }

    fn create_side_file(&self, _fd_addr: u64) -> Result<(Option<i32>, u64)> {
        let mut side = self.side.locked();
        let fd = side.keys().next_back().map_or(100, |&f| f + 1);
        let inode = new_space_id() | (1 << 62);
        side.insert(fd, inode);
        Ok((Some(fd), inode))
    }

    fn inode_of(&self, fd: i32) -> Result<u64> {
        self.side.locked().get(&fd).copied().ok_or(Errno::EBADFD)
    }
}
