//! Intel I/OAT DMA engine, one channel of Skylake-SP's Crystal Beach DMA
//! (8086:2021, version 3.3), from the register layout Linux's
//! `drivers/dma/ioat/registers.h` and `hw.h` describe.
//!
//! A driver writes a descriptor chain's IOVA to CHAINADDR, arms the
//! interrupt in CHANCTRL and writes the number of descriptors to DMACOUNT;
//! the channel fetches each 64-byte descriptor, copies `size` bytes from
//! `src_addr` to `dst_addr` through the IOMMU, follows `next`, and reports
//! in CHANSTS: the last completed descriptor's IOVA and the state (ACTIVE,
//! DONE, SUSPENDED, HALTED). A failed fetch, read or write halts the
//! channel with the cause in CHANERR (and in the PCI-side CHANERR_INT);
//! CHANCMD resets or suspends it.
//!
//! Stores the driver makes to the mapped BAR cannot be seen as writes, only
//! as the values they leave; so, where real hardware reacts to a write,
//! the model reacts to a change it can see:
//! - DMACOUNT is the doorbell: the channel works while it differs from the
//!   number of descriptors completed since the chain (re)started. A reset
//!   or a suspend sets both back to 0, so a driver that writes its count
//!   after either is always seen.
//! - CHANCTRL's INT_REARM is consumed: the model arms the interrupt and
//!   clears the bit, so the next rearm is seen.
//! - CHANCMD's command bits are cleared once done, as the hardware does.
//! - CHANERR is write-1-to-clear on hardware; a store of the value read
//!   leaves memory unchanged, so here a channel reset clears it (drivers
//!   clear it and reset together, as Linux's and the VFIO selftests' do).
//!
//! Supported operations: copy and null descriptors, with completion
//! write-back and per-descriptor interrupts; other opcodes halt the
//! channel with a control error.

use crate::vfio::{DeviceModel, Function};
use softiommu_pci::presets::IOAT_CHANERR_INT;

/// Registers of the device, in BAR 0.
mod reg {
    pub const CHANCNT: u64 = 0x00;
    pub const XFERCAP: u64 = 0x01;
    pub const INTRCTRL: u64 = 0x03;
    pub const ATTNSTATUS: u64 = 0x04;
    pub const VER: u64 = 0x08;
    pub const PERPORTOFFSET: u64 = 0x0a;
    /// Channel 0's registers start here (`IOAT_CHANNEL_MMIO_SIZE`).
    pub const CHANNEL: u64 = 0x80;
    // Offsets inside a channel's registers.
    pub const CHANCTRL: usize = 0x00;
    pub const DMA_COMP: usize = 0x02;
    pub const CHANCMD: usize = 0x04;
    pub const DMACOUNT: usize = 0x06;
    pub const CHANSTS: usize = 0x08;
    pub const CHAINADDR: usize = 0x10;
    pub const CHANCMP: usize = 0x18;
    pub const CDAR: usize = 0x20;
    pub const CHANERR: usize = 0x28;
    /// Bytes of a channel's registers the model reads each step.
    pub const CHANNEL_LEN: usize = 0x30;
}

/// `IOAT_VER_3_3`.
pub const VERSION: u8 = 0x33;
/// log2 of the largest copy one descriptor may ask for: 1 MiB.
pub const XFERCAP_LOG2: u8 = 20;

const INTRCTRL_MASTER_INT_EN: u8 = 0x01;
const INTRCTRL_MSIX_VECTOR_CONTROL: u8 = 0x08;

const CHANCTRL_INT_REARM: u16 = 0x0001;
const CHANCTRL_ERR_COMPLETION_EN: u16 = 0x0004;
const CHANCTRL_ERR_INT_EN: u16 = 0x0010;

const CHANCMD_RESET: u8 = 0x20;
const CHANCMD_RESUME: u8 = 0x10;
const CHANCMD_ABORT: u8 = 0x08;
const CHANCMD_SUSPEND: u8 = 0x04;

