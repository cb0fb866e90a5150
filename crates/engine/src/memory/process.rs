//! A real process's memory and files, reached through `process_vm_readv` /
//! `process_vm_writev` and `/proc/<pid>`.

use super::*;
use crate::errno::{Errno, Result};
use std::fmt::Debug;
use std::fs::File;
use std::io::IoSliceMut;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

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
    /// Descriptors of this process.
    pub fn current() -> Self {
        ProcFiles {
            pid: nix::unistd::getpid(),
        }
    }
    /// Descriptors of process `pid`.
    pub fn of(pid: nix::unistd::Pid) -> Self {
        ProcFiles { pid }
    }
}

impl CallerFiles for ProcFiles {
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
