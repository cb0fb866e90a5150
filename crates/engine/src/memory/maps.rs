//! What `/proc/<pid>/maps` and `smaps` say about a process's memory:
//! which ranges are mapped with which rights, which belong to a shared file,
//! which lie in 1 GiB huge pages, and so what each page is
//! ([`PageIdentity`]), gathered into runs.

use super::*;
use crate::errno::{Errno, Result};

/// The size of a gigantic (1 GiB) huge page.
pub(super) const GIGANTIC_PAGE: u64 = 1 << 30;

/// The `[lo, hi)` of each mapping in `smaps` text whose kernel page size is
/// 1 GiB.
pub(super) fn gigantic_in_smaps(smaps: &str) -> Vec<(u64, u64)> {
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
pub(super) struct Mapping {
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
    pub(super) fn parse(line: &str) -> Option<Mapping> {
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

/// Whether a mapping that meets `[addr, end)` has both ends 1 GiB-aligned,
/// as one backed by 1 GiB huge pages has.
pub(super) fn may_hold_gigantic(maps: &[Mapping], addr: u64, end: u64) -> bool {
    maps.iter().any(|m| {
        m.lo < end && addr < m.hi && m.lo % GIGANTIC_PAGE == 0 && m.hi % GIGANTIC_PAGE == 0
    })
}

/// Whether `[addr, addr + len)` lies in mappings with the needed permissions.
pub(super) fn covered_by(maps: &[Mapping], addr: u64, len: u64, write: bool) -> Result<()> {
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
pub(super) fn identity_runs_in(
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
pub(super) fn identities(
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
