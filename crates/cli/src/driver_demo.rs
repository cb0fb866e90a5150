//! The main job: a user-space driver for the built-in machine's emulated
//! I/OAT DMA engine, through VFIO and iommufd, showing in a few lines what
//! an IOMMU does — the device copies between buffers the IOAS maps, and
//! halts on a translation fault once the source is unmapped.

use softiommu_engine::api::{Engine, VfioDevice};
use softiommu_engine::devices::ioat::{chanerr, status, DESCRIPTOR_LEN};
use softiommu_engine::Prot;
use std::error::Error;
use std::time::{Duration, Instant};

const BDF: &str = "0000:00:04.0";
const PAGE: usize = 4096;
const LEN: usize = 16 * PAGE;
// The IOVAs the driver chooses.
const DESC_IOVA: u64 = 0x100_0000;
const SRC_IOVA: u64 = 0x200_0000;
const DST_IOVA: u64 = 0x300_0000;
// Channel registers (BAR 0, channel 0 at 0x80).
const CHANCTRL: u64 = 0x80;
const CHANCMD: u64 = 0x84;
const DMACOUNT: u64 = 0x86;
const CHANSTS: u64 = 0x88;
const CHAINADDR: u64 = 0x90;
const CHANERR: u64 = 0xa8;
const CHANCTRL_INT_REARM: u16 = 1;
const CHANCMD_RESET: u8 = 0x20;
const CHANCMD_SUSPEND: u8 = 0x04;

/// `len` bytes of page-aligned memory inside `memory`.
fn aligned(memory: &mut [u8], len: usize) -> &mut [u8] {
    let at = memory.as_ptr().align_offset(PAGE);
    &mut memory[at..at + len]
}

fn status_name(sts: u64) -> &'static str {
    match sts & 7 {
        status::ACTIVE => "ACTIVE",
        status::DONE => "DONE",
        status::SUSPENDED => "SUSPENDED",
        _ => "HALTED",
    }
}

fn read_u64(dev: &VfioDevice, offset: u64) -> Result<u64, Box<dyn Error>> {
    let mut b = [0u8; 8];
    dev.read_bar(0, offset, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Starts the descriptor at [`DESC_IOVA`] and waits for the channel to
/// stop; its CHANSTS.
fn copy(dev: &mut VfioDevice) -> Result<u64, Box<dyn Error>> {
    dev.write_bar(0, CHAINADDR, &DESC_IOVA.to_le_bytes())?;
    dev.write_bar(0, CHANCTRL, &CHANCTRL_INT_REARM.to_le_bytes())?;
    dev.write_bar(0, DMACOUNT, &1u16.to_le_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sts = read_u64(dev, CHANSTS)?;
        if sts & 7 != status::ACTIVE {
            return Ok(sts);
        }
        if Instant::now() > deadline {
            return Err("the channel never finished".into());
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

fn descriptor(desc: &mut [u8], src: u64, dst: u64, len: usize) {
    desc[..DESCRIPTOR_LEN].fill(0);
    desc[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    desc[8..16].copy_from_slice(&src.to_le_bytes());
    desc[16..24].copy_from_slice(&dst.to_le_bytes());
    desc[24..32].copy_from_slice(&DESC_IOVA.to_le_bytes());
}

pub fn run() -> Result<(), Box<dyn Error>> {
    let engine = Engine::new();
    let mut dev = engine.open_device(BDF)?;
    println!(
        "{BDF}: Intel I/OAT DMA channel, bound through VFIO to an iommufd context as device {}",
        dev.dev_id()
    );
    let ioas = dev.alloc_ioas()?;
    let (mut d, mut s, mut t) = (
        vec![0u8; 2 * PAGE],
        vec![0u8; LEN + PAGE],
        vec![0u8; LEN + PAGE],
    );
    let (desc, src, dst) = (
        aligned(&mut d, PAGE),
        aligned(&mut s, LEN),
        aligned(&mut t, LEN),
    );
    let message = b"bytes the device moved through the IOMMU";
    for chunk in src.chunks_mut(message.len()) {
        chunk.copy_from_slice(&message[..chunk.len()]);
    }
    descriptor(desc, SRC_IOVA, DST_IOVA, LEN);
    let read_only = Prot {
        read: true,
        write: false,
    };
    let read_write = Prot {
        read: true,
        write: true,
    };
    dev.map(ioas, desc, DESC_IOVA, read_only)?;
    dev.map(ioas, src, SRC_IOVA, read_only)?;
    dev.map(ioas, dst, DST_IOVA, read_write)?;
    let hwpt = dev.attach(ioas)?;
    println!(
        "IOAS {}: descriptor at IOVA {DESC_IOVA:#x}, {LEN} bytes of source at {SRC_IOVA:#x} (read-only), \
         destination at {DST_IOVA:#x}; the device's DMA goes through HWPT {}, an {} page table",
        ioas.0,
        hwpt.0,
        dev.iommu_driver()
    );
    dev.enable_bus_master()?;
    dev.write_bar(0, CHANCMD, &[CHANCMD_RESET])?;

    let sts = copy(&mut dev)?;
    let arrived = src == dst;
    println!(
        "copy {SRC_IOVA:#x} -> {DST_IOVA:#x}: channel {}, destination {} (\"{}...\")",
        status_name(sts),
        if arrived {
            "holds the source's bytes"
        } else {
            "DIFFERS from the source"
        },
        String::from_utf8_lossy(&dst[..24])
    );
    dev.write_bar(0, CHANCMD, &[CHANCMD_SUSPEND])?;

    let unmapped = dev.unmap(ioas, SRC_IOVA, LEN as u64)?;
    println!("unmapped {unmapped} bytes of source at IOVA {SRC_IOVA:#x}");
    dst.fill(0);
    let sts = copy(&mut dev)?;
    let mut err = [0u8; 4];
    dev.read_bar(0, CHANERR, &mut err)?;
    let err = u32::from_le_bytes(err);
    let cause = if err & chanerr::SRC_ADDR != 0 {
        "source address error"
    } else {
        "other error"
    };
    println!(
        "copy again: channel {}, CHANERR {err:#x} ({cause}): {BDF}'s read of IOVA {SRC_IOVA:#x} \
         found no translation in HWPT {}; destination untouched: {}",
        status_name(sts),
        hwpt.0,
        dst.iter().all(|&b| b == 0)
    );
    if !arrived || sts & 7 != status::HALTED || err & chanerr::SRC_ADDR == 0 {
        return Err("the device did not behave as an IOMMU-translated DMA engine should".into());
    }
    Ok(())
}
