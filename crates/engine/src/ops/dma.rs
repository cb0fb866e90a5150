//! Emulated device DMA: a bound device reads or writes memory at an IOVA
//! through the domain its group translates through, as hardware would —
//! permission-checked, dirty bits set while tracking is on, and nothing copied
//! when any page of the buffer fails to translate.
//!
//! Translation walks the page table on every call (no IOTLB is kept between
//! calls, so no invalidation can be missed).

use crate::context::Context;
use crate::errno::Errno;
use crate::pages::physical::{Backing, PhysMap, CHUNK_SIZE};
use crate::sync::Locked;
use softiommu_iommu::DomainKind;
use softiommu_pt::{Access, DmaMemory, Fault, FaultLog, FaultReason};
use std::sync::MutexGuard;

/// What a failed device DMA reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The device's domain did not translate the access.
    Fault(Fault),
    /// The call itself was wrong (unknown device, a domain kind that cannot be
    /// walked yet): the errno.
    Errno(Errno),
}

impl From<Errno> for DmaError {
    fn from(e: Errno) -> Self {
        DmaError::Errno(e)
    }
}

/// The synthetic physical memory, for the page-table walker.
struct PhysMemory<'a> {
    phys: MutexGuard<'a, PhysMap>,
}

impl PhysMemory<'_> {
    /// Runs `f` on each piece of `[pa, pa + len)` that lies in one chunk.
    fn pieces(
        &self,
        pa: u64,
        len: usize,
        mut f: impl FnMut(&Backing, u64, usize, usize) -> bool,
    ) -> bool {
        let mut done = 0usize;
        while done < len {
            let at = pa + done as u64;
            let room = (CHUNK_SIZE - at % CHUNK_SIZE) as usize;
            let n = room.min(len - done);
            let Some((backing, offset)) = self.phys.resolve(at) else {
                return false;
            };
            if !f(&backing, offset, done, n) {
                return false;
            }
            done += n;
        }
        true
    }
}

impl DmaMemory for PhysMemory<'_> {
    fn contains(&self, pa: u64, len: usize) -> bool {
        pa.checked_add(len as u64).is_some() && self.pieces(pa, len, |_, _, _, _| true)
    }

    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> std::result::Result<(), FaultReason> {
        let len = buf.len();
        let ok = self.pieces(pa, len, |backing, offset, at, n| {
            let dst = &mut buf[at..at + n];
            match backing {
                Backing::Memory { mm, va_delta } => {
                    mm.read(offset.wrapping_add(*va_delta), dst).is_ok()
                }
                Backing::File(file) => file.read_at(offset, dst).is_ok(),
            }
        });
        if ok {
            Ok(())
        } else {
            Err(FaultReason::BadPhysical)
        }
    }

    fn write_phys(&mut self, pa: u64, data: &[u8]) -> std::result::Result<(), FaultReason> {
        let ok = self.pieces(pa, data.len(), |backing, offset, at, n| {
            let src = &data[at..at + n];
            match backing {
                Backing::Memory { mm, va_delta } => {
                    mm.write(offset.wrapping_add(*va_delta), src).is_ok()
                }
                Backing::File(file) => file.write_at(offset, src).is_ok(),
            }
        });
        if ok {
            Ok(())
        } else {
            Err(FaultReason::BadPhysical)
        }
    }

    /// In one step where both sides lie in one address space that can copy
    /// within itself; through `scratch` otherwise, and to find which side
    /// failed when the one step did.
    fn copy_phys(
        &mut self,
        src: u64,
        dst: u64,
        len: usize,
        scratch: &mut [u8],
    ) -> std::result::Result<(), (Access, FaultReason)> {
        let room = |pa: u64| (CHUNK_SIZE - pa % CHUNK_SIZE) as usize;
        let mut done = 0usize;
        while done < len {
            let (from, to) = (src + done as u64, dst + done as u64);
            let n = room(from).min(room(to)).min(len - done);
            let direct = match (self.phys.resolve(from), self.phys.resolve(to)) {
                (
                    Some((Backing::Memory { mm, va_delta }, from_offset)),
                    Some((
                        Backing::Memory {
                            mm: to_mm,
                            va_delta: to_delta,
                        },
                        to_offset,
                    )),
                ) if mm.id() == to_mm.id() => mm.copy_within(
                    from_offset.wrapping_add(va_delta),
                    to_offset.wrapping_add(to_delta),
                    n,
                ),
                _ => None,
            };
            if !matches!(direct, Some(Ok(()))) {
                softiommu_pt::copy_through(self, from, to, n, scratch)?;
            }
            done += n;
        }
        Ok(())
    }
}

