//! A real process's memory and files, reached through a handle bound to
//! the process (see [`ProcessHandle`]): `process_vm_readv` /
//! `process_vm_writev` for memory, `/proc/<pid>` opened once for the rest.

use super::maps::{
    covered_by, gigantic_in_smaps, identities, identity_runs_in, may_hold_gigantic, Mapping,
    GIGANTIC_PAGE,
};
use super::*;
use crate::errno::{Errno, Result};
use std::fmt::Debug;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

/// A real process's memory, read and written with `process_vm_readv` /
/// `process_vm_writev`, so a bad pointer is `EFAULT` and never a crash, and
/// page protections hold as they do for the kernel's own user copies.
/// (`/proc/<pid>/mem` would be bound to the address space, but it writes
/// through read-only pages, as a debugger's pokes do.)
#[derive(Debug)]
pub struct ProcessMemory {
    id: u64,
    process: Arc<ProcessHandle>,
}

impl ProcessMemory {
    /// The calling process itself (the library path).
    pub fn current() -> Self {
        Self::of(ProcessHandle::current())
    }

    /// A process the server acts for; needs ptrace access to it.
    pub fn of(process: Arc<ProcessHandle>) -> Self {
        ProcessMemory {
            id: new_space_id(),
            process,
        }
    }

    /// The process this memory belongs to.
    pub fn process(&self) -> &Arc<ProcessHandle> {
        &self.process
    }

    /// The mappings backed by 1 GiB huge pages (`KernelPageSize` in
    /// `/proc/<pid>/smaps`), asked only for a range of the `npages` pages
    /// from `addr` that can hold one and that meets a mapping whose both
    /// ends are 1 GiB-aligned, as such a mapping's are: reading smaps walks
    /// every page table of the process (10 ms for a gigabyte of 4 KiB
    /// pages), where `maps` costs nothing of the kind.
    fn gigantic_mappings(&self, maps: &[Mapping], addr: u64, npages: u64) -> Vec<(u64, u64)> {
        let len = npages.saturating_mul(PAGE_SIZE);
        let end = addr.saturating_add(len);
        if len < GIGANTIC_PAGE || !may_hold_gigantic(maps, addr, end) {
            return Vec::new();
        }
        let smaps = self.process.read_to_string("smaps").unwrap_or_default();
        gigantic_in_smaps(&smaps)
    }

    /// The process's mappings, read once from `/proc/<pid>/maps`;
    /// `EFAULT` once the process is gone.
    fn mappings(&self) -> Result<Vec<Mapping>> {
        let maps = self
            .process
            .read_to_string("maps")
            .map_err(|_| Errno::EFAULT)?;
        Ok(maps.lines().filter_map(Mapping::parse).collect())
    }

    /// A copy with `process_vm_*`, which names the process by pid. It is
    /// bracketed by the pidfd's word: alive before and after means the pid
    /// was this process's throughout. A process that has exited is `EFAULT`
    /// (its pid may be another's by now); one that exits during the copy
    /// fails it too, and a write could then have reached another process
    /// only if the pid had been freed and given out again within this one
    /// system call: a full turn of the kernel's cyclic pid allocator, or a
    /// process choosing its pid, which takes `CAP_SYS_ADMIN`.
    fn copy_by_pid(&self, copy: impl FnOnce() -> nix::Result<usize>, len: usize) -> Result<()> {
        if self.process.exited() {
            return Err(Errno::EFAULT);
        }
        let n = copy().map_err(|_| Errno::EFAULT)?;
        if n != len || self.process.exited() {
            return Err(Errno::EFAULT);
        }
        Ok(())
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
        let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
        let len = buf.len();
        let remote = [nix::sys::uio::RemoteIoVec { base, len }];
        let pid = self.process.pid();
        self.copy_by_pid(
            || nix::sys::uio::process_vm_readv(pid, &mut [IoSliceMut::new(buf)], &remote),
            len,
        )
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
        let remote = [nix::sys::uio::RemoteIoVec {
            base,
            len: buf.len(),
        }];
        let pid = self.process.pid();
        self.copy_by_pid(
            || nix::sys::uio::process_vm_writev(pid, &[std::io::IoSlice::new(buf)], &remote),
            buf.len(),
        )
    }

    /// One kernel copy when the memory is the engine's own process (the
    /// library path); a server acting for another process has no system
    /// call that copies within that process, so it reads and writes.
    fn copy_within(&self, from: u64, to: u64, len: usize) -> Option<Result<()>> {
        let this_process = self.process.is_current() && self.process.pid() == nix::unistd::getpid();
        let apart = from.checked_add(len as u64)? <= to || to.checked_add(len as u64)? <= from;
        if !this_process || !apart {
            return None;
        }
        Some(
            if len == 0 || super::sys::copy_within_this_process(from, to, len) {
                Ok(())
            } else {
                Err(Errno::EFAULT)
            },
        )
    }

    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()> {
        covered_by(&self.mappings()?, addr, len, write)
    }

    fn page_identities(&self, addr: u64, npages: u64) -> Vec<PageIdentity> {
        let maps = self.mappings().unwrap_or_default();
        let gigantic = self.gigantic_mappings(&maps, addr, npages);
        identities(&maps, &gigantic, self.id, addr, npages)
    }

    /// One read of the maps for both questions a pin asks.
    fn probe_and_identify_runs(
        &self,
        addr: u64,
        len: u64,
        write: bool,
        first: u64,
        npages: u64,
    ) -> Result<Vec<IdentityRun>> {
        let maps = self.mappings()?;
        covered_by(&maps, addr, len, write)?;
        let gigantic = self.gigantic_mappings(&maps, first, npages);
        Ok(identity_runs_in(&maps, &gigantic, self.id, first, npages))
    }

    fn shared_file(&self, addr: u64) -> Option<Arc<dyn FileBacking>> {
        use std::os::unix::fs::MetadataExt;
        let maps = self.process.read_to_string("maps").ok()?;
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
        let file = self
            .process
            .open(&format!("map_files/{range}"), true)
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
    process: Arc<ProcessHandle>,
}

impl ProcFiles {
    /// Descriptors of this process.
    pub fn current() -> Self {
        ProcFiles {
            process: ProcessHandle::current(),
        }
    }
    /// Descriptors of `process`.
    pub fn of(process: Arc<ProcessHandle>) -> Self {
        ProcFiles { process }
    }
}

impl CallerFiles for ProcFiles {
    fn resolve(&self, fd: i32) -> Result<Arc<dyn FileBacking>> {
        if fd < 0 {
            return Err(Errno::EBADF);
        }
        // The access mode of the caller's descriptor decides writability, as
        // FMODE_WRITE does in Linux; the flags are octal in fdinfo.
        let info = self
            .process
            .read_to_string(&format!("fdinfo/{fd}"))
            .map_err(|_| Errno::EBADF)?;
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .ok_or(Errno::EBADF)?;
        let writable = flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
        let file = self
            .process
            .open(&format!("fd/{fd}"), writable)
            .map_err(|_| Errno::EBADF)?;
        let meta = file.metadata().map_err(|_| Errno::EBADF)?;
        // One identity per inode, so two descriptors of one memfd share pins.
        let id = file_space_id(meta.dev(), meta.ino());
        Ok(Arc::new(OsFile { id, writable, file }))
    }
}
