//! Where mapped memory and ioctl arguments live: a caller's address space and
//! the files it passes by descriptor.
//!
//! The engine never dereferences a user pointer. It asks an [`AddressSpace`]
//! to copy bytes in or out (a bad address is `EFAULT`, never a crash) and to
//! check that pages can be pinned. Files (`IOMMU_IOAS_MAP_FILE`) are reached
//! through a [`FileResolver`] that turns the caller's fd into a [`FileBacking`].
//!
//! Implementations here: [`SimMemory`] / [`SimFile`] (simulated, for tests and
//! for the byte-buffer entry point) and [`ProcessMemory`] / [`ProcFiles`] (a
//! real process, through `process_vm_readv`/`writev` and `/proc/<pid>`).

use crate::errno::{Errno, Result};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The CPU page size the engine models (x86-64).
pub const PAGE_SIZE: u64 = 4096;

static NEXT_SPACE_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh identity for an address space or file; never reused.
pub fn new_space_id() -> u64 {
    NEXT_SPACE_ID.fetch_add(1, Ordering::Relaxed)
}

/// The identity of one page of memory: the object it belongs to (an address
/// space for private memory, a file — or shared memory object — for shared
/// mappings) and its page there. `va_delta` turns a page of that object back
/// into the address where this address space sees it: `page * PAGE_SIZE +
/// va_delta` (wrapping).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageIdentity {
    pub space: u64,
    pub page: u64,
    pub va_delta: u64,
}

/// The identity of a file by device and inode, shared by descriptors and
/// shared mappings of it.
pub fn file_space_id(dev: u64, ino: u64) -> u64 {
    (1u64 << 63) | (dev << 40) ^ ino
}

/// A caller's memory (Linux: its `mm`).
pub trait AddressSpace: Send + Sync + Debug {
    /// A stable identity: pin counts and locked-memory charges are kept per id.
    fn id(&self) -> u64;
    /// Copies `buf.len()` bytes from `addr`; `EFAULT` if any byte is unmapped.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()>;
    /// Copies `buf` to `addr`; `EFAULT` if any byte is unmapped or read-only.
    fn write(&self, addr: u64, buf: &[u8]) -> Result<()>;
    /// Checks that every page of `[addr, addr + len)` is mapped, and writable
    /// when `write` is set: what pinning those pages needs. `EFAULT` otherwise,
    /// also once the process is gone.
    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()>;

    /// What the `npages` pages from page-aligned `addr` are, so that a page
    /// reached through two mappings (a memfd mapped and passed by descriptor,
    /// shared memory across `fork`) is one page. Private memory by default.
    fn page_identities(&self, addr: u64, npages: u64) -> Vec<PageIdentity> {
        (0..npages)
            .map(|i| PageIdentity {
                space: self.id(),
                page: addr / PAGE_SIZE + i,
                va_delta: 0,
            })
            .collect()
    }
    /// The file behind the shared mapping that holds `addr`, opened so that
    /// its pages stay reachable after this address space is gone (a pinned
    /// page outlives its process). `None` for private memory.
    fn shared_file(&self, addr: u64) -> Option<Arc<dyn FileBacking>> {
        let _ = addr;
        None
    }
}

/// A file passed by descriptor.
pub trait FileBacking: Send + Sync + Debug {
    /// A stable identity (one per inode).
    fn id(&self) -> u64;
    /// Current size in bytes.
    fn size(&self) -> Result<u64>;
    /// Whether the descriptor was opened for writing (Linux: `FMODE_WRITE`).
    fn writable(&self) -> bool;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()>;
}

/// Turns a caller's file descriptor into a file, and gives the caller new
/// files that stand for engine objects (an access, a fault queue).
pub trait FileResolver: Debug {
    /// `EBADF` when `fd` is not an open descriptor of the caller.
    fn resolve(&self, fd: i32) -> Result<Arc<dyn FileBacking>>;

    /// Makes a new file for the caller. Returns its descriptor number if
    /// already known (else the transport writes it at `fd_addr` in the
    /// caller's memory when the call succeeds) and the inode that names it.
    /// `EOPNOTSUPP` for a caller that cannot receive files.
    fn create_side_file(&self, fd_addr: u64) -> Result<(Option<i32>, u64)> {
        let _ = fd_addr;
        Err(Errno::EOPNOTSUPP)
    }

    /// Makes a new file the caller only reads, as [`create_side_file`]
    /// does, whose unread bytes the transport can count (for event queues).
    ///
    /// [`create_side_file`]: FileResolver::create_side_file
    fn create_event_file(&self, fd_addr: u64) -> Result<(Option<i32>, u64)> {
        self.create_side_file(fd_addr)
    }

    /// How many bytes the reader of event file `inode` has not read yet;
    /// `None` when the transport cannot tell.
    fn unread_bytes(&self, inode: u64) -> Option<u64> {
        let _ = inode;
        None
    }

