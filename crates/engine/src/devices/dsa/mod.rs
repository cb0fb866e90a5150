//! Intel Data Streaming Accelerator (idxd, Sapphire Rapids 8086:0b25), from
//! the register layout Linux's `drivers/dma/idxd/registers.h` and
//! `include/uapi/linux/idxd.h` describe: one group with one engine and one
//! dedicated work queue (WQ).
//!
//! A driver reads the capabilities (GENCAP, WQCAP, GRPCAP, ENGCAP, OPCAP)
//! and where the configuration tables are (TABLE_OFFSET), fills the WQ and
//! group configuration, and issues commands through CMD, whose outcome
//! CMDSTS shows (reset, enable device, enable WQ, ...). It then writes
//! 64-byte descriptors to the WQ's portal in BAR 2 (`MOVDIR64B`); the
//! device queues them (up to the WQ's size), runs them — memmove, batch,
//! no-op, drain — with every fetch, read and write a DMA through the
//! function's domain, and reports each in the completion record the
//! descriptor names (success, or a page fault with its address and the
//! bytes done), raising the completion interrupt the descriptor asks for.
//! What it cannot report there — a completion record it cannot write, a
//! descriptor the WQ cannot take — goes to SWERR, as on hardware.

pub mod exec;

use super::le;
use crate::errno::Result;
use crate::vfio::{DeviceModel, Function};
use std::collections::VecDeque;

/// BAR 0 register offsets.
pub mod reg {
    /// Version.
    pub const VER: u64 = 0x00;
    /// General capabilities.
    pub const GENCAP: u64 = 0x10;
    /// Work-queue capabilities.
    pub const WQCAP: u64 = 0x20;
    /// Group capabilities.
    pub const GRPCAP: u64 = 0x30;
    /// Engine capabilities.
    pub const ENGCAP: u64 = 0x38;
    /// Supported operations (256 bits).
    pub const OPCAP: u64 = 0x40;
    /// Where the configuration tables are, in units of 0x100.
    pub const TABLE_OFFSET: u64 = 0x60;
    /// Device state.
    pub const GENSTATS: u64 = 0x90;
    /// Command.
    pub const CMD: u64 = 0xa0;
    /// Command status.
    pub const CMDSTS: u64 = 0xa8;
    /// Supported commands.
    pub const CMDCAP: u64 = 0xb0;
    /// Software error (4 × 64 bits).
    pub const SWERR: u64 = 0xc0;
    /// The group configuration table.
    pub const GRPCFG: u64 = 0x400;
    /// The WQ configuration table.
    pub const WQCFG: u64 = 0x500;
}

/// Queue entries of the one WQ.
pub const TOTAL_WQ_SIZE: u16 = 32;
/// log2 of the largest transfer: 2 MiB.
pub const MAX_XFER_SHIFT: u8 = 21;
/// log2 of the most descriptors in a batch: 1024.
pub const MAX_BATCH_SHIFT: u8 = 10;
/// The portal page of WQ 0 in BAR 2.
pub const PORTAL: u64 = 0;
const WQCFG_SIZE_CODE: u64 = 1; // 1 << (1 + 5) = 64 bytes
const WQCFG_LEN: usize = 64;

mod cmd {
    pub const ENABLE_DEVICE: u32 = 1;
    pub const DISABLE_DEVICE: u32 = 2;
    pub const DRAIN_ALL: u32 = 3;
    pub const ABORT_ALL: u32 = 4;
    pub const RESET_DEVICE: u32 = 5;
    pub const ENABLE_WQ: u32 = 6;
    pub const DISABLE_WQ: u32 = 7;
    pub const DRAIN_WQ: u32 = 8;
    pub const ABORT_WQ: u32 = 9;
    pub const RESET_WQ: u32 = 10;
}

