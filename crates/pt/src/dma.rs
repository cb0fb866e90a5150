//! Device DMA through a domain: translate, check, then copy.
//!
//! An access `[iova, iova + len − 1]` is split at IOTLB page boundaries.
//! Every page is translated and permission-checked first; only when all of
//! them pass (and memory backs every PA) is anything copied, so a fault
//! leaves memory untouched. Pages whose PAs follow one another are copied in
//! one piece. A write marks the leaves dirty when the table tracks dirty.

use crate::fault::{Fault, FaultLog, FaultReason};
use crate::format::Format;
use crate::iotlb::Iotlb;
use crate::prot::Access;
use crate::table::PageTable;

/// The memory behind translations, addressed by PA.
pub trait DmaMemory {
    /// Whether `[pa, pa + len − 1]` is backed (and the sum does not overflow).
    fn contains(&self, pa: u64, len: usize) -> bool;
    /// Copy from memory at `pa` into `buf`; `Err` when not backed.
    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), FaultReason>;
    /// Copy `data` into memory at `pa`; `Err` when not backed.
    fn write_phys(&mut self, pa: u64, data: &[u8]) -> Result<(), FaultReason>;
    /// Copy `len` bytes from `src` to `dst`, both in memory; `Err` names
    /// the side that was not backed. By default the bytes pass through
    /// `scratch` (a page on the stack when it is empty), piece by piece; a
    /// memory that can move them in one step overrides this.
    fn copy_phys(
        &mut self,
        src: u64,
        dst: u64,
        len: usize,
        scratch: &mut [u8],
    ) -> Result<(), (Access, FaultReason)> {
        copy_through(self, src, dst, len, scratch)
    }
}

/// Runs `step(done, piece)` over `len` bytes taken a buffer at a time:
/// `piece` is the next `scratch`-sized part (a page on the stack when
/// `scratch` is empty), `done` the bytes before it. How a copy moves bytes
/// it cannot move in one step.
pub fn in_pieces<E>(
    len: usize,
    scratch: &mut [u8],
    mut step: impl FnMut(usize, &mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut page = [0u8; 4096];
    let scratch = if scratch.is_empty() {
        &mut page[..]
    } else {
        scratch
    };
    let mut done = 0;
    while done < len {
        let room = scratch.len();
        let piece = &mut scratch[..(len - done).min(room)];
        step(done, piece)?;
        done += piece.len();
    }
    Ok(())
}

/// [`DmaMemory::copy_phys`] by reading into `scratch` and writing out,
/// piece by piece ([`in_pieces`]).
pub fn copy_through<M: DmaMemory + ?Sized>(
    memory: &mut M,
    src: u64,
    dst: u64,
    len: usize,
    scratch: &mut [u8],
) -> Result<(), (Access, FaultReason)> {
    in_pieces(len, scratch, |done, piece| {
        memory
            .read_phys(src.wrapping_add(done as u64), piece)
            .map_err(|reason| (Access::Read, reason))?;
        memory
            .write_phys(dst.wrapping_add(done as u64), piece)
            .map_err(|reason| (Access::Write, reason))
    })
}

/// Memory that is one byte vector starting at PA `base`.
#[derive(Debug, Clone)]
pub struct VecMemory {
    /// PA of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: Vec<u8>,
}

impl VecMemory {
    /// `len` zero bytes from PA `base`.
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    /// Offset range inside `bytes` for `[pa, pa + len)`, if backed.
    #[inline]
    fn span(&self, pa: u64, len: usize) -> Option<std::ops::Range<usize>> {
        let offset = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        let end = offset.checked_add(len)?;
        (end <= self.bytes.len()).then_some(offset..end)
    }
}

impl DmaMemory for VecMemory {
    fn contains(&self, pa: u64, len: usize) -> bool {
        self.span(pa, len).is_some()
    }
    #[inline]
    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<(), FaultReason> {
        let span = self.span(pa, buf.len()).ok_or(FaultReason::BadPhysical)?;
        buf.copy_from_slice(&self.bytes[span]);
        Ok(())
    }
    #[inline]
    fn write_phys(&mut self, pa: u64, data: &[u8]) -> Result<(), FaultReason> {
        let span = self.span(pa, data.len()).ok_or(FaultReason::BadPhysical)?;
        self.bytes[span].copy_from_slice(data);
        Ok(())
    }
    fn copy_phys(
        &mut self,
        src: u64,
        dst: u64,
        len: usize,
        _scratch: &mut [u8],
    ) -> Result<(), (Access, FaultReason)> {
        let from = self
            .span(src, len)
            .ok_or((Access::Read, FaultReason::BadPhysical))?;
        let to = self
            .span(dst, len)
            .ok_or((Access::Write, FaultReason::BadPhysical))?;
        self.bytes.copy_within(from, to.start);
        Ok(())
    }
}

/// One device's view of a domain for the duration of some accesses: the
/// table, the IOTLB in front of it, where faults go, and the memory.
#[derive(Debug)]
pub struct Dma<'a, F: Format, M: DmaMemory + ?Sized> {
    /// The domain's page table.
    pub table: &'a mut PageTable<F>,
    /// The IOTLB the device's IOMMU uses for this domain.
    pub iotlb: &'a mut Iotlb,
    /// Where faults are recorded.
    pub faults: &'a mut FaultLog,
    /// The memory behind the translations.
    pub memory: &'a mut M,
}

