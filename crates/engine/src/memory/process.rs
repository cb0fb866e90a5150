//! A real process's memory and files, reached through a handle bound to
//! the process (see [`ProcessHandle`]): `process_vm_readv` /
//! `process_vm_writev` for memory, `/proc/<pid>` opened once for the rest.

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
        let candidate = maps.iter().any(|m| {
            m.lo < end && addr < m.hi && m.lo % GIGANTIC_PAGE == 0 && m.hi % GIGANTIC_PAGE == 0
        });
        if len < GIGANTIC_PAGE || !candidate {
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

/// The size of a gigantic (1 GiB) huge page.
const GIGANTIC_PAGE: u64 = 1 << 30;

/// The `[lo, hi)` of each mapping in `smaps` text whose kernel page size is
/// 1 GiB.
fn gigantic_in_smaps(smaps: &str) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    let mut current: Option<(u64, u64)> = None;
    for line in smaps.lines() {
        if let Some(size) = line.strip_prefix("KernelPageSize:") {
            let kib: u64 = size
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            if kib * 1024 == GIGANTIC_PAGE {
                found.extend(current);
            }
        } else if let Some(m) = Mapping::parse(line) {
            current = Some((m.lo, m.hi));
        }
    }
    found
}

/// One line of `/proc/<pid>/maps`: `[lo, hi)`, its permissions, and for a
/// file mapping the file's device, inode and offset.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    lo: u64,
    hi: u64,
    readable: bool,
    writable: bool,
    shared: bool,
    offset: u64,
    dev: u64,
    ino: u64,
    /// A device's memory: a VFIO BAR the program mapped (the server names
    /// BAR memory `softiommu-bar<n>`).
    device: bool,
}

impl Mapping {
    fn parse(line: &str) -> Option<Mapping> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let hex = |x: &str| u64::from_str_radix(x, 16).ok();
        let (lo, hi) = f.first()?.split_once('-')?;
        let perms = f.get(1)?.as_bytes();
        let (major, minor) = f
            .get(3)
            .and_then(|d| d.split_once(':'))
            .unwrap_or(("0", "0"));
        Some(Mapping {
            lo: hex(lo)?,
            hi: hex(hi)?,
            readable: perms.first() == Some(&b'r'),
            writable: perms.get(1) == Some(&b'w'),
            shared: perms.get(3) == Some(&b's'),
            offset: f.get(2).and_then(|o| hex(o)).unwrap_or(0),
            dev: libc::makedev(
                hex(major).unwrap_or(0) as u32,
                hex(minor).unwrap_or(0) as u32,
            ),
            ino: f.get(4).and_then(|i| i.parse().ok()).unwrap_or(0),
            device: f
                .get(5)
                .is_some_and(|p| p.starts_with("/memfd:softiommu-bar")),
        })
    }
}

/// Whether `[addr, addr + len)` lies in mappings with the needed permissions.
fn covered_by(maps: &[Mapping], addr: u64, len: u64, write: bool) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    let last = addr.checked_add(len - 1).ok_or(Errno::EFAULT)?;
    let mut next = addr;
    for m in maps {
        if m.hi <= next || m.lo > next {
            continue;
        }
        // A BAR's register pages may be mapped read-only by the shim, which
        // traps the program's stores to them; as device memory they are
        // writable all the same.
        let writable = m.writable || (m.device && m.shared);
        if !m.readable || (write && !writable) {
            return Err(Errno::EFAULT);
        }
        if m.hi > last {
            return Ok(());
        }
        next = m.hi;
    }
    Err(Errno::EFAULT)
}