/// CMDSTS error codes (`enum idxd_cmdsts_err`).
pub mod cmdsts {
    /// Unknown command.
    pub const INVAL_CMD: u32 = 0x01;
    /// No such WQ.
    pub const INVAL_WQIDX: u32 = 0x02;
    /// The device is enabled already.
    pub const DEV_ENABLED: u32 = 0x10;
    /// Bus mastering is off.
    pub const BUSMASTER_EN: u32 = 0x12;
    /// WQ sizes add up past TOTAL_WQ_SIZE.
    pub const WQ_SIZE_ERANGE: u32 = 0x14;
    /// A group with a WQ has no engine, or the reverse.
    pub const GRP_CONFIG: u32 = 0x15;
    /// The device is not enabled.
    pub const DEV_NOTEN: u32 = 0x20;
    /// The WQ is enabled already.
    pub const WQ_ENABLED: u32 = 0x21;
    /// The WQ has size 0.
    pub const WQ_SIZE: u32 = 0x22;
    /// The WQ asks for shared mode, which this device lacks.
    pub const WQ_MODE: u32 = 0x24;
    /// The WQ's max batch shift exceeds GENCAP's.
    pub const MAX_BATCH_SIZE: u32 = 0x27;
    /// The WQ's max transfer shift exceeds GENCAP's.
    pub const MAX_XFER_SIZE: u32 = 0x28;
    /// The device is not enabled (for a WQ command).
    pub const DEV_NOT_EN: u32 = 0x32;
}

/// The device: its state beyond the registers.
#[derive(Debug, Default)]
pub struct Dsa {
    enabled: bool,
    wq_enabled: bool,
    /// The WQ's size and limits, latched when it was enabled.
    wq: exec::WqLimits,
    /// Descriptors the portal took, oldest first.
    queue: VecDeque<[u8; 64]>,
    /// A batch being worked through.
    batch: Option<exec::Batch>,
    /// Copy buffer.
    buffer: Vec<u8>,
}

fn read_u64(io: &Function, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = io.bar_read(0, offset, &mut b);
    u64::from_le_bytes(b)
}

fn write_u64(io: &Function, offset: u64, value: u64) {
    let _ = io.bar_write(0, offset, &value.to_le_bytes());
}

impl Dsa {
    /// The model at power-on.
    pub fn new() -> Self {
        Self::default()
    }

    fn gencap() -> u64 {
        const OVERLAP_COPY: u64 = 1 << 1;
        const CACHE_CONTROL: u64 = 3 << 2;
        const CMD_CAP: u64 = 1 << 4;
        const CONFIG_EN: u64 = 1 << 31;
        OVERLAP_COPY
            | CACHE_CONTROL
            | CMD_CAP
            | u64::from(MAX_XFER_SHIFT) << 16
            | u64::from(MAX_BATCH_SHIFT) << 21
            | CONFIG_EN
    }