/// One device access: a read into a buffer, a write from one, or a copy
/// from one IOVA range to another.
enum Transfer<'b> {
    Read {
        iova: u64,
        buf: &'b mut [u8],
    },
    Write {
        iova: u64,
        data: &'b mut [u8],
    },
    Copy {
        src: u64,
        dst: u64,
        len: usize,
        scratch: &'b mut [u8],
    },
}

impl Transfer<'_> {
    /// Where the transfer touches memory first, and how: what a domain
    /// that translates nothing reports.
    fn first_access(&self) -> (u64, Access) {
        match self {
            Transfer::Read { iova, .. } => (*iova, Access::Read),
            Transfer::Write { iova, .. } => (*iova, Access::Write),
            Transfer::Copy { src, .. } => (*src, Access::Read),
        }
    }

    /// The transfer as plain reads and writes (`write` set for a write),
    /// a copy's through its scratch buffer piece by piece (a page on the
    /// stack when the buffer is empty).
    fn each_access<E>(
        self,
        mut access: impl FnMut(u64, &mut [u8], bool) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match self {
            Transfer::Read { iova, buf } => access(iova, buf, false),
            Transfer::Write { iova, data } => access(iova, data, true),
            Transfer::Copy {
                src,
                dst,
                len,
                scratch,
            } => softiommu_pt::in_pieces(len, scratch, |done, piece| {
                access(src.wrapping_add(done as u64), piece, false)?;
                access(dst.wrapping_add(done as u64), piece, true)
            }),
        }
    }
}

impl Context {
    /// Device `dev_id` reads `buf.len()` bytes at `iova` (`write` false) or
    /// writes `buf` there (`write` true) through its group's domain.
    ///
    /// A translation or permission fault on a HWPT made with a fault queue
    /// also raises an IO page request for the faulting page, as a
    /// PRI-capable device would: its record reaches the queue's file
    /// ([`Context::take_side_output`]) and waits for the response; the DMA
    /// itself still fails, to be retried once the page is there.
    pub fn device_dma(
        &mut self,
        dev_id: u32,
        iova: u64,
        buf: &mut [u8],
        write: bool,
    ) -> std::result::Result<(), DmaError> {
        self.device_dma_as(dev_id, None, iova, buf, write)
    }

    /// [`device_dma`](Self::device_dma) tagged with `pasid`: through the
    /// HWPT attached to that PASID of the device (a translation fault when
    /// none is), its page requests routed by that PASID. `None` is the
    /// untagged DMA of the RID.
    pub fn device_dma_as(
        &mut self,
        dev_id: u32,
        pasid: Option<u32>,
        iova: u64,
        buf: &mut [u8],
        write: bool,
    ) -> std::result::Result<(), DmaError> {
        let transfer = if write {
            Transfer::Write { iova, data: buf }
        } else {
            Transfer::Read { iova, buf }
        };
        self.device_transfer(dev_id, pasid, transfer)
    }