/// What the `npages` pages from `addr` are, as runs: pages of a shared file
/// mapping (shared anonymous memory included, which the kernel backs with a
/// shmem file) are the file's; the rest are the address space `space`'s
/// own. A run ends only where a mapping or a 1 GiB huge page region
/// (`gigantic`) begins or ends, so the work does not grow with `npages`.
fn identity_runs_in(
    maps: &[Mapping],
    gigantic: &[(u64, u64)],
    space: u64,
    addr: u64,
    npages: u64,
) -> Vec<IdentityRun> {
    let end = addr.saturating_add(npages.saturating_mul(PAGE_SIZE));
    let shared: Vec<&Mapping> = maps.iter().filter(|m| m.shared && m.ino != 0).collect();
    let mut bounds: Vec<u64> = vec![addr, end];
    let edges = shared
        .iter()
        .flat_map(|m| [m.lo, m.hi])
        .chain(gigantic.iter().flat_map(|&(lo, hi)| [lo, hi]));
    bounds.extend(edges.filter(|&b| addr < b && b < end));
    bounds.sort_unstable();
    bounds.dedup();
    let pieces = bounds.windows(2).map(|w| {
        let (va, count) = (w[0], (w[1] - w[0]) / PAGE_SIZE);
        let huge = gigantic.iter().any(|&(lo, hi)| lo <= va && va < hi);
        let first = match shared.iter().find(|m| m.lo <= va && va < m.hi) {
            Some(m) => {
                let page = (m.offset + (va - m.lo)) / PAGE_SIZE;
                PageIdentity {
                    space: file_space_id(m.dev, m.ino),
                    page,
                    va_delta: va.wrapping_sub(page * PAGE_SIZE),
                    device: m.device,
                    gigantic: huge,
                }
            }
            None => PageIdentity {
                space,
                page: va / PAGE_SIZE,
                va_delta: 0,
                device: false,
                gigantic: huge,
            },
        };
        IdentityRun { first, count }
    });
    let mut runs: Vec<IdentityRun> = Vec::new();
    for piece in pieces.filter(|p| p.count > 0) {
        match runs.last_mut() {
            Some(run) if run.nth(run.count) == piece.first => run.count += piece.count,
            _ => runs.push(piece),
        }
    }
    runs
}

/// Per page, what [`identity_runs_in`] gives as runs.
fn identities(
    maps: &[Mapping],
    gigantic: &[(u64, u64)],
    space: u64,
    addr: u64,
    npages: u64,
) -> Vec<PageIdentity> {
    identity_runs_in(maps, gigantic, space, addr, npages)
        .iter()
        .flat_map(|run| (0..run.count).map(|k| run.nth(k)))
        .collect()
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
    fn probe_and_identify(
        &self,
        addr: u64,
        len: u64,
        write: bool,
        first: u64,
        npages: u64,
    ) -> Result<Vec<PageIdentity>> {
        let maps = self.mappings()?;
        covered_by(&maps, addr, len, write)?;
        let gigantic = self.gigantic_mappings(&maps, first, npages);
        Ok(identities(&maps, &gigantic, self.id, first, npages))
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_names_the_mappings_of_gigantic_pages() {
        let smaps = "\
7f0000000000-7f0040000000 rw-p 00000000 00:10 4242                       /anon_hugepage (deleted)
Size:            1048576 kB
KernelPageSize:  1048576 kB
MMUPageSize:     1048576 kB
VmFlags: rd wr mr mw me de ht
7f0040000000-7f0040200000 rw-p 00000000 00:10 4243                       /anon_hugepage (deleted)
Size:               2048 kB
KernelPageSize:     2048 kB
7f0050000000-7f0050001000 rw-p 00000000 00:00 0
Size:                  4 kB
KernelPageSize:        4 kB
";
        assert_eq!(
            gigantic_in_smaps(smaps),
            vec![(0x7f00_0000_0000, 0x7f00_4000_0000)]
        );
    }

    #[test]
    fn identities_come_in_runs_that_end_only_where_mappings_do() {
        let maps: Vec<Mapping> = [
            "10000000-10400000 rw-p 00000000 00:00 0",
            "10400000-10500000 rw-s 00003000 00:05 77                   /memfd:ram (deleted)",
            "10500000-10600000 rw-p 00000000 00:00 0",
        ]
        .iter()
        .filter_map(|l| Mapping::parse(l))
        .collect();
        let (lo, pages) = (0x1000_0000u64, 0x600u64);
        let gigantic = [(0x1050_0000, 0x1058_0000)];
        let runs = identity_runs_in(&maps, &gigantic, 9, lo, pages);
        let file = file_space_id(5, 77);
        let summary: Vec<(u64, u64, u64, bool)> = runs
            .iter()
            .map(|r| (r.first.space, r.first.page, r.count, r.first.gigantic))
            .collect();
        assert_eq!(
            summary,
            vec![
                (9, 0x10000, 0x400, false),
                (file, 3, 0x100, false),
                (9, 0x10500, 0x80, true),
                (9, 0x10580, 0x80, false),
            ]
        );
        // The per-page form is the runs spelled out.
        let each = identities(&maps, &gigantic, 9, lo, pages);
        assert_eq!(each.len(), pages as usize);
        assert_eq!(crate::memory::identity_runs(each), runs);
        assert_eq!(runs[1].nth(1).va_delta, 0x1040_0000 - 3 * PAGE_SIZE);
    }
}