/// CHANSTS states (bits 2:0).
pub mod status {
    /// Working through the chain.
    pub const ACTIVE: u64 = 0x0;
    /// Every descriptor DMACOUNT asked for is done.
    pub const DONE: u64 = 0x1;
    /// Stopped by CHANCMD suspend.
    pub const SUSPENDED: u64 = 0x2;
    /// Stopped by a reset or an error.
    pub const HALTED: u64 = 0x3;
}

/// CHANERR bits the model reports.
pub mod chanerr {
    /// A source read did not translate.
    pub const SRC_ADDR: u32 = 0x0001;
    /// A destination write did not translate.
    pub const DEST_ADDR: u32 = 0x0002;
    /// A descriptor after the first could not be fetched.
    pub const NEXT_ADDR: u32 = 0x0004;
    /// A `next` pointer is not 64-byte aligned.
    pub const NEXT_DESC_ALIGN: u32 = 0x0008;
    /// CHAINADDR is misaligned or its descriptor could not be fetched.
    pub const CHAIN_ADDR_VALUE: u32 = 0x0010;
    /// An opcode the channel does not have.
    pub const CONTROL: u32 = 0x0400;
    /// A copy of 0 bytes or more than the transfer cap.
    pub const LENGTH: u32 = 0x0800;
    /// The completion write-back did not translate.
    pub const COMPLETION_ADDR: u32 = 0x1000;
}

/// A descriptor's size.
pub const DESCRIPTOR_LEN: usize = 64;
/// The bytes moved per read-then-write step of a copy.
const COPY_PIECE: usize = 256 << 10;
const CTL_INT_EN: u32 = 1 << 0;
const CTL_COMPL_WRITE: u32 = 1 << 3;
const CTL_NULL: u32 = 1 << 5;
const OP_COPY: u32 = 0x00;

/// One channel's state beyond its registers.
#[derive(Debug)]
pub struct Ioat {
    status: u64,
    /// IOVA of the last completed descriptor (0 before any).
    completed: u64,
    /// Descriptors completed since the chain (re)started.
    processed: u16,
    /// IOVA of the next descriptor to fetch.
    next: u64,
    /// `next` is where the chain starts (a failed fetch there is a chain
    /// address error, later ones next-address errors).
    at_chain_start: bool,
    /// The completion interrupt is armed (CHANCTRL INT_REARM seen).
    armed: bool,
    chanerr: u32,
    /// Copy buffer, grown to the largest transfer seen.
    buffer: Vec<u8>,
}

impl Default for Ioat {
    fn default() -> Self {
        Ioat {
            status: status::HALTED,
            completed: 0,
            processed: 0,
            next: 0,
            at_chain_start: true,
            armed: false,
            chanerr: 0,
            buffer: Vec::new(),
        }
    }
}

/// A channel register at offset `at` of the registers read this step.
fn field(regs: &[u8; reg::CHANNEL_LEN], at: usize, width: usize) -> u64 {
    super::le(&regs[at..at + width])
}

fn write_channel(io: &Function, at: usize, bytes: &[u8]) {
    let _ = io.bar_write(0, reg::CHANNEL + at as u64, bytes);
}

impl Ioat {
    /// The model at power-on.
    pub fn new() -> Self {
        Self::default()
    }

    fn publish_status(&self, io: &Function) {
        write_channel(
            io,
            reg::CHANSTS,
            &(self.completed | self.status).to_le_bytes(),
        );
    }

    /// Channel reset: halted, nothing pending, errors cleared.
    fn reset_channel(&mut self, io: &Function) {
        let buffer = std::mem::take(&mut self.buffer);
        *self = Ioat {
            buffer,
            ..Ioat::default()
        };
        let mut regs = [0u8; reg::CHANNEL_LEN];
        regs[reg::DMA_COMP..reg::DMA_COMP + 2].copy_from_slice(&2u16.to_le_bytes());
        regs[reg::CHANSTS..reg::CHANSTS + 8].copy_from_slice(&status::HALTED.to_le_bytes());
        write_channel(io, 0, &regs);
    }

