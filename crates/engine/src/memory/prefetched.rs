//! A caller's memory with the buffers a call will use copied in advance, so
//! that the call itself, which runs under its context's lock, never waits
//! on the caller's pages.
//!
//! A page the caller has not made present (a userfaultfd page nobody
//! resolves, a mapping of a FUSE file whose daemon never answers) stalls
//! whoever copies it. Copied here, before any lock, it stalls only the
//! caller's own call; the call then reads and writes the copies, and what
//! it wrote goes back to the caller after the lock is released
//! ([`PrefetchedMemory::write_back`]), as a Linux ioctl would copy a
//! buffer in with `copy_from_user` before taking its locks and out after.
//!
//! An access that is not wholly inside one copy goes to the caller's memory
//! as before (and keeps the copies true where it overlaps them), so a call
//! behaves exactly as without the copies; only where it waits changes.

use super::{AddressSpace, FileBacking, IdentityRun, PageIdentity};
use crate::errno::Result;
use crate::sync::Locked;
use std::sync::{Arc, Mutex};

/// The most bytes copied in advance for one call; a call whose buffers are
/// larger copies the rest while it runs, as before.
pub const PREFETCH_MAX: u64 = 1 << 20;

/// One buffer copied from the caller.
#[derive(Debug)]
struct Copy {
    addr: u64,
    bytes: Vec<u8>,
    /// The span `[start, end)` of `bytes` the call wrote, if any.
    written: Option<(usize, usize)>,
}

impl Copy {
    fn end(&self) -> u64 {
        self.addr + self.bytes.len() as u64
    }

    /// `[addr, addr + len)` relative to this copy, if wholly inside it.
    fn inside(&self, addr: u64, len: usize) -> Option<usize> {
        let end = addr.checked_add(len as u64)?;
        (addr >= self.addr && end <= self.end()).then(|| (addr - self.addr) as usize)
    }

    /// The overlap of `[addr, addr + len)` with this copy as
    /// `(offset in the access, offset in the copy, length)`.
    fn overlap(&self, addr: u64, len: usize) -> Option<(usize, usize, usize)> {
        let end = addr.saturating_add(len as u64);
        let start = addr.max(self.addr);
        let stop = end.min(self.end());
        (start < stop).then(|| {
            (
                (start - addr) as usize,
                (start - self.addr) as usize,
                (stop - start) as usize,
            )
        })
    }

    fn mark_written(&mut self, from: usize, len: usize) {
        let (start, end) = self.written.unwrap_or((from, from));
        self.written = Some((start.min(from), end.max(from + len)));
    }
}

/// The caller's memory (`inner`) with buffers copied in advance.
#[derive(Debug)]
pub struct PrefetchedMemory {
    inner: Arc<dyn AddressSpace>,
    /// Disjoint copies. Locked only for a copy in or out of one of them,
    /// never across a call to `inner`.
    copies: Mutex<Vec<Copy>>,
    /// Bytes copied so far (at most [`PREFETCH_MAX`]).
    fetched: u64,
}

impl PrefetchedMemory {
    /// `inner` with nothing copied yet.
    pub fn new(inner: Arc<dyn AddressSpace>) -> Self {
        PrefetchedMemory {
            inner,
            copies: Mutex::new(Vec::new()),
            fetched: 0,
        }
    }

    /// Copies `[addr, addr + len)` from the caller. Leaves it out (the call
    /// will then reach it directly, with the errno that gives, while it
    /// can still undo what it did) when it is empty, overlaps a copy
    /// already made, would pass [`PREFETCH_MAX`], cannot be read, or, when
    /// the call may write it (`written`), cannot be written: its own bytes
    /// are written back to find out. Returns whether it was copied.
    pub fn fetch(&mut self, addr: u64, len: u64, written: bool) -> bool {
        if len == 0 || addr.checked_add(len).is_none() || len > PREFETCH_MAX - self.fetched {
            return false;
        }
        let copies = self.copies.get_mut().unwrap_or_else(|e| e.into_inner());
        if copies
            .iter()
            .any(|c| c.overlap(addr, len as usize).is_some())
        {
            return false;
        }
        let mut bytes = vec![0u8; len as usize];
        if self.inner.read(addr, &mut bytes).is_err()
            || (written && self.inner.write(addr, &bytes).is_err())
        {
            return false;
        }
        copies.push(Copy {
            addr,
            bytes,
            written: None,
        });
        self.fetched += len;
        true
    }

    /// Writes what the call wrote into the copies back to the caller; the
    /// first failure's errno (`EFAULT`) if a buffer cannot be written.
    pub fn write_back(&self) -> Result<()> {
        let copies = std::mem::take(&mut *self.copies.locked());
        let mut outcome = Ok(());
        for c in copies {
            if let Some((start, end)) = c.written {
                let done = self
                    .inner
                    .write(c.addr + start as u64, &c.bytes[start..end]);
                outcome = outcome.and(done);
            }
        }
        outcome
    }
}

