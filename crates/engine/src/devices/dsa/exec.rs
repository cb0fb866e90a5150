//! Running DSA descriptors: the portal's queue, memmove, batch, no-op and
//! drain, completion records, completion interrupts and SWERR.

use super::{reg, write_u64, Dsa};
use crate::vfio::{DmaFailure, Function};

/// `dsa_opcode`.
pub mod op {
    /// Nothing but the completion.
    pub const NOOP: u8 = 0;
    /// A list of descriptors.
    pub const BATCH: u8 = 1;
    /// Waits for earlier descriptors (here: they are done in order).
    pub const DRAIN: u8 = 2;
    /// Copy.
    pub const MEMMOVE: u8 = 3;
}

/// OPCAP's first word: the operations above.
pub(super) const SUPPORTED_OPS: u64 =
    1 << op::NOOP | 1 << op::BATCH | 1 << op::DRAIN | 1 << op::MEMMOVE;

/// Descriptor flags (`IDXD_OP_FLAG_*`).
const CRAV: u32 = 0x04;
const RCR: u32 = 0x08;
const RCI: u32 = 0x10;

/// Completion status codes (`DSA_COMP_*`).
pub mod comp {
    /// Done.
    pub const SUCCESS: u8 = 0x01;
    /// A page fault, block-on-fault off: `fault_addr` names the page.
    pub const PAGE_FAULT_NOBOF: u8 = 0x03;
    /// A descriptor of the batch failed.
    pub const BATCH_FAIL: u8 = 0x05;
    /// The batch's descriptor list could not be read.
    pub const BATCH_PAGE_FAULT: u8 = 0x06;
    /// An operation the WQ does not allow.
    pub const BAD_OPCODE: u8 = 0x10;
    /// A transfer larger than the WQ allows.
    pub const XFER_ERANGE: u8 = 0x13;
    /// A batch of fewer than 2 or more than the WQ allows.
    pub const DESC_CNT_ERANGE: u8 = 0x14;
    /// A batch list not 64-byte aligned.
    pub const DESCLIST_ALIGN: u8 = 0x18;
    /// An interrupt handle the function does not have.
    pub const INT_HANDLE_INVAL: u8 = 0x19;
    /// The completion record did not translate (reported in SWERR).
    pub const CRA_XLAT: u8 = 0x1a;
    /// The completion record is not 32-byte aligned (reported in SWERR).
    pub const CRA_ALIGN: u8 = 0x1b;
}

/// SWERR code for a descriptor the portal dropped: the WQ was disabled or
/// full. The value is the model's own; drivers report it, they do not act
/// on it.
pub const SWERR_DROPPED: u8 = 0x30;

const PIECE: usize = 256 << 10;

/// The enabled WQ's limits, from its configuration.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct WqLimits {
    pub size: u16,
    pub max_xfer: u64,
    pub max_batch: u64,
    /// Operations allowed (WQCFG `op_config[0]`).
    pub ops: u64,
    /// The PASID the WQ's DMA carries (WQCFG `pasid_en` and `pasid`), or
    /// none: untagged, through the function's RID.
    pub pasid: Option<u32>,
}

/// A batch in progress.
#[derive(Debug)]
pub(super) struct Batch {
    desc: Desc,
    next: u32,
    failed: bool,
}

/// A decoded descriptor.
#[derive(Debug, Clone, Copy)]
struct Desc {
    flags: u32,
    opcode: u8,
    completion: u64,
    src: u64,
    dst: u64,
    size: u32,
    int_handle: u16,
}

impl Desc {
    fn parse(d: &[u8; 64]) -> Desc {
        let u32_at = |o: usize| super::le(&d[o..o + 4]) as u32;
        let u64_at = |o: usize| super::le(&d[o..o + 8]);
        let word = u32_at(4);
        Desc {
            flags: word & 0xff_ffff,
            opcode: (word >> 24) as u8,
            completion: u64_at(8),
            src: u64_at(16),
            dst: u64_at(24),
            size: u32_at(32),
            int_handle: u16::from_le_bytes([d[36], d[37]]),
        }
    }
}

/// What one descriptor came to.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    status: u8,
    /// Bytes (memmove) or descriptors (batch) completed.
    completed: u32,
    fault_addr: u64,
    fault_write: bool,
}

impl Outcome {
    fn status(status: u8) -> Outcome {
        Outcome {
            status,
            completed: 0,
            fault_addr: 0,
            fault_write: false,
        }
    }
}

impl Dsa {
    /// A descriptor written to the portal: queued, or dropped with SWERR
    /// when the WQ cannot take it.
    pub(super) fn submit(&mut self, io: &Function, d: [u8; 64]) {
        let room = usize::from(self.wq.size);
        if !self.enabled || !self.wq_enabled || self.queue.len() >= room {
            let desc = Desc::parse(&d);
            swerr(io, SWERR_DROPPED, Some(&desc), 0, false);
            return;
        }
        self.queue.push_back(d);
    }