/// A piece of the access with contiguous PAs: `len` bytes at buffer
/// offset `offset`, PA `pa`.
#[derive(Clone, Copy, Debug)]
struct Run {
    offset: usize,
    pa: u64,
    len: usize,
}

/// Runs remembered by the checking pass so the copy needs no second
/// translation; a more fragmented access translates again while copying.
const MAX_PLANNED_RUNS: usize = 16;

/// The runs of one access, in order, as found by the checking pass.
/// Invariant: when `complete`, `runs[..len]` cover the whole access.
struct Plan {
    runs: [Run; MAX_PLANNED_RUNS],
    len: usize,
    complete: bool,
}

impl<F: Format, M: DmaMemory + ?Sized> Dma<'_, F, M> {
    /// The device reads `buf.len()` bytes at `iova` into `buf`.
    pub fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let len = buf.len();
        let plan = self.check(iova, len, Access::Read)?;
        let memory = &*self.memory;
        let mut copy =
            |run: Run| memory.read_phys(run.pa, &mut buf[run.offset..run.offset + run.len]);
        if plan.complete {
            return replay(&plan, iova, Access::Read, self.faults, copy);
        }
        for_each_run(
            self.table,
            self.iotlb,
            self.faults,
            iova,
            len,
            Access::Read,
            true,
            &mut copy,
        )
    }

    /// The device writes `data` at `iova`.
    pub fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), Fault> {
        let plan = self.check(iova, data.len(), Access::Write)?;
        let memory = &mut *self.memory;
        let mut copy =
            |run: Run| memory.write_phys(run.pa, &data[run.offset..run.offset + run.len]);
        // Dirty marking happens as pages are translated for the copy.
        if plan.complete && !self.table.dirty_tracking() {
            return replay(&plan, iova, Access::Write, self.faults, copy);
        }
        for_each_run(
            self.table,
            self.iotlb,
            self.faults,
            iova,
            data.len(),
            Access::Write,
            true,
            &mut copy,
        )
    }

    /// The device copies `len` bytes from `src` to `dst`, as a DMA engine
    /// does. Both ranges are translated and checked first (the source for
    /// reading, the destination for writing), and nothing is copied unless
    /// both pass; then memory moves the bytes, in one step where it can
    /// ([`DmaMemory::copy_phys`]), through `scratch` where it cannot. When
    /// the two share memory, the bytes go through `scratch` (a whole copy
    /// no longer than it reads before it writes, as `memmove`). A fault's
    /// `access` tells which side failed.
    pub fn copy(
        &mut self,
        src: u64,
        dst: u64,
        len: usize,
        scratch: &mut [u8],
    ) -> Result<(), Fault> {
        let from = self.check(src, len, Access::Read)?;
        let to = self.check(dst, len, Access::Write)?;
        // Source and destination sharing memory must be copied as though
        // through a buffer (a DSA memmove may overlap), which pairing runs
        // one by one would not do; so must runs too many to pair.
        let overlap = from.runs[..from.len].iter().any(|a| {
            to.runs[..to.len]
                .iter()
                .any(|b| a.pa < b.pa + b.len as u64 && b.pa < a.pa + a.len as u64)
        });
        if overlap || !(from.complete && to.complete) {
            // A read and a write per piece of `scratch` (the whole copy
            // when it is that long), which translate again (both already
            // passed).
            return in_pieces(len, scratch, |done, piece| {
                self.read(src + done as u64, piece)?;
                self.write(dst + done as u64, piece)
            });
        }
        if self.table.dirty_tracking() {
            // Marks the destination's leaves dirty; it cannot fail now.
            for_each_run(
                self.table,
                self.iotlb,
                self.faults,
                dst,
                len,
                Access::Write,
                true,
                |_| Ok(()),
            )?;
        }
        let (mut i, mut j, mut at) = (0, 0, 0usize);
        while at < len {
            let (a, b) = (from.runs[i], to.runs[j]);
            let (a_end, b_end) = (a.offset + a.len, b.offset + b.len);
            let n = a_end.min(b_end) - at;
            let src_pa = a.pa + (at - a.offset) as u64;
            let dst_pa = b.pa + (at - b.offset) as u64;
            if let Err((access, reason)) = self.memory.copy_phys(src_pa, dst_pa, n, scratch) {
                let base = if access == Access::Read { src } else { dst };
                let fault = Fault {
                    reason,
                    iova: base + at as u64,
                    access,
                };
                self.faults.record(fault);
                return Err(fault);
            }
            at += n;
            i += usize::from(at == a_end);
            j += usize::from(at == b_end);
        }
        Ok(())
    }

    /// Translate every page without side effects, check memory backs it,
    /// and remember the runs when they are few.
    fn check(&mut self, iova: u64, len: usize, access: Access) -> Result<Plan, Fault> {
        let memory = &*self.memory;
        let mut plan = Plan {
            runs: [Run {
                offset: 0,
                pa: 0,
                len: 0,
            }; MAX_PLANNED_RUNS],
            len: 0,
            complete: true,
        };
        for_each_run(
            self.table,
            self.iotlb,
            self.faults,
            iova,
            len,
            access,
            false,
            |run| {
                if !memory.contains(run.pa, run.len) {
                    return Err(FaultReason::BadPhysical);
                }
                if plan.len < MAX_PLANNED_RUNS {
                    plan.runs[plan.len] = run;
                    plan.len += 1;
                } else {
                    plan.complete = false;
                }
                Ok(())
            },
        )?;
        Ok(plan)
    }
}