    /// Device `dev_id` copies `len` bytes from `src` to `dst`, as a DMA
    /// engine does (see [`softiommu_pt::Dma::copy`]): both ranges checked
    /// before anything moves, the bytes moved in one step where memory
    /// allows and through `scratch` where not. A fault's `access` tells the
    /// side that failed; page requests are raised as for
    /// [`device_dma_as`](Self::device_dma_as).
    pub fn device_dma_copy(
        &mut self,
        dev_id: u32,
        pasid: Option<u32>,
        (src, dst, len): (u64, u64, usize),
        scratch: &mut [u8],
    ) -> std::result::Result<(), DmaError> {
        let transfer = Transfer::Copy {
            src,
            dst,
            len,
            scratch,
        };
        self.device_transfer(dev_id, pasid, transfer)
    }

    fn device_transfer(
        &mut self,
        dev_id: u32,
        pasid: Option<u32>,
        transfer: Transfer<'_>,
    ) -> std::result::Result<(), DmaError> {
        let outcome = self.translate_dma(dev_id, pasid, transfer);
        if let Err(DmaError::Fault(f)) = &outcome {
            if matches!(f.reason, FaultReason::NotPresent | FaultReason::Permission) {
                use softiommu_uapi::iommufd::{IOMMU_PGFAULT_PERM_READ, IOMMU_PGFAULT_PERM_WRITE};
                let request = crate::object::PageRequest {
                    pasid: pasid.unwrap_or(0),
                    grpid: self.next_page_request_group(),
                    perm: match f.access {
                        Access::Write => IOMMU_PGFAULT_PERM_WRITE,
                        Access::Read => IOMMU_PGFAULT_PERM_READ,
                    },
                    addr: f.iova & !(crate::memory::PAGE_SIZE - 1),
                };
                self.report_page_fault(dev_id, request)?;
            }
        }
        outcome
    }

    fn translate_dma(
        &mut self,
        dev_id: u32,
        pasid: Option<u32>,
        transfer: Transfer<'_>,
    ) -> std::result::Result<(), DmaError> {
        let device = self.objects.device(dev_id)?;
        let dev = device.dev;
        // A PASID's DMA goes through the HWPT attached to it; with none
        // attached the IOMMU finds no translation.
        let by_pasid = pasid.map(|p| {
            let hwpt = device.pasids.get(&p).copied()?;
            match self.objects.get(hwpt) {
                Some(crate::object::Object::HwptPaging(h)) => Some(h.domain),
                Some(crate::object::Object::HwptNested(h)) => Some(h.domain),
                _ => None,
            }
        });
        let table = {
            let core = self.shared().iommu.locked();
            let domain = match by_pasid {
                None => Some(core.device_domain(dev)),
                Some(found) => found,
            };
            match domain.and_then(|d| core.domain(d)).map(|d| &d.kind) {
                Some(DomainKind::Paging { table, .. }) => table.clone(),
                None | Some(DomainKind::Blocking) => {
                    let (iova, access) = transfer.first_access();
                    return Err(DmaError::Fault(Fault {
                        reason: FaultReason::NotPresent,
                        iova,
                        access,
                    }));
                }
                Some(DomainKind::Nested { parent, .. }) => {
                    let parent_table = match core.domain(*parent).map(|d| &d.kind) {
                        Some(DomainKind::Paging { table, .. }) => table.clone(),
                        _ => return Err(DmaError::Errno(Errno::EINVAL)),
                    };
                    let Some(domain) = domain else {
                        return Err(DmaError::Errno(Errno::EINVAL));
                    };
                    drop(core);
                    return transfer.each_access(|iova, buf, write| {
                        self.nested_dma(domain, parent_table.clone(), iova, buf, write)
                    });
                }
                _ => return Err(DmaError::Errno(Errno::EOPNOTSUPP)),
            }
        };
        let mut table = table.locked();
        let mut iotlb = table.new_iotlb();
        let mut faults = FaultLog::new(1);
        let mut memory = PhysMemory {
            phys: self.shared().phys.locked(),
        };
        let (iotlb, faults, memory) = (&mut iotlb, &mut faults, &mut memory);
        let outcome = match transfer {
            Transfer::Read { iova, buf } => table.dma_read(iotlb, faults, memory, iova, buf),
            Transfer::Write { iova, data } => table.dma_write(iotlb, faults, memory, iova, data),
            Transfer::Copy {
                src,
                dst,
                len,
                scratch,
            } => table.dma_copy(iotlb, faults, memory, src, dst, len, scratch),
        };
        outcome.map_err(DmaError::Fault)
    }