impl AddressSpace for PrefetchedMemory {
    fn id(&self) -> u64 {
        self.inner.id()
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<()> {
        {
            let copies = self.copies.locked();
            if let Some((c, at)) = copies
                .iter()
                .find_map(|c| c.inside(addr, buf.len()).map(|at| (c, at)))
            {
                buf.copy_from_slice(&c.bytes[at..at + buf.len()]);
                return Ok(());
            }
        }
        self.inner.read(addr, buf)?;
        // What the call wrote but has not gone back yet is what it reads.
        let copies = self.copies.locked();
        for c in copies.iter() {
            if let (Some((from, to)), Some((at, off, n))) = (c.written, c.overlap(addr, buf.len()))
            {
                let (lo, hi) = (off.max(from), (off + n).min(to));
                if lo < hi {
                    let shift = lo - off;
                    buf[at + shift..at + shift + (hi - lo)].copy_from_slice(&c.bytes[lo..hi]);
                }
            }
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<()> {
        {
            let mut copies = self.copies.locked();
            if let Some((c, at)) = copies
                .iter_mut()
                .find_map(|c| c.inside(addr, buf.len()).map(|at| (c, at)))
            {
                c.bytes[at..at + buf.len()].copy_from_slice(buf);
                c.mark_written(at, buf.len());
                return Ok(());
            }
        }
        self.inner.write(addr, buf)?;
        // Keep the copies true where the direct write overlapped them.
        let mut copies = self.copies.locked();
        for c in copies.iter_mut() {
            if let Some((at, off, n)) = c.overlap(addr, buf.len()) {
                c.bytes[off..off + n].copy_from_slice(&buf[at..at + n]);
            }
        }
        Ok(())
    }

    fn probe(&self, addr: u64, len: u64, write: bool) -> Result<()> {
        self.inner.probe(addr, len, write)
    }

    fn probe_and_identify_runs(
        &self,
        addr: u64,
        len: u64,
        write: bool,
        first: u64,
        npages: u64,
    ) -> Result<Vec<IdentityRun>> {
        self.inner
            .probe_and_identify_runs(addr, len, write, first, npages)
    }

    fn page_identities(&self, addr: u64, npages: u64) -> Vec<PageIdentity> {
        self.inner.page_identities(addr, npages)
    }

    fn shared_file(&self, addr: u64) -> Option<Arc<dyn FileBacking>> {
        self.inner.shared_file(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::Errno;
    use crate::memory::SimMemory;

    fn sim() -> Arc<SimMemory> {
        let sim = Arc::new(SimMemory::new());
        sim.map(0x1000, 0x4000, true);
        sim.write(0x1000, &[1; 0x4000]).unwrap();
        sim
    }

    #[test]
    fn a_call_reads_and_writes_its_copies_and_the_writes_go_back_after() {
        let sim = sim();
        let mut mem = PrefetchedMemory::new(sim.clone());
        assert!(mem.fetch(0x2000, 16, true));
        sim.write(0x2000, &[9; 16]).unwrap(); // the copy is taken
        let mut buf = [0u8; 4];
        mem.read(0x2004, &mut buf).unwrap();
        assert_eq!(buf, [1; 4]);
        mem.write(0x2004, &[7; 2]).unwrap();
        assert_eq!(sim_byte(&sim, 0x2004), 9, "not written until write_back");
        // A direct read across the copy sees the call's own writes.
        let mut wide = [0u8; 8];
        mem.read(0x2000, &mut wide).unwrap();
        mem.read(0x1ffe, &mut wide).unwrap();
        assert_eq!(wide, [1, 1, 9, 9, 9, 9, 7, 7]);
        mem.write_back().unwrap();
        // Only the bytes written go back: the rest keeps the caller's 9s.
        let mut after = [0u8; 8];
        sim.read(0x2002, &mut after).unwrap();
        assert_eq!(after, [9, 9, 7, 7, 9, 9, 9, 9]);
    }

    #[test]
    fn what_cannot_be_copied_is_reached_directly() {
        let sim = sim();
        let mut mem = PrefetchedMemory::new(sim.clone());
        assert!(!mem.fetch(0x4ff8, 16, false), "runs off the mapping");
        assert!(!mem.fetch(0x1000, PREFETCH_MAX + 1, false), "too large");
        assert!(
            !mem.fetch(0x1000, u64::MAX - 0x1000, false),
            "far too large"
        );
        assert!(!mem.fetch(0x1000, 0, false));
        // A buffer the call may write must be writable: else the call
        // meets the EFAULT itself, while it can still undo.
        sim.map(0x8000, 0x1000, false);
        assert!(!mem.fetch(0x8000, 16, true));
        assert!(mem.fetch(0x8000, 16, false));
        assert!(mem.fetch(0x1000, 8, false));
        assert!(!mem.fetch(0x1004, 8, false), "overlaps a copy");
        let mut buf = [0u8; 16];
        assert_eq!(mem.read(0x4ff8, &mut buf), Err(Errno::EFAULT));
        // A direct write over a copy keeps the copy true.
        mem.write(0x0ffc, &[5; 8]).unwrap_err();
        mem.write(0x1004, &[5; 8]).unwrap();
        let mut head = [0u8; 4];
        mem.read(0x1004, &mut head).unwrap();
        assert_eq!(head, [5; 4]);
    }

    fn sim_byte(sim: &SimMemory, addr: u64) -> u8 {
        let mut b = [0u8];
        sim.read(addr, &mut b).unwrap();
        b[0]
    }
}