    /// Whether the caller has mapped the context's region `region_id`
    /// (see [`crate::mmap`]); false when the transport maps nothing.
    fn region_mapped(&self, region_id: u64) -> bool {
        let _ = region_id;
        false
    }

    /// The inode behind the caller's descriptor `fd` (`EBADFD` if none).
    fn inode_of(&self, fd: i32) -> Result<u64> {
        let _ = fd;
        Err(Errno::EBADFD)
    }
}

/// A resolver for callers that pass no descriptors.
#[derive(Debug, Default)]
pub struct NoFiles;

impl FileResolver for NoFiles {
    fn resolve(&self, _fd: i32) -> Result<Arc<dyn FileBacking>> {
        Err(Errno::EBADF)
    }
}

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
    pub fn new() -> Self {
        SimMemory {
            id: new_space_id(),
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Maps `len` zeroed bytes at `addr`, replacing nothing (panics on overlap:
    /// a test bug, not an input error).
    pub fn map(&self, addr: u64, len: u64, writable: bool) {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
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
        self.regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&addr);
    }

    fn with_range<R>(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut [u8], usize) -> R,
    ) -> Result<()> {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
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
    data: Mutex<Vec<u8>>,
}

impl SimFile {
    pub fn new(len: usize, writable: bool) -> Self {
        SimFile {
            id: new_space_id(),
            writable,
            data: Mutex::new(vec![0; len]),
        }
    }

    /// Changes the size, as `ftruncate` would.
    pub fn truncate(&self, len: usize) {
        self.data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(len, 0);
    }
}

impl FileBacking for SimFile {
    fn id(&self) -> u64 {
        self.id
    }
    fn size(&self) -> Result<u64> {
        Ok(self.data.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let data = self.data.lock().unwrap_or_else(|e| e.into_inner());
        let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
        let src = data
            .get(start..start.saturating_add(buf.len()))
            .ok_or(Errno::EFAULT)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let mut data = self.data.lock().unwrap_or_else(|e| e.into_inner());
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
    pub fn insert(&mut self, fd: i32, file: Arc<dyn FileBacking>) {
        self.files.insert(fd, file);
    }

    /// Closes a side file; returns its inode, for `Context::side_file_closed`.
    pub fn close_side_file(&self, fd: i32) -> Option<u64> {
        self.side
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fd)
    }
}

impl FileResolver for SimFiles {
    fn resolve(&self, fd: i32) -> Result<Arc<dyn FileBacking>> {
        self.files.get(&fd).cloned().ok_or(Errno::EBADF)
    }

    fn create_side_file(&self, _fd_addr: u64) -> Result<(Option<i32>, u64)> {
        let mut side = self.side.lock().unwrap_or_else(|e| e.into_inner());
        let fd = side.keys().next_back().map_or(100, |&f| f + 1);
        let inode = new_space_id() | (1 << 62);
        side.insert(fd, inode);
        Ok((Some(fd), inode))
    }

    fn inode_of(&self, fd: i32) -> Result<u64> {
        self.side
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fd)
            .copied()
            .ok_or(Errno::EBADFD)
    }
}

/// A real process's memory, read and written with `process_vm_readv` /
/// `process_vm_writev`, so a bad pointer is `EFAULT` and never a crash.
#[derive(Debug)]
pub struct ProcessMemory {
    id: u64,
    pid: nix::unistd::Pid,
}

impl ProcessMemory {
    /// The calling process itself (the library path).
    pub fn current() -> Self {
        Self::of(nix::unistd::getpid())
    }

    /// Another process (the server path); needs ptrace access to it.
    pub fn of(pid: nix::unistd::Pid) -> Self {
        ProcessMemory {
            id: new_space_id(),
            pid,
        }
    }

    /// Whether `[addr, addr + len)` lies in mappings with the needed permissions,
    /// from `/proc/<pid>/maps`.
    fn covered_by_mappings(&self, addr: u64, len: u64, write: bool) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let last = addr.checked_add(len - 1).ok_or(Errno::EFAULT)?;
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid))
            .map_err(|_| Errno::EFAULT)?;
        let mut next = addr;
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((lo, hi)) = range.split_once('-') else {
                continue;
            };
            let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16))
            else {
                continue;
            };
            if hi <= next || lo > next {
                continue;
            }
            let perms = perms.as_bytes();
            if perms.first() != Some(&b'r') || (write && perms.get(1) != Some(&b'w')) {
                return Err(Errno::EFAULT);
            }
            if hi > last {
                return Ok(());
            }
            next = hi;
        }
        Err(Errno::EFAULT)
    }
}