    /// Halts the channel on error `bits`: CHANERR (and CHANERR_INT in
    /// configuration space), HALTED, then the error completion and
    /// interrupt when CHANCTRL asks for them.
    fn halt(&mut self, io: &mut Function, bits: u32, chanctrl: u16, chancmp: u64) {
        self.chanerr |= bits;
        self.status = status::HALTED;
        write_channel(io, reg::CHANERR, &self.chanerr.to_le_bytes());
        let at = u64::from(IOAT_CHANERR_INT);
        let mut internal = [0u8; 4];
        let _ = io.config.read(at, &mut internal);
        let internal = u32::from_le_bytes(internal) | bits;
        let _ = io.config.set_by_device(at, &internal.to_le_bytes());
        self.publish_status(io);
        if chanctrl & CHANCTRL_ERR_COMPLETION_EN != 0 {
            let _ = io.dma_write(chancmp, &mut (self.completed | self.status).to_le_bytes());
        }
        if chanctrl & CHANCTRL_ERR_INT_EN != 0 {
            self.interrupt(io, true);
        }
    }

    /// Raises the channel's MSI-X vector when interrupts are on and, for a
    /// completion, armed.
    fn interrupt(&mut self, io: &mut Function, error: bool) {
        let mut intrctrl = [0u8];
        let _ = io.bar_read(0, reg::INTRCTRL, &mut intrctrl);
        let enabled = intrctrl[0] & (INTRCTRL_MASTER_INT_EN | INTRCTRL_MSIX_VECTOR_CONTROL) != 0;
        if !enabled || !(self.armed || error) {
            return;
        }
        self.armed = false;
        let _ = io.bar_write(0, reg::ATTNSTATUS, &1u32.to_le_bytes());
        io.raise_msix(0);
    }

    /// Fetches and runs the descriptor at `self.next`.
    fn run_descriptor(&mut self, io: &mut Function, chanctrl: u16, chancmp: u64) {
        let at = self.next;
        let fetch_error = if self.at_chain_start {
            chanerr::CHAIN_ADDR_VALUE
        } else {
            chanerr::NEXT_ADDR
        };
        if at % DESCRIPTOR_LEN as u64 != 0 {
            let bits = if self.at_chain_start {
                chanerr::CHAIN_ADDR_VALUE
            } else {
                chanerr::NEXT_DESC_ALIGN
            };
            return self.halt(io, bits, chanctrl, chancmp);
        }
        let mut d = [0u8; DESCRIPTOR_LEN];
        if io.dma_read(at, &mut d).is_err() {
            return self.halt(io, fetch_error, chanctrl, chancmp);
        }
        write_channel(io, reg::CDAR, &at.to_le_bytes());
        let num = |o: usize, n: usize| super::le(&d[o..o + n]);
        let (size, ctl) = (num(0, 4) as u32, num(4, 4) as u32);
        let (src, dst, next) = (num(8, 8), num(16, 8), num(24, 8));
        if ctl & CTL_NULL == 0 {
            if ctl >> 24 != OP_COPY {
                return self.halt(io, chanerr::CONTROL, chanctrl, chancmp);
            }
            if size == 0 || u64::from(size) > 1 << XFERCAP_LOG2 {
                return self.halt(io, chanerr::LENGTH, chanctrl, chancmp);
            }
            // The engine moves data in pieces, as the channel moves it in
            // bursts: a fault in a later piece leaves the earlier ones
            // written, as on hardware. Each piece is copied in one step
            // where the memory allows it; otherwise it passes through the
            // buffer, small enough to stay in the CPU's cache between the
            // read and the write.
            let len = size as usize;
            if self.buffer.len() < len.min(COPY_PIECE) {
                self.buffer.resize(len.min(COPY_PIECE), 0);
            }
            let mut done = 0;
            while done < len {
                let n = COPY_PIECE.min(len - done);
                let piece = (
                    src.wrapping_add(done as u64),
                    dst.wrapping_add(done as u64),
                    n,
                );
                if let Err((_, to_destination)) = io.dma_copy_as(None, piece, &mut self.buffer) {
                    let bits = if to_destination {
                        chanerr::DEST_ADDR
                    } else {
                        chanerr::SRC_ADDR
                    };
                    return self.halt(io, bits, chanctrl, chancmp);
                }
                done += n;
            }
        }
        self.completed = at;
        self.processed = self.processed.wrapping_add(1);
        self.next = next;
        self.at_chain_start = false;
        if ctl & CTL_COMPL_WRITE != 0
            && io
                .dma_write(chancmp, &mut (at | status::ACTIVE).to_le_bytes())
                .is_err()
        {
            return self.halt(io, chanerr::COMPLETION_ADDR, chanctrl, chancmp);
        }
        if ctl & CTL_INT_EN != 0 {
            self.interrupt(io, false);
        }
    }
}

