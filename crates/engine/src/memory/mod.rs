//! Where mapped memory and ioctl arguments live: a caller's address space and
//! the files it passes by descriptor.
//!
//! The engine never dereferences a user pointer. It asks an [`AddressSpace`]
//! to copy bytes in or out (a bad address is `EFAULT`, never a crash) and to
//! check that pages can be pinned. Files (`IOMMU_IOAS_MAP_FILE`) are reached
//! through a [`CallerFiles`] that turns the caller's fd into a [`FileBacking`].
//!
//! Implementations here: [`SimMemory`] / [`SimFile`] (simulated, for tests and
//! for the byte-buffer entry point) and [`ProcessMemory`] / [`ProcFiles`] (a
//! real process, through `process_vm_readv`/`writev` and `/proc/<pid>`).

use crate::errno::{Errno, Result};
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    /// The object the page belongs to: an address space's or a file's id
    /// ([`new_space_id`], [`file_space_id`]).
    pub space: u64,
    /// Index of the page in that object (byte offset / `PAGE_SIZE`).
    pub page: u64,
    /// Offset from the object to this address space: page `page` is seen at
    /// `page * PAGE_SIZE + va_delta` (wrapping).
    pub va_delta: u64,
    /// The page is a device's memory mapped into the process (a VFIO BAR;
    /// Linux's `VM_PFNMAP`), which iommufd cannot pin.
    pub device: bool,
    /// The page lies in a 1 GiB huge page (hugetlb), which a real machine
    /// backs with 1 GiB of contiguous memory: its synthetic address is
    /// given so, and a domain can map it with a 1 GiB leaf.
    pub gigantic: bool,
}

/// Consecutive pages whose identities follow one another (same object,
/// consecutive pages there, seen at the same offset): the first page's
/// identity and how many there are. A large mapping is one run, so a pin
/// of it costs the same at any size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityRun {
    /// The identity of the run's first page.
    pub first: PageIdentity,
    /// Pages in the run (at least one).
    pub count: u64,
}

impl IdentityRun {
    /// The identity of the run's page `k` (counted from 0).
    pub fn nth(&self, k: u64) -> PageIdentity {
        PageIdentity {
            page: self.first.page + k,
            ..self.first
        }
    }

    /// Whether `next` is the identity of the page right after the run.
    fn continued_by(&self, next: &PageIdentity) -> bool {
        *next == self.nth(self.count)
    }
}

/// Per-page identities gathered into runs.
pub fn identity_runs(ids: impl IntoIterator<Item = PageIdentity>) -> Vec<IdentityRun> {
    let mut runs: Vec<IdentityRun> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some(run) if run.continued_by(&id) => run.count += 1,
            _ => runs.push(IdentityRun {
                first: id,
                count: 1,
            }),
        }
    }
    runs
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
    /// Copies `len` bytes from `from` to `to`, both in this address space,
    /// in one step (a device's copy, without a buffer between): `None` when
    /// this space cannot, or not for ranges that overlap; `EFAULT` as
    /// [`read`](Self::read) and [`write`](Self::write) give it, though
    /// without saying which side failed.
    fn copy_within(&self, from: u64, to: u64, len: usize) -> Option<Result<()>> {
        let _ = (from, to, len);
        None
    }
    /// Checks that every page of `[addr, addr + len)` is mapped, and writable
    /// when `write` is set: what pinning those pages needs. `EFAULT` otherwise,
    /// also once the process is gone.
    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()>;

    /// [`probe`](Self::probe) of `[addr, addr + len)`, then the identities
    /// of the `npages` pages from page-aligned `first`, gathered into runs,
    /// in one look at the address space (a pin asks both). An address space
    /// that knows its mappings gives the runs without a per-page list.
    fn probe_and_identify_runs(
        &self,
        addr: u64,
        len: u64,
        write: bool,
        first: u64,
        npages: u64,
    ) -> Result<Vec<IdentityRun>> {
        self.probe(addr, len, write)?;
        Ok(identity_runs(self.page_identities(first, npages)))
    }

    /// What the `npages` pages from page-aligned `addr` are, so that a page
    /// reached through two mappings (a memfd mapped and passed by descriptor,
    /// shared memory across `fork`) is one page. Private memory by default.
    fn page_identities(&self, addr: u64, npages: u64) -> Vec<PageIdentity> {
        (0..npages)
            .map(|i| PageIdentity {
                space: self.id(),
                page: addr / PAGE_SIZE + i,
                va_delta: 0,
                device: false,
                gigantic: false,
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
    /// Whether it is a dma-buf (peer-to-peer memory): accesses may not pin
    /// or copy it (Linux `iopt_area_add_access` and
    /// `iopt_pages_rw_access`: `EINVAL`).
    fn is_dmabuf(&self) -> bool {
        false
    }
    /// Copies `buf.len()` bytes from byte `offset`; `EFAULT` past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// Copies `buf` to byte `offset`; `EFAULT` past the end.
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()>;
}

/// Something the engine signals: an eventfd a program registered for an
/// interrupt. Signalling adds one to its counter and wakes its readers.
pub trait EventSignal: Send + Sync + Debug {
    /// Signals once.
    fn signal(&self);

    /// Waits up to `timeout` for the eventfd to be signalled and takes its
    /// count; whether it was. The default never sees a signal (for
    /// eventfds the engine only writes).
    fn wait(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        false
    }
}

/// The caller's descriptors, as the engine sees them: turns a descriptor into
/// a file or an inode, gives the caller new
/// files that stand for engine objects (an access, a fault queue).
pub trait CallerFiles: Debug {
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
    /// [`create_side_file`]: CallerFiles::create_side_file
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
    /// (see [`crate::ops::mmap`]); false when the transport maps nothing.
    fn region_mapped(&self, region_id: u64) -> bool {
        let _ = region_id;
        false
    }

    /// The eventfd behind the caller's descriptor `fd`, to signal an
    /// interrupt on (`VFIO_DEVICE_SET_IRQS`). `EBADF` when `fd` is not an
    /// open descriptor, `EINVAL` when it is no eventfd (Linux
    /// `eventfd_ctx_fdget`); `EOPNOTSUPP` for a caller that passes none.
    fn eventfd(&self, fd: i32) -> Result<Arc<dyn EventSignal>> {
        let _ = fd;
        Err(Errno::EOPNOTSUPP)
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

impl CallerFiles for NoFiles {
    fn resolve(&self, _fd: i32) -> Result<Arc<dyn FileBacking>> {
        Err(Errno::EBADF)
    }
}

pub mod dmabuf;
mod handle;
mod maps;
mod memfd;
pub mod prefetched;
mod process;
mod sim;
mod sys;
pub mod user_copy;

pub use dmabuf::{DmabufImporter, ExportedDmabuf};
pub use handle::ProcessHandle;
pub use memfd::MemFile;
pub use prefetched::PrefetchedMemory;
pub use process::{OsFile, ProcFiles, ProcessMemory};
pub use sim::{SimFile, SimFiles, SimMemory};