impl AddressSpace for ProcessMemory {
    fn id(&self) -> u64 {
        self.id
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let remote = [nix::sys::uio::RemoteIoVec {
            base: usize::try_from(addr).map_err(|_| Errno::EFAULT)?,
            len,
        }];
        let n = nix::sys::uio::process_vm_readv(self.pid, &mut [IoSliceMut::new(buf)], &remote)
            .map_err(|_| Errno::EFAULT)?;
        if n == len {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let remote = [nix::sys::uio::RemoteIoVec {
            base: usize::try_from(addr).map_err(|_| Errno::EFAULT)?,
            len: buf.len(),
        }];
        let n = nix::sys::uio::process_vm_writev(self.pid, &[std::io::IoSlice::new(buf)], &remote)
            .map_err(|_| Errno::EFAULT)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Errno::EFAULT)
        }
    }

    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()> {
        self.covered_by_mappings(addr, len, write)
    }

    fn page_identities(&self, addr: u64, npages: u64) -> Vec<PageIdentity> {
        let private = |va: u64| PageIdentity {
            space: self.id,
            page: va / PAGE_SIZE,
            va_delta: 0,
        };
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).unwrap_or_default();
        // Shared file-backed mappings (this includes shared anonymous memory,
        // which the kernel backs with a shmem file): (start, end, file id, offset).
        let mut shared: Vec<(u64, u64, u64, u64)> = Vec::new();
        for line in maps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[1].as_bytes().get(3) != Some(&b's') {
                continue;
            }
            let (Some((lo, hi)), Some((major, minor))) =
                (f[0].split_once('-'), f[3].split_once(':'))
            else {
                continue;
            };
            let parse = |x: &str| u64::from_str_radix(x, 16).ok();
            let (Some(lo), Some(hi), Some(off), Some(major), Some(minor), Ok(ino)) = (
                parse(lo),
                parse(hi),
                parse(f[2]),
                parse(major),
                parse(minor),
                f[4].parse::<u64>(),
            ) else {
                continue;
            };
            if ino == 0 {
                continue;
            }
            let dev = libc::makedev(major as u32, minor as u32);
            shared.push((lo, hi, file_space_id(dev, ino), off));
        }
        (0..npages)
            .map(|i| {
                let va = addr + i * PAGE_SIZE;
                match shared.iter().find(|&&(lo, hi, _, _)| lo <= va && va < hi) {
                    Some(&(lo, _, space, off)) => {
                        let page = (off + (va - lo)) / PAGE_SIZE;
                        PageIdentity {
                            space,
                            page,
                            va_delta: va.wrapping_sub(page * PAGE_SIZE),
                        }
                    }
                    None => private(va),
                }
            })
            .collect()
    }
    fn shared_file(&self, addr: u64) -> Option<Arc<dyn FileBacking>> {
        use std::os::unix::fs::MetadataExt;
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)).ok()?;
        let range = maps.lines().find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (lo, hi) = range.split_once('-')?;
            let (lo, hi) = (
                u64::from_str_radix(lo, 16).ok()?,
                u64::from_str_radix(hi, 16).ok()?,
            );
            (lo <= addr && addr < hi && rest.as_bytes().get(3) == Some(&b's'))
                .then(|| range.to_owned())
        })?;
        let path = format!("/proc/{}/map_files/{range}", self.pid);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()?;
        let meta = file.metadata().ok()?;
        Some(Arc::new(OsFile {
            id: file_space_id(meta.dev(), meta.ino()),
            writable: true,
            file,
        }))
    }
}

/// A real file, opened anew through `/proc/<pid>/fd/<fd>`.
#[derive(Debug)]
pub struct OsFile {
    id: u64,
    writable: bool,
    file: File,
}

impl FileBacking for OsFile {
    fn id(&self) -> u64 {
        self.id
    }
    fn size(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|_| Errno::EIO)
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|_| Errno::EFAULT)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|_| Errno::EFAULT)
    }
}

/// Resolves a process's descriptors through `/proc/<pid>/fd`.
#[derive(Debug)]
pub struct ProcFiles {
    pid: nix::unistd::Pid,
}

impl ProcFiles {
    pub fn current() -> Self {
        ProcFiles {
            pid: nix::unistd::getpid(),
        }
    }
    pub fn of(pid: nix::unistd::Pid) -> Self {
        ProcFiles { pid }
    }
}

impl FileResolver for ProcFiles {
    fn resolve(&self, fd: i32) -> Result<Arc<dyn FileBacking>> {
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        // The access mode of the caller's descriptor decides writability, as
        // FMODE_WRITE does in Linux; the flags are octal in fdinfo.
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", self.pid, fd))
            .map_err(|_| Errno::EBADF)?;
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .ok_or(Errno::EBADF)?;
        let writable = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let path = format!("/proc/{}/fd/{}", self.pid, fd);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|_| Errno::EBADF)?;
        let meta = file.metadata().map_err(|_| Errno::EBADF)?;
        // One identity per inode, so two descriptors of one memfd share pins.
        let id = file_space_id(meta.dev(), meta.ino());
        Ok(Arc::new(OsFile { id, writable, file }))
    }
}