/// Copy the planned runs; a memory failure is recorded as a fault.
fn replay(
    plan: &Plan,
    iova: u64,
    access: Access,
    faults: &mut FaultLog,
    mut copy: impl FnMut(Run) -> Result<(), FaultReason>,
) -> Result<(), Fault> {
    for &run in &plan.runs[..plan.len] {
        if let Err(reason) = copy(run) {
            let fault = Fault {
                reason,
                iova: iova + run.offset as u64,
                access,
            };
            faults.record(fault);
            return Err(fault);
        }
    }
    Ok(())
}

/// Translate `[iova, iova + len)` page by page (marking dirty on writes when
/// `commit`), merge PA-contiguous pages into runs and hand each run to
/// `action`. The first failure is recorded in `faults` and returned.
#[allow(clippy::too_many_arguments)]
fn for_each_run<F: Format>(
    table: &mut PageTable<F>,
    iotlb: &mut Iotlb,
    faults: &mut FaultLog,
    iova: u64,
    len: usize,
    access: Access,
    commit: bool,
    mut action: impl FnMut(Run) -> Result<(), FaultReason>,
) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    let mut fail = |reason, iova| {
        let fault = Fault {
            reason,
            iova,
            access,
        };
        faults.record(fault);
        fault
    };
    if iova.checked_add(len as u64 - 1).is_none() {
        return Err(fail(FaultReason::OutOfRange, iova));
    }
    let page_size = iotlb.page_size();
    // The run being gathered, with the IOVA it starts at (for fault reports).
    let mut run: Option<(u64, Run)> = None;
    let mut offset = 0usize;
    while offset < len {
        let page_iova = iova + offset as u64;
        let in_page = (page_size - (page_iova & (page_size - 1))) as usize;
        let chunk = in_page.min(len - offset);
        let translated = if commit {
            iotlb.translate(table, page_iova, access)
        } else {
            iotlb.probe(table, page_iova, access)
        };
        let pa = translated.map_err(|reason| fail(reason, page_iova))?;
        run = match run {
            Some((run_iova, mut current))
                if current.pa.checked_add(current.len as u64) == Some(pa) =>
            {
                current.len += chunk;
                Some((run_iova, current))
            }
            Some((run_iova, current)) => {
                action(current).map_err(|reason| fail(reason, run_iova))?;
                Some((
                    page_iova,
                    Run {
                        offset,
                        pa,
                        len: chunk,
                    },
                ))
            }
            None => Some((
                page_iova,
                Run {
                    offset,
                    pa,
                    len: chunk,
                },
            )),
        };
        offset += chunk;
    }
    if let Some((run_iova, current)) = run {
        action(current).map_err(|reason| fail(reason, run_iova))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::AmdV1;
    use crate::prot::Prot;

    struct Rig {
        table: PageTable<AmdV1>,
        iotlb: Iotlb,
        faults: FaultLog,
        memory: VecMemory,
    }

    impl Rig {
        fn new() -> Self {
            Self {
                table: PageTable::new(AmdV1::config(3)).unwrap(),
                iotlb: Iotlb::for_format::<AmdV1>(),
                faults: FaultLog::new(4),
                memory: VecMemory::new(0, 0x10_0000),
            }
        }
        /// IOVA pages 0x1000 and 0x2000 on physical pages 0x8000 and
        /// 0x3000: neighbours in IOVA, far apart (and out of order) in memory.
        fn map_scattered(&mut self) {
            self.table
                .map(0x1000, 0x8000, 0x1000, Prot::READ_WRITE)
                .unwrap();
            self.table
                .map(0x2000, 0x3000, 0x1000, Prot::READ_WRITE)
                .unwrap();
        }
        fn dma(&mut self) -> Dma<'_, AmdV1, VecMemory> {
            Dma {
                table: &mut self.table,
                iotlb: &mut self.iotlb,
                faults: &mut self.faults,
                memory: &mut self.memory,
            }
        }
    }

    #[test]
    fn write_then_read_crosses_non_contiguous_pages() {
        let mut rig = Rig::new();
        rig.map_scattered();
        let data: Vec<u8> = (0..0x100).map(|i| i as u8).collect();
        rig.dma().write(0x1f80, &data).unwrap();
        assert_eq!(&rig.memory.bytes[0x8f80..0x9000], &data[..0x80]);
        assert_eq!(&rig.memory.bytes[0x3000..0x3080], &data[0x80..]);
        let mut back = vec![0; 0x100];
        rig.dma().read(0x1f80, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn fault_copies_nothing_and_is_recorded() {
        let mut rig = Rig::new();
        rig.table
            .map(0x1000, 0x1000, 0x1000, Prot::READ_WRITE)
            .unwrap();
        rig.table.map(0x2000, 0x2000, 0x1000, Prot::READ).unwrap();
        let err = rig.dma().write(0x1800, &[0xaa; 0x1000]).unwrap_err();
        assert_eq!(
            err,
            Fault {
                reason: FaultReason::Permission,
                iova: 0x2000,
                access: Access::Write
            }
        );
        assert!(rig.memory.bytes.iter().all(|&b| b == 0));
        let err = rig.dma().read(0x2800, &mut [0; 0x1000]).unwrap_err();
        assert_eq!(err.reason, FaultReason::NotPresent);
        assert_eq!(err.iova, 0x3000);
        assert_eq!(rig.faults.len(), 2);
        let err = rig.dma().read(u64::MAX, &mut [0; 2]).unwrap_err();
        assert_eq!(err.reason, FaultReason::OutOfRange);
    }

    #[test]
    fn fragmented_access_beyond_the_plan_still_copies_right() {
        let mut rig = Rig::new();
        // 40 pages in reverse PA order: 40 runs, more than the plan keeps.
        for page in 0..40u64 {
            rig.table
                .map(
                    page * 0x1000,
                    (80 - 2 * page) * 0x1000,
                    0x1000,
                    Prot::READ_WRITE,
                )
                .unwrap();
        }
        let data: Vec<u8> = (0..40 * 0x1000).map(|i| (i / 0x1000) as u8).collect();
        rig.dma().write(0, &data).unwrap();
        for page in 0..40u64 {
            let pa = ((80 - 2 * page) * 0x1000) as usize;
            assert!(rig.memory.bytes[pa..pa + 0x1000]
                .iter()
                .all(|&b| b == page as u8));
        }
        let mut back = vec![0; data.len()];
        rig.dma().read(0, &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn unbacked_pa_faults_before_copying() {
        let mut rig = Rig::new();
        rig.table
            .map(0x1000, 0xf_f000, 0x2000, Prot::READ_WRITE)
            .unwrap();
        let err = rig.dma().write(0x1000, &[1; 0x2000]).unwrap_err();
        assert_eq!(err.reason, FaultReason::BadPhysical);
        assert!(rig.memory.bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn write_marks_dirty_only_when_tracking() {
        let mut rig = Rig::new();
        rig.table.map(0, 0, 0x2000, Prot::READ_WRITE).unwrap();
        rig.dma().write(0x10, &[1]).unwrap();
        assert!(!rig.table.lookup(0).unwrap().1.dirty);
        rig.iotlb.invalidate_all();
        rig.table.set_dirty_tracking(true);
        rig.dma().write(0x10, &[1]).unwrap();
        assert!(rig.table.lookup(0).unwrap().1.dirty);
        rig.dma().read(0x1000, &mut [0]).unwrap();
        assert!(!rig.table.lookup(0x1000).unwrap().1.dirty);
    }

    #[test]
    fn copy_pairs_runs_that_break_at_different_places() {
        let mut rig = Rig::new();
        // Source: one page, then one elsewhere; destination: the other way.
        rig.table.map(0x1000, 0x10000, 0x1000, Prot::READ).unwrap();
        rig.table.map(0x2000, 0x30000, 0x1000, Prot::READ).unwrap();
        rig.table
            .map(0x8000, 0x50000, 0x2000, Prot::READ_WRITE)
            .unwrap();
        for (i, b) in rig.memory.bytes[0x10800..0x11000].iter_mut().enumerate() {
            *b = i as u8;
        }
        rig.memory.bytes[0x30000..0x30800].fill(0xee);
        rig.table.set_dirty_tracking(true);
        rig.dma().copy(0x1800, 0x8400, 0x1000, &mut []).unwrap();
        assert!(rig.memory.bytes[0x50400..0x50c00]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == i as u8));
        assert!(rig.memory.bytes[0x50c00..0x51400]
            .iter()
            .all(|&b| b == 0xee));
        assert!(rig.table.lookup(0x8000).unwrap().1.dirty);
        assert!(!rig.table.lookup(0x1000).unwrap().1.dirty);
    }

    #[test]
    fn copy_faults_name_their_side_and_copy_nothing() {
        let mut rig = Rig::new();
        rig.table.map(0x1000, 0x1000, 0x2000, Prot::READ).unwrap();
        rig.memory.bytes[0x1000..0x3000].fill(7);
        let err = rig.dma().copy(0x1000, 0x1000, 0x10, &mut []).unwrap_err();
        assert_eq!((err.access, err.iova), (Access::Write, 0x1000));
        assert_eq!(err.reason, FaultReason::Permission);
        rig.table
            .map(0x8000, 0x8000, 0x1000, Prot::READ_WRITE)
            .unwrap();
        let err = rig.dma().copy(0x2800, 0x8000, 0x1000, &mut []).unwrap_err();
        assert_eq!((err.access, err.iova), (Access::Read, 0x3000));
        assert!(rig.memory.bytes[0x8000..0x9000].iter().all(|&b| b == 0));
    }

    #[test]
    fn fragmented_copy_goes_through_the_scratch_buffer() {
        let mut rig = Rig::new();
        for page in 0..40u64 {
            rig.table
                .map(page * 0x1000, (80 - 2 * page) * 0x1000, 0x1000, Prot::READ)
                .unwrap();
        }
        rig.table
            .map(0x80000, 0xa0000, 0x28000, Prot::READ_WRITE)
            .unwrap();
        for page in 0..40u64 {
            let pa = ((80 - 2 * page) * 0x1000) as usize;
            rig.memory.bytes[pa..pa + 0x1000].fill(page as u8);
        }
        let mut scratch = [0u8; 0x3000];
        rig.dma().copy(0, 0x80000, 0x28000, &mut scratch).unwrap();
        for page in 0..40usize {
            let at = 0xa0000 + page * 0x1000;
            assert!(rig.memory.bytes[at..at + 0x1000]
                .iter()
                .all(|&b| b == page as u8));
        }
    }

    #[test]
    fn an_overlapping_copy_moves_as_memmove_across_scattered_pages() {
        let mut rig = Rig::new();
        // Two IOVA pages on pages far apart, so that pairing runs would cut
        // the copy where the source is already overwritten.
        rig.map_scattered();
        let data: Vec<u8> = (0..0x2000).map(|i| (i % 251) as u8).collect();
        rig.dma().write(0x1000, &data).unwrap();
        let mut scratch = vec![0u8; 0x2000];
        rig.dma()
            .copy(0x1000, 0x1040, 0x1fc0, &mut scratch)
            .unwrap();
        let mut back = vec![0; 0x2000];
        rig.dma().read(0x1000, &mut back).unwrap();
        assert_eq!(&back[0x40..], &data[..0x1fc0]);
    }
}