    /// DMA through a nested domain: the guest's stage-1 table, which the
    /// nested HWPT's driver data locates (VT-d: the table itself; SMMUv3: an
    /// STE whose context descriptor, read from guest memory at each access,
    /// names it), then the parent's stage 2. The mock driver's nested
    /// domains have no table to walk (`EOPNOTSUPP`).
    fn nested_dma(
        &mut self,
        domain: softiommu_iommu::DomainId,
        stage2: std::sync::Arc<std::sync::Mutex<softiommu_pt::AnyPageTable>>,
        iova: u64,
        buf: &mut [u8],
        write: bool,
    ) -> std::result::Result<(), DmaError> {
        use crate::driver::Stage1Start;
        use softiommu_pt::nested::{NestedDma, Stage1, Stage1Format};
        let ops = self.driver_ops_of_domain(domain)?;
        let access = if write { Access::Write } else { Access::Read };
        let fault = |reason| {
            DmaError::Fault(Fault {
                reason,
                iova,
                access,
            })
        };
        let shared = self.shared().clone();
        let hwpt = self
            .objects
            .nested_by_domain_mut(domain)
            .ok_or(DmaError::Errno(Errno::ENOENT))?;
        let start = ops.stage1(&hwpt.data)?;
        let mut table = stage2.locked();
        let mut stage2_iotlb = table.new_iotlb();
        let mut faults = FaultLog::new(1);
        let mut memory = PhysMemory {
            phys: shared.phys.locked(),
        };
        let (stage1, ia_bits) = match start {
            Stage1Start::Abort => return Err(fault(FaultReason::NotPresent)),
            Stage1Start::Bypass => {
                let outcome = if write {
                    table.dma_write(&mut stage2_iotlb, &mut faults, &mut memory, iova, buf)
                } else {
                    table.dma_read(&mut stage2_iotlb, &mut faults, &mut memory, iova, buf)
                };
                return outcome.map_err(DmaError::Fault);
            }
            Stage1Start::Table { stage1, ia_bits } => (stage1, ia_bits),
            Stage1Start::Descriptor { gpa, len } => {
                let mut descriptor = vec![0u8; len];
                // The descriptor is read through stage 2 like any guest memory.
                let mut reader = NestedDma {
                    stage1: Stage1 {
                        format: Stage1Format::ArmS1,
                        root_gpa: 0,
                        top_level: 0,
                    },
                    tlb: &mut hwpt.stage1_tlb,
                    stage2: &mut table,
                    stage2_iotlb: &mut stage2_iotlb,
                    faults: &mut faults,
                    memory: &mut memory,
                };
                reader.read_guest(gpa, &mut descriptor).map_err(fault)?;
                ops.stage1_from_descriptor(&descriptor).map_err(fault)?
            }
        };
        let end = iova.checked_add(buf.len().max(1) as u64 - 1);
        if ia_bits < 64 && end.is_none_or(|e| e >> ia_bits != 0) {
            return Err(fault(FaultReason::OutOfRange));
        }
        let mut dma = NestedDma {
            stage1,
            tlb: &mut hwpt.stage1_tlb,
            stage2: &mut table,
            stage2_iotlb: &mut stage2_iotlb,
            faults: &mut faults,
            memory: &mut memory,
        };
        let outcome = if write {
            dma.write(iova, buf)
        } else {
            dma.read(iova, buf)
        };
        outcome.map_err(DmaError::Fault)
    }
}