impl DeviceModel for Ioat {
    fn trapped(&self, bar: u32) -> std::ops::Range<u64> {
        if bar == 0 {
            0..reg::CHANNEL + reg::CHANNEL_LEN as u64
        } else {
            0..0
        }
    }

    fn write(
        &mut self,
        io: &mut Function,
        bar: u32,
        offset: u64,
        data: &[u8],
    ) -> crate::errno::Result<()> {
        let chanerr = reg::CHANNEL + reg::CHANERR as u64;
        if bar == 0 && offset == chanerr && data.len() == 4 {
            // Write 1 to clear.
            let clear = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            self.chanerr &= !clear;
            return io.bar_write(0, chanerr, &self.chanerr.to_le_bytes());
        }
        io.bar_write(bar, offset, data)?;
        self.step(io);
        Ok(())
    }

    fn pending(&self) -> bool {
        self.status == status::ACTIVE
    }

    fn reset(&mut self, io: &mut Function) {
        let mut device = [0u8; reg::CHANNEL as usize];
        device[reg::CHANCNT as usize] = 1;
        device[reg::XFERCAP as usize] = XFERCAP_LOG2;
        device[reg::VER as usize] = VERSION;
        let perport = reg::PERPORTOFFSET as usize;
        device[perport..perport + 2].copy_from_slice(&(reg::CHANNEL as u16).to_le_bytes());
        let _ = io.bar_write(0, 0, &device);
        self.reset_channel(io);
    }

    fn step(&mut self, io: &mut Function) -> bool {
        let mut regs = [0u8; reg::CHANNEL_LEN];
        if io.bar_read(0, reg::CHANNEL, &mut regs).is_err() {
            return false;
        }
        let chancmd = field(&regs, reg::CHANCMD, 1) as u8;
        if chancmd & CHANCMD_RESET != 0 {
            self.reset_channel(io);
            return true;
        }
        if chancmd & (CHANCMD_SUSPEND | CHANCMD_ABORT | CHANCMD_RESUME) != 0 {
            if chancmd & CHANCMD_RESUME != 0 && self.status == status::SUSPENDED {
                self.status = status::DONE;
            } else if self.status != status::HALTED {
                // Suspend or abort: the chain stops after the descriptor
                // in flight (none is, between steps) and restarts from
                // CHAINADDR with a zero count.
                self.status = status::SUSPENDED;
                self.processed = 0;
                write_channel(io, reg::DMACOUNT, &0u16.to_le_bytes());
            }
            write_channel(io, reg::CHANCMD, &[0]);
            self.publish_status(io);
            return true;
        }
        let mut chanctrl = field(&regs, reg::CHANCTRL, 2) as u16;
        if chanctrl & CHANCTRL_INT_REARM != 0 {
            self.armed = true;
            chanctrl &= !CHANCTRL_INT_REARM;
            write_channel(io, reg::CHANCTRL, &chanctrl.to_le_bytes());
        }
        let target = field(&regs, reg::DMACOUNT, 2) as u16;
        if target == self.processed {
            if self.status == status::ACTIVE {
                self.status = status::DONE;
                self.publish_status(io);
                return true;
            }
            return false;
        }
        match self.status {
            // A halted channel with an error waits for a reset.
            status::HALTED if self.chanerr != 0 => return false,
            status::HALTED | status::SUSPENDED => {
                self.next = field(&regs, reg::CHAINADDR, 8);
                self.at_chain_start = true;
            }
            _ => {}
        }
        self.status = status::ACTIVE;
        let chancmp = field(&regs, reg::CHANCMP, 8);
        self.run_descriptor(io, chanctrl, chancmp);
        if self.status == status::ACTIVE && self.processed == target {
            self.status = status::DONE;
        }
        self.publish_status(io);
        true
    }
}