    /// Registers and tables at reset; the device and the WQ disabled.
    fn reset_device(&mut self, io: &Function) {
        let buffer = std::mem::take(&mut self.buffer);
        *self = Dsa {
            buffer,
            ..Dsa::default()
        };
        let mut page = vec![0u8; 0x600];
        let mut put = |at: u64, v: u64| {
            page[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(reg::VER, 0x100);
        put(reg::GENCAP, Self::gencap());
        const DEDICATED: u64 = 1 << 49;
        const PRIORITY: u64 = 1 << 51;
        const OP_CONFIG: u64 = 1 << 54;
        put(
            reg::WQCAP,
            u64::from(TOTAL_WQ_SIZE)
                | 1 << 16
                | WQCFG_SIZE_CODE << 24
                | DEDICATED
                | PRIORITY
                | OP_CONFIG,
        );
        put(reg::GRPCAP, 1 | 8 << 8);
        put(reg::ENGCAP, 1);
        put(reg::OPCAP, exec::SUPPORTED_OPS);
        // GRPCFG at 0x400, WQCFG at 0x500, MSI-X permissions at 0x300.
        put(reg::TABLE_OFFSET, 4 | 5 << 16 | 3 << 32);
        let commands = (1..=cmd::RESET_WQ).fold(0u64, |m, c| m | 1 << c);
        put(reg::CMDCAP, commands);
        let _ = io.bar_write(0, 0, &page);
    }

    fn wqcfg(io: &Function) -> [u8; WQCFG_LEN] {
        let mut w = [0u8; WQCFG_LEN];
        let _ = io.bar_read(0, reg::WQCFG, &mut w);
        w
    }

    /// Sets the WQ's state field (WQCFG bytes 24-27, bits 30-31).
    fn set_wq_state(io: &Function, enabled: bool) {
        let mut w = [0u8; 4];
        let _ = io.bar_read(0, reg::WQCFG + 24, &mut w);
        let v = u32::from_le_bytes(w) & !(3 << 30) | u32::from(enabled) << 30;
        let _ = io.bar_write(0, reg::WQCFG + 24, &v.to_le_bytes());
    }

    /// Runs command `bits` (the CMD register's value); the CMDSTS error.
    fn command(&mut self, io: &mut Function, bits: u32) -> u32 {
        let (operand, command) = (bits & 0xf_ffff, (bits >> 20) & 0x1f);
        match command {
            cmd::RESET_DEVICE => {
                self.reset_device(io);
                0
            }
            cmd::ENABLE_DEVICE => {
                if self.enabled {
                    return cmdsts::DEV_ENABLED;
                }
                if !io.config.bus_master() {
                    return cmdsts::BUSMASTER_EN;
                }
                let w = Self::wqcfg(io);
                let wq_size = le(&w[0..2]);
                if wq_size > u64::from(TOTAL_WQ_SIZE) {
                    return cmdsts::WQ_SIZE_ERANGE;
                }
                let (wqs, engines) = (read_u64(io, reg::GRPCFG), read_u64(io, reg::GRPCFG + 32));
                if wq_size > 0 && (wqs & 1 == 0 || engines & 1 == 0) {
                    return cmdsts::GRP_CONFIG;
                }
                self.enabled = true;
                write_u64(io, reg::GENSTATS, 1);
                0
            }
            cmd::DISABLE_DEVICE | cmd::ABORT_ALL => {
                self.wq_enabled = false;
                self.queue.clear();
                self.batch = None;
                Self::set_wq_state(io, false);
                if command == cmd::DISABLE_DEVICE {
                    self.enabled = false;
                    write_u64(io, reg::GENSTATS, 0);
                }
                0
            }
            cmd::DRAIN_ALL => {
                self.drain(io);
                0
            }
            cmd::ENABLE_WQ..=cmd::RESET_WQ => {
                if operand != 0 {
                    return cmdsts::INVAL_WQIDX;
                }
                if !self.enabled {
                    return if command == cmd::ENABLE_WQ {
                        cmdsts::DEV_NOTEN
                    } else {
                        cmdsts::DEV_NOT_EN
                    };
                }
                match command {
                    cmd::ENABLE_WQ => self.enable_wq(io),
                    cmd::DRAIN_WQ => {
                        self.drain(io);
                        0
                    }
                    cmd::DISABLE_WQ | cmd::ABORT_WQ | cmd::RESET_WQ => {
                        // The queue is dropped.
                        self.wq_enabled = false;
                        self.queue.clear();
                        self.batch = None;
                        Self::set_wq_state(io, false);
                        0
                    }
                    _ => cmdsts::INVAL_CMD,
                }
            }
            _ => cmdsts::INVAL_CMD,
        }
    }

    fn enable_wq(&mut self, io: &Function) -> u32 {
        if self.wq_enabled {
            return cmdsts::WQ_ENABLED;
        }
        let w = Self::wqcfg(io);
        let size = le(&w[0..2]) as u16;
        let flags = le(&w[8..12]);
        let limits = le(&w[12..16]);
        let (xfer_shift, batch_shift) = ((limits & 0x1f) as u8, ((limits >> 5) & 0xf) as u8);
        if size == 0 {
            return cmdsts::WQ_SIZE;
        }
        if flags & 1 == 0 {
            return cmdsts::WQ_MODE;
        }
        if xfer_shift > MAX_XFER_SHIFT {
            return cmdsts::MAX_XFER_SIZE;
        }
        if batch_shift > MAX_BATCH_SHIFT {
            return cmdsts::MAX_BATCH_SIZE;
        }
        self.wq = exec::WqLimits {
            size,
            max_xfer: 1 << xfer_shift.max(1),
            max_batch: 1 << batch_shift.max(1),
            ops: le(&w[32..40]),
            // WQCFG bytes 8-11: PASID in bits 8-27, its enable in bit 28.
            pasid: (flags >> 28 & 1 != 0).then_some((flags >> 8) as u32 & 0xf_ffff),
        };
        self.wq_enabled = true;
        Self::set_wq_state(io, true);
        0
    }

    /// Runs everything queued.
    fn drain(&mut self, io: &mut Function) {
        while self.wq_enabled && (self.batch.is_some() || !self.queue.is_empty()) {
            self.run_one(io);
        }
    }
}

impl DeviceModel for Dsa {
    fn reset(&mut self, io: &mut Function) {
        self.reset_device(io);
    }

    fn step(&mut self, io: &mut Function) -> bool {
        if !self.enabled || !self.wq_enabled || (self.batch.is_none() && self.queue.is_empty()) {
            return false;
        }
        self.run_one(io);
        true
    }

    fn trapped(&self, bar: u32) -> std::ops::Range<u64> {
        match bar {
            0 => 0..0x1000,
            2 => PORTAL..PORTAL + 0x1000,
            _ => 0..0,
        }
    }

    fn write(&mut self, io: &mut Function, bar: u32, offset: u64, data: &[u8]) -> Result<()> {
        match (bar, offset) {
            (2, PORTAL) if data.len() == 64 => {
                let mut d = [0u8; 64];
                d.copy_from_slice(data);
                self.submit(io, d);
                // The engine starts at once: a lone descriptor is done
                // before the store returns; the runner takes the rest.
                self.step(io);
                return Ok(());
            }
            // The portal takes whole descriptors only.
            (2, _) => return Ok(()),
            (0, reg::CMD) if data.len() == 4 => {
                write_u64(io, reg::CMDSTS, 1 << 31);
                let status = self.command(io, le(data) as u32);
                let _ = io.bar_write(0, reg::CMD, data);
                write_u64(io, reg::CMDSTS, u64::from(status));
                return Ok(());
            }
            (0, o) if (reg::SWERR..reg::SWERR + 8).contains(&o) => {
                // VALID and OVERFLOW clear by writing 1.
                let clear = le(data) << (8 * (o - reg::SWERR));
                let v = read_u64(io, reg::SWERR) & !(clear & 3);
                write_u64(io, reg::SWERR, v);
                if v & 1 == 0 {
                    // Acknowledged: the record is gone.
                    let _ = io.bar_write(0, reg::SWERR, &[0u8; 32]);
                }
                return Ok(());
            }
            // Read-only registers (capabilities, state, command status and
            // capabilities) and, while the WQ is enabled, its configuration,
            // keep their values.
            (0, o) if o < 0x80 || (0x90..0x98).contains(&o) || (0xa8..0xb8).contains(&o) => {
                return Ok(())
            }
            (0, o)
                if (reg::WQCFG..reg::WQCFG + WQCFG_LEN as u64).contains(&o) && self.wq_enabled =>
            {
                return Ok(())
            }
            _ => {}
        }
        io.bar_write(bar, offset, data)
    }

    fn pending(&self) -> bool {
        self.batch.is_some() || !self.queue.is_empty()
    }
}