    /// Runs one descriptor, or one descriptor of the batch in progress.
    pub(super) fn run_one(&mut self, io: &mut Function) {
        if let Some(mut batch) = self.batch.take() {
            if batch.next < batch.desc.size {
                let at = batch.desc.src.wrapping_add(u64::from(batch.next) * 64);
                let mut raw = [0u8; 64];
                if io.dma_read_as(self.wq.pasid, at, &mut raw).is_err() {
                    let outcome = Outcome {
                        status: comp::BATCH_PAGE_FAULT,
                        completed: batch.next,
                        fault_addr: at,
                        fault_write: false,
                    };
                    return self.complete(io, &batch.desc, outcome);
                }
                let desc = Desc::parse(&raw);
                let outcome = if desc.opcode == op::BATCH {
                    Outcome::status(comp::BAD_OPCODE)
                } else {
                    self.execute(io, &desc)
                };
                batch.failed |= outcome.status != comp::SUCCESS;
                self.complete(io, &desc, outcome);
                batch.next += 1;
                self.batch = Some(batch);
                return;
            }
            let status = if batch.failed {
                comp::BATCH_FAIL
            } else {
                comp::SUCCESS
            };
            let outcome = Outcome {
                status,
                completed: batch.next,
                fault_addr: 0,
                fault_write: false,
            };
            return self.complete(io, &batch.desc, outcome);
        }
        let Some(raw) = self.queue.pop_front() else {
            return;
        };
        let desc = Desc::parse(&raw);
        if desc.opcode == op::BATCH && self.wq.ops & 1 << op::BATCH != 0 {
            let count = u64::from(desc.size);
            let status = if desc.src % 64 != 0 {
                Some(comp::DESCLIST_ALIGN)
            } else if count < 2 || count > self.wq.max_batch {
                Some(comp::DESC_CNT_ERANGE)
            } else {
                None
            };
            match status {
                Some(s) => self.complete(io, &desc, Outcome::status(s)),
                None => {
                    self.batch = Some(Batch {
                        desc,
                        next: 0,
                        failed: false,
                    })
                }
            }
            return;
        }
        let outcome = self.execute(io, &desc);
        self.complete(io, &desc, outcome);
    }

    /// Runs a descriptor that is not a batch.
    fn execute(&mut self, io: &mut Function, desc: &Desc) -> Outcome {
        if u64::from(desc.opcode) >= 64 || self.wq.ops & 1 << desc.opcode == 0 {
            return Outcome::status(comp::BAD_OPCODE);
        }
        if desc.flags & RCI != 0 && u32::from(desc.int_handle) >= io.irq_count(2) {
            return Outcome::status(comp::INT_HANDLE_INVAL);
        }
        match desc.opcode {
            op::MEMMOVE => self.memmove(io, desc),
            _ => Outcome::status(comp::SUCCESS),
        }
    }

    fn memmove(&mut self, io: &mut Function, desc: &Desc) -> Outcome {
        let len = desc.size as usize;
        if desc.size as u64 > self.wq.max_xfer {
            return Outcome::status(comp::XFER_ERANGE);
        }
        if self.buffer.len() < len.min(PIECE) {
            self.buffer.resize(len.min(PIECE), 0);
        }
        let mut done = 0;
        while done < len {
            let n = PIECE.min(len - done);
            let piece = (
                desc.src.wrapping_add(done as u64),
                desc.dst.wrapping_add(done as u64),
                n,
            );
            if let Err((failure, to_destination)) =
                io.dma_copy_as(self.wq.pasid, piece, &mut self.buffer)
            {
                let fault_addr = match failure {
                    DmaFailure::Translation { iova } => iova,
                    DmaFailure::NoBus => 0,
                };
                return Outcome {
                    status: comp::PAGE_FAULT_NOBOF,
                    completed: done as u32,
                    fault_addr,
                    fault_write: to_destination,
                };
            }
            done += n;
        }
        Outcome {
            status: comp::SUCCESS,
            completed: done as u32,
            fault_addr: 0,
            fault_write: false,
        }
    }

    /// Writes the completion record when asked (or on failure, when the
    /// descriptor gave one) and raises the completion interrupt.
    fn complete(&mut self, io: &mut Function, desc: &Desc, outcome: Outcome) {
        let wants_record = desc.flags & RCR != 0 || outcome.status != comp::SUCCESS;
        if desc.flags & CRAV != 0 && wants_record {
            if desc.completion % 32 != 0 {
                return swerr(io, comp::CRA_ALIGN, Some(desc), desc.completion, true);
            }
            let mut record = [0u8; 32];
            record[0] = outcome.status;
            record[2] = u8::from(outcome.fault_write);
            record[4..8].copy_from_slice(&outcome.completed.to_le_bytes());
            record[8..16].copy_from_slice(&outcome.fault_addr.to_le_bytes());
            // The status byte last, as software polls it.
            let (head, rest) = record.split_at_mut(1);
            if io
                .dma_write_as(self.wq.pasid, desc.completion + 1, rest)
                .is_err()
                || io
                    .dma_write_as(self.wq.pasid, desc.completion, head)
                    .is_err()
            {
                return swerr(io, comp::CRA_XLAT, Some(desc), desc.completion, true);
            }
        }
        if desc.flags & RCI != 0 {
            io.raise_msix(u32::from(desc.int_handle));
        }
    }
}

/// Records a software error (`union sw_err_reg`), or sets OVERFLOW when one
/// is already recorded.
fn swerr(io: &Function, error: u8, desc: Option<&Desc>, fault_addr: u64, write: bool) {
    let mut first = [0u8; 8];
    let _ = io.bar_read(0, reg::SWERR, &mut first);
    let first = u64::from_le_bytes(first);
    if first & 1 != 0 {
        write_u64(io, reg::SWERR, first | 2);
        return;
    }
    const VALID: u64 = 1;
    const DESC_VALID: u64 = 1 << 2;
    const WQ_IDX_VALID: u64 = 1 << 3;
    const FAULT_RW: u64 = 1 << 5;
    let mut bits = VALID | WQ_IDX_VALID | u64::from(error) << 8;
    if let Some(d) = desc {
        bits |= DESC_VALID | u64::from(d.opcode) << 32;
    }
    if write {
        bits |= FAULT_RW;
    }
    write_u64(io, reg::SWERR + 16, fault_addr);
    write_u64(io, reg::SWERR, bits);
}
