//! The I/OAT channel model driven as its drivers drive it — registers
//! through the device file, descriptors in memory the IOMMU maps — with
//! every DMA kind faulting, the channel commands, interrupts and error
//! recovery, on each page-table format.

mod common;

use common::vfio::*;
use softiommu_engine::devices::ioat::{chanerr, status, DESCRIPTOR_LEN, XFERCAP_LOG2};
use softiommu_engine::vfio::DeviceFile;
use softiommu_engine::Prot;
use softiommu_iommu::Topology;
use softiommu_pci::presets::IOAT_CHANERR_INT;
use softiommu_uapi::vfio::*;
use std::time::{Duration, Instant};

const BDF: &str = "0000:00:04.0";
/// Program memory the IOAS maps at the same IOVA (4 MiB).
const MEM: u64 = 0x100_0000;
const MEM_LEN: u64 = 4 << 20;
/// A read-only mapping, and an IOVA nothing maps.
const RO: u64 = 0x200_0000;
const UNMAPPED: u64 = 0x400_0000;
const DESC: u64 = MEM;
const SRC: u64 = MEM + 0x10_0000;
const DST: u64 = MEM + 0x20_0000;
const CMP: u64 = MEM + 0x1000;

// Registers, by BAR 0 offset.
const INTRCTRL: u64 = 0x03;
const CHANCTRL: u64 = 0x80;
const CHANCMD: u64 = 0x84;
const DMACOUNT: u64 = 0x86;
const CHANSTS: u64 = 0x88;
const CHAINADDR: u64 = 0x90;
const CHANCMP: u64 = 0x98;
const CHANERR: u64 = 0xa8;

const REARM: u16 = 0x1;
const ERR_COMPLETION_EN: u16 = 0x4;
const ANY_ERR_ABORT_EN: u16 = 0x8;
const ERR_INT_EN: u16 = 0x10;
const CMD_RESET: u8 = 0x20;
const CMD_SUSPEND: u8 = 0x04;
const CTL_INT_EN: u32 = 1;
const CTL_COMPL_WRITE: u32 = 1 << 3;
const CTL_NULL: u32 = 1 << 5;
const MSI_EVENTFD: i32 = 10;

struct Rig {
    m: Machine,
    file: DeviceFile,
    /// The IOAS mapping MEM and RO.
    ioas: u32,
}

impl Rig {
    /// The channel of `topology`'s I/OAT function bound, attached to an
    /// IOAS that maps [`MEM`] read-write and [`RO`] read-only, bus master
    /// on, its MSI-X vector wired to an eventfd, and reset.
    fn with(topology: Topology) -> Rig {
        let m = Machine::with(topology);
        let regions = [(MEM, MEM_LEN, Prot::READ_WRITE), (RO, 0x1000, Prot::READ)];
        let (file, ioas) = m.driven(BDF, &regions, 0, MSI_EVENTFD);
        let rig = Rig { m, file, ioas };
        rig.write(INTRCTRL, &[0x08]);
        rig.reset();
        rig
    }

    fn new() -> Rig {
        Rig::with(Topology::default_machine())
    }

    fn write(&self, offset: u64, data: &[u8]) {
        self.file.write(region(0) + offset, data).unwrap();
    }

    fn read_u64(&self, offset: u64) -> u64 {
        read_u64(&self.file, 0, offset)
    }

    fn chanerr(&self) -> u32 {
        self.read_u64(CHANERR) as u32
    }

    fn chanerr_int(&self) -> u32 {
        let mut b = [0u8; 4];
        let at = region(VFIO_PCI_CONFIG_REGION_INDEX) + u64::from(IOAT_CHANERR_INT);
        self.file.read(at, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn reset(&self) {
        self.write(CHANCMD, &[CMD_RESET]);
        assert_eq!(self.read_u64(CHANCMD) & 0xff, 0, "reset is done at once");
        assert_eq!(self.read_u64(CHANSTS) & 7, status::HALTED);
    }

    /// A descriptor at `at`.
    fn descriptor(&self, at: u64, size: u32, ctl: u32, src: u64, dst: u64, next: u64) {
        let mut d = [0u8; DESCRIPTOR_LEN];
        d[0..4].copy_from_slice(&size.to_le_bytes());
        d[4..8].copy_from_slice(&ctl.to_le_bytes());
        d[8..16].copy_from_slice(&src.to_le_bytes());
        d[16..24].copy_from_slice(&dst.to_le_bytes());
        d[24..32].copy_from_slice(&next.to_le_bytes());
        self.m.mem.write(at, &d).unwrap();
    }

    /// Starts the chain at `chain` for `count` descriptors, as the VFIO
    /// selftests' driver does.
    fn start(&self, chain: u64, chanctrl: u16, count: u16) {
        self.write(CHAINADDR, &chain.to_le_bytes());
        self.write(CHANCTRL, &chanctrl.to_le_bytes());
        self.write(DMACOUNT, &count.to_le_bytes());
    }

    /// Waits for the channel to leave ACTIVE; its CHANSTS.
    fn wait(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sts = self.read_u64(CHANSTS);
            if sts & 7 != status::ACTIVE {
                return sts;
            }
            assert!(Instant::now() < deadline, "the channel never finished");
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    fn fill(&self, at: u64, byte: u8, len: usize) {
        self.m.mem.write(at, &vec![byte; len]).unwrap();
    }

    fn bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.m.mem.read(at, &mut b).unwrap();
        b
    }

    fn interrupts(&self) -> u64 {
        self.m.counter(MSI_EVENTFD)
    }
}

#[test]
fn a_copy_moves_the_bytes_through_the_iommu() {
    let r = Rig::new();
    let len = 64 << 10;
    r.fill(SRC, b'x', len);
    r.fill(DST, b'y', len);
    r.descriptor(DESC, len as u32, 0, SRC, DST, DESC);
    r.start(DESC, REARM | ANY_ERR_ABORT_EN, 1);
    let sts = r.wait();
    assert_eq!(sts & 7, status::DONE);
    assert_eq!(sts & !0x3f, DESC, "CHANSTS names the completed descriptor");
    assert_eq!(r.bytes(DST, len), vec![b'x'; len]);
    assert_eq!(r.interrupts(), 0, "no interrupt asked for");
    // The selftests' driver then suspends: DMACOUNT reads 0 again.
    r.write(CHANCMD, &[CMD_SUSPEND]);
    assert_eq!(r.read_u64(CHANSTS) & 7, status::SUSPENDED);
    assert_eq!(r.read_u64(DMACOUNT) & 0xffff, 0);
    // The largest copy one descriptor may ask for, repeated.
    let max = 1usize << XFERCAP_LOG2;
    r.fill(SRC, b'z', max);
    r.descriptor(DESC, max as u32, 0, SRC, DST, DESC);
    r.start(DESC, REARM, 3);
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.bytes(DST, max), vec![b'z'; max]);
}

#[test]
fn a_chain_runs_in_order_and_grows_with_the_doorbell() {
    let r = Rig::new();
    let d = |i: u64| DESC + i * DESCRIPTOR_LEN as u64;
    for i in 0..4u64 {
        r.fill(SRC + i * 0x1000, b'a' + i as u8, 0x1000);
        r.descriptor(
            d(i),
            0x1000,
            0,
            SRC + i * 0x1000,
            DST + i * 0x1000,
            d(i + 1),
        );
    }
    // A null descriptor in the middle moves nothing.
    r.descriptor(d(2), 0x1000, CTL_NULL, SRC, DST + 0x2000, d(3));
    r.fill(DST + 0x2000, b'-', 0x1000);
    r.start(d(0), REARM, 3);
    let sts = r.wait();
    assert_eq!((sts & 7, sts & !0x3f), (status::DONE, d(2)));
    assert_eq!(r.bytes(DST, 1)[0], b'a');
    assert_eq!(r.bytes(DST + 0x1000, 1)[0], b'b');
    assert_eq!(r.bytes(DST + 0x2000, 1)[0], b'-');
    // One more descriptor: the channel goes on from `next`.
    r.write(DMACOUNT, &4u16.to_le_bytes());
    let sts = r.wait();
    assert_eq!((sts & 7, sts & !0x3f), (status::DONE, d(3)));
    assert_eq!(r.bytes(DST + 0x3000, 0x1000), vec![b'd'; 0x1000]);
}

#[test]
fn each_kind_of_dma_faults_with_the_channels_error() {
    type Setup = fn(&Rig);
    let cases: [(&str, Setup, u32); 7] = [
        (
            "descriptor fetch",
            |r| r.start(UNMAPPED, REARM, 1),
            chanerr::CHAIN_ADDR_VALUE,
        ),
        (
            "misaligned chain",
            |r| r.start(DESC + 8, REARM, 1),
            chanerr::CHAIN_ADDR_VALUE,
        ),
        (
            "source read",
            |r| {
                r.descriptor(DESC, 0x1000, 0, UNMAPPED, DST, DESC);
                r.start(DESC, REARM, 1);
            },
            chanerr::SRC_ADDR,
        ),
        (
            "destination write",
            |r| {
                r.descriptor(DESC, 0x1000, 0, SRC, UNMAPPED, DESC);
                r.start(DESC, REARM, 1);
            },
            chanerr::DEST_ADDR,
        ),
        (
            "destination read-only",
            |r| {
                r.descriptor(DESC, 0x1000, 0, SRC, RO, DESC);
                r.start(DESC, REARM, 1);
            },
            chanerr::DEST_ADDR,
        ),
        (
            "completion write",
            |r| {
                r.descriptor(DESC, 0x1000, CTL_COMPL_WRITE, SRC, DST, DESC);
                r.write(CHANCMP, &UNMAPPED.to_le_bytes());
                r.start(DESC, REARM, 1);
            },
            chanerr::COMPLETION_ADDR,
        ),
        (
            "next descriptor",
            |r| {
                r.descriptor(DESC, 0x1000, 0, SRC, DST, UNMAPPED);
                r.start(DESC, REARM, 2);
            },
            chanerr::NEXT_ADDR,
        ),
    ];
    for (what, setup, bits) in cases {
        let r = Rig::new();
        r.fill(DST, b'y', 0x1000);
        r.fill(SRC, b'x', 0x1000);
        setup(&r);
        let sts = r.wait();
        assert_eq!(sts & 7, status::HALTED, "{what}");
        assert_eq!(r.chanerr(), bits, "{what}: CHANERR");
        assert_eq!(r.chanerr_int() & bits, bits, "{what}: CHANERR_INT");
        if bits == chanerr::SRC_ADDR {
            assert_eq!(r.bytes(DST, 0x1000), vec![b'y'; 0x1000], "nothing written");
        }
        assert_eq!(r.interrupts(), 0, "{what}: no error interrupt unless asked");
    }
}

#[test]
fn bad_descriptors_halt_with_control_and_length_errors() {
    for (size, ctl, bits) in [
        (0, 0, chanerr::LENGTH),
        ((1u32 << XFERCAP_LOG2) + 1, 0, chanerr::LENGTH),
        (0x1000, 0x7f << 24, chanerr::CONTROL),
    ] {
        let r = Rig::new();
        r.descriptor(DESC, size, ctl, SRC, DST, DESC);
        r.start(DESC, REARM, 1);
        assert_eq!(r.wait() & 7, status::HALTED);
        assert_eq!(r.chanerr(), bits);
    }
}

#[test]
fn a_halted_channel_waits_for_its_errors_cleared_and_a_reset() {
    let r = Rig::new();
    r.descriptor(DESC, 0x1000, 0, UNMAPPED, DST, DESC);
    r.start(DESC, REARM | ERR_COMPLETION_EN | ERR_INT_EN, 1);
    assert_eq!(r.wait() & 7, status::HALTED);
    assert_eq!(r.interrupts(), 1, "ERR_INT_EN raises the vector on error");
    // Doorbells while halted with an error change nothing.
    r.descriptor(DESC, 0x1000, 0, SRC, DST, DESC);
    r.fill(DST, b'y', 0x1000);
    r.write(DMACOUNT, &2u16.to_le_bytes());
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(r.read_u64(CHANSTS) & 7, status::HALTED);
    assert_eq!(r.bytes(DST, 1)[0], b'y');
    // CHANERR and CHANERR_INT clear by writing 1, as the driver does.
    let bits = r.chanerr();
    r.write(CHANERR, &bits.to_le_bytes());
    assert_eq!(r.chanerr(), 0);
    let at = region(VFIO_PCI_CONFIG_REGION_INDEX) + u64::from(IOAT_CHANERR_INT);
    r.file.write(at, &bits.to_le_bytes()).unwrap();
    assert_eq!(r.chanerr_int(), 0);
    r.reset();
    r.fill(SRC, b'x', 0x1000);
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.bytes(DST, 0x1000), vec![b'x'; 0x1000]);
}

#[test]
fn interrupts_fire_when_asked_and_armed() {
    let r = Rig::new();
    r.fill(SRC, b'x', 8);
    r.descriptor(DESC, 8, CTL_INT_EN, SRC, DST, DESC);
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.interrupts(), 1);
    // Not rearmed: the next completion raises nothing.
    r.write(DMACOUNT, &2u16.to_le_bytes());
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.interrupts(), 1);
    r.write(CHANCTRL, &REARM.to_le_bytes());
    r.write(DMACOUNT, &3u16.to_le_bytes());
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.interrupts(), 2);
    // A completion write-back lands at CHANCMP.
    r.write(CHANCMP, &CMP.to_le_bytes());
    r.descriptor(DESC, 8, CTL_COMPL_WRITE, SRC, DST, DESC);
    r.write(DMACOUNT, &4u16.to_le_bytes());
    assert_eq!(r.wait() & 7, status::DONE);
    let written = u64::from_le_bytes(r.bytes(CMP, 8).try_into().unwrap());
    assert_eq!(written & !0x3f, DESC);
}

#[test]
fn reset_and_suspend_stop_a_busy_channel() {
    let r = Rig::new();
    r.descriptor(DESC, 0x1000, 0, SRC, DST, DESC);
    // A long run of the same descriptor: still going when suspended.
    r.start(DESC, REARM, u16::MAX);
    r.write(CHANCMD, &[CMD_SUSPEND]);
    assert_eq!(r.read_u64(CHANSTS) & 7, status::SUSPENDED);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(r.read_u64(CHANSTS) & 7, status::SUSPENDED, "it stays");
    r.start(DESC, REARM, u16::MAX);
    r.reset();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(r.read_u64(CHANSTS) & 7, status::HALTED, "a reset stops it");
    // A function-level reset through configuration space too.
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE);
    let mut file = r.file;
    r.m.ioctl(&mut file, VFIO_DEVICE_RESET, &mut []).unwrap();
    assert_eq!(read_u64(&file, 0, CHANSTS) & 7, status::HALTED);
}

#[test]
fn dma_goes_through_every_page_table_format() {
    for driver in ["amd_v1", "intel_vtd", "arm_smmuv3"] {
        let r = Rig::with(alone_behind(driver, BDF, "ioat"));
        let len = 0x3000;
        r.fill(SRC, b'q', len);
        r.descriptor(DESC, len as u32, 0, SRC, DST, DESC);
        r.start(DESC, REARM, 1);
        assert_eq!(r.wait() & 7, status::DONE, "{driver}");
        assert_eq!(r.bytes(DST, len), vec![b'q'; len], "{driver}");
        r.descriptor(DESC, len as u32, 0, SRC, UNMAPPED, DESC);
        r.write(CHANCMD, &[CMD_SUSPEND]);
        r.start(DESC, REARM, 1);
        assert_eq!(r.wait() & 7, status::HALTED, "{driver}");
        assert_eq!(r.chanerr(), chanerr::DEST_ADDR, "{driver}");
    }
}

#[test]
fn no_dma_without_bus_mastering() {
    let r = Rig::new();
    let config = region(VFIO_PCI_CONFIG_REGION_INDEX);
    r.file.write(config + 4, &0x2u16.to_le_bytes()).unwrap();
    r.descriptor(DESC, 0x1000, 0, SRC, DST, DESC);
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::HALTED);
    assert_eq!(r.chanerr(), chanerr::CHAIN_ADDR_VALUE);
}

#[test]
fn device_writes_set_dirty_bits_and_reads_do_not() {
    use softiommu_engine::ops::hwpt::HwptSpec;
    use softiommu_iommu::domain::PagingFlags;
    let mut r = Rig::new();
    let dev_id = r.file.dev_id().unwrap();
    let ioas = r.ioas;
    let flags = PagingFlags {
        dirty_tracking: true,
        nest_parent: false,
    };
    let hwpt =
        r.m.ctx
            .lock()
            .unwrap()
            .hwpt_alloc(dev_id, HwptSpec::paging(ioas, flags))
            .unwrap();
    r.m.attach(&mut r.file, hwpt).unwrap();
    r.m.ctx
        .lock()
        .unwrap()
        .hwpt_set_dirty_tracking(hwpt, true)
        .unwrap();
    r.fill(SRC, b's', 0x2000);
    r.descriptor(DESC, 0x2000, 0, SRC, DST, DESC);
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE);
    // One bit per page of [MEM, MEM + MEM_LEN), read into a scratch page.
    const BITMAP: u64 = MEM + MEM_LEN - 0x1000;
    r.m.mem.write(BITMAP, &[0u8; 128]).unwrap();
    r.m.ctx
        .lock()
        .unwrap()
        .hwpt_get_dirty_bitmap(&r.m.caller(), hwpt, MEM, MEM_LEN, 0x1000, BITMAP, false)
        .unwrap();
    let mut bitmap = [0u8; 128];
    r.m.mem.read(BITMAP, &mut bitmap).unwrap();
    let dirty: Vec<u64> = (0..MEM_LEN / 0x1000)
        .filter(|&p| bitmap[(p / 8) as usize] & 1 << (p % 8) != 0)
        .map(|p| MEM + p * 0x1000)
        .collect();
    // The domain maps this 2 MiB-aligned memory with 2 MiB leaves, and a
    // leaf's dirty bit covers all of it, as on hardware: the written leaf
    // is dirty, the source's is not.
    let leaf = 2 << 20;
    assert!(dirty.contains(&DST) && dirty.contains(&(DST + 0x1000)));
    assert!(
        dirty.iter().all(|&a| a & !(leaf - 1) == DST & !(leaf - 1)),
        "only the destination's leaf"
    );
    assert!(!dirty.contains(&SRC), "reads do not dirty");
}

#[test]
fn dma_through_a_nested_hwpt_and_its_stale_stage1_iotlb() {
    use softiommu_engine::memory::user_copy::Payload;
    use softiommu_engine::ops::hwpt::HwptSpec;
    use softiommu_engine::Arg;
    use softiommu_iommu::domain::PagingFlags;
    use softiommu_uapi::ioctl::IOMMU_HWPT_INVALIDATE;
    use softiommu_uapi::iommufd::{IommuHwptInvalidate, IOMMU_HWPT_DATA_VTD_S1};
    use zerocopy::IntoBytes;
    // Guest memory: 1 MiB of the caller's at GPA 0; the guest's stage-1
    // x86-64 table at GPA 0 maps three pages at guest IOVA 0x4000_0000.
    const GIOVA: u64 = 0x4000_0000;
    const DESC_GPA: u64 = 0x10000;
    let m = Machine::new();
    m.sim.map(MEM, 1 << 20, true);
    let mut file = m.open(BDF);
    m.bind(&mut file).unwrap();
    let dev_id = file.dev_id().unwrap();
    let ioas = m.ctx.lock().unwrap().ioas_alloc().unwrap();
    let args = softiommu_engine::MapArgs {
        iova: Some(0),
        length: 1 << 20,
        prot: Prot::READ_WRITE,
    };
    m.ctx
        .lock()
        .unwrap()
        .ioas_map(&m.caller(), ioas, MEM, args)
        .unwrap();
    let flags = PagingFlags {
        dirty_tracking: false,
        nest_parent: true,
    };
    let parent = m
        .ctx
        .lock()
        .unwrap()
        .hwpt_alloc(dev_id, HwptSpec::paging(ioas, flags))
        .unwrap();
    let guest = m.mem.clone();
    let put = |gpa: u64, v: u64| guest.write(MEM + gpa, &v.to_le_bytes()).unwrap();
    const P_RW_U: u64 = 0x7;
    put(8 * ((GIOVA >> 39) & 511), 0x1000 | P_RW_U);
    put(0x1000 + 8 * ((GIOVA >> 30) & 511), 0x2000 | P_RW_U);
    put(0x2000 + 8 * ((GIOVA >> 21) & 511), 0x3000 | P_RW_U);
    for page in 0..3u64 {
        let pte = 0x3000 + 8 * (((GIOVA >> 12) + page) & 511);
        put(pte, (DESC_GPA + page * 0x1000) | P_RW_U);
    }
    // struct iommu_hwpt_vtd_s1: flags, pgtbl_addr (GPA 0), addr_width.
    let mut data = vec![0u8; 16];
    data.extend_from_slice(&48u32.to_ne_bytes());
    data.extend_from_slice(&0u32.to_ne_bytes());
    let nested = m
        .ctx
        .lock()
        .unwrap()
        .hwpt_alloc(
            dev_id,
            HwptSpec::Nested {
                parent,
                data_type: IOMMU_HWPT_DATA_VTD_S1,
                payload: Payload::Bytes(&data),
            },
        )
        .unwrap();
    m.attach(&mut file, nested).unwrap();
    let config = region(VFIO_PCI_CONFIG_REGION_INDEX);
    file.write(config + 4, &0x6u16.to_le_bytes()).unwrap();
    let r = Rig { m, file, ioas: 0 };
    r.reset();
    // The descriptor, source and destination, by guest IOVA.
    let (src, dst) = (GIOVA + 0x1000, GIOVA + 0x2000);
    let mut d = [0u8; DESCRIPTOR_LEN];
    d[0..4].copy_from_slice(&256u32.to_le_bytes());
    d[8..16].copy_from_slice(&src.to_le_bytes());
    d[16..24].copy_from_slice(&dst.to_le_bytes());
    d[24..32].copy_from_slice(&GIOVA.to_le_bytes());
    r.m.mem.write(MEM + DESC_GPA, &d).unwrap();
    r.m.mem
        .write(MEM + DESC_GPA + 0x1000, &[b'n'; 256])
        .unwrap();
    r.start(GIOVA, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE);
    assert_eq!(r.bytes(MEM + DESC_GPA + 0x2000, 256), vec![b'n'; 256]);
    // The guest unmaps the source in its stage 1 without invalidating: the
    // stage-1 IOTLB still holds it, and the copy still reads it.
    put(0x3000 + 8 * (((GIOVA >> 12) + 1) & 511), 0);
    r.write(CHANCMD, &[CMD_SUSPEND]);
    r.start(GIOVA, REARM, 1);
    assert_eq!(r.wait() & 7, status::DONE, "stale but cached");
    // IOMMU_HWPT_INVALIDATE of that page: now the read faults.
    const ENTRY: u64 = MEM + 0xf0000;
    let mut entry = Vec::new();
    entry.extend_from_slice(&src.to_ne_bytes());
    entry.extend_from_slice(&1u64.to_ne_bytes());
    entry.extend_from_slice(&[0u8; 8]);
    r.m.mem.write(ENTRY, &entry).unwrap();
    let mut cmd = IommuHwptInvalidate {
        size: 32,
        hwpt_id: nested,
        data_uptr: ENTRY,
        data_type: 0,
        entry_len: 24,
        entry_num: 1,
        ..Default::default()
    };
    r.m.ctx
        .lock()
        .unwrap()
        .ioctl(
            &r.m.caller(),
            IOMMU_HWPT_INVALIDATE,
            Arg::Bytes(cmd.as_mut_bytes()),
        )
        .unwrap();
    r.write(CHANCMD, &[CMD_SUSPEND]);
    r.start(GIOVA, REARM, 1);
    assert_eq!(r.wait() & 7, status::HALTED);
    assert_eq!(r.chanerr(), chanerr::SRC_ADDR);
}

#[test]
fn a_translation_fault_reaches_the_hwpts_fault_queue() {
    use softiommu_engine::memory::CallerFiles;
    use softiommu_engine::Arg;
    use softiommu_uapi::ioctl::{IOMMU_FAULT_QUEUE_ALLOC, IOMMU_HWPT_ALLOC};
    use softiommu_uapi::iommufd::{
        IommuFaultAlloc, IommuHwptAlloc, IommuHwptPgfault, IOMMU_HWPT_FAULT_ID_VALID,
    };
    use zerocopy::{FromBytes, IntoBytes};
    let mut r = Rig::new();
    let caller = r.m.caller();
    let mut alloc = IommuFaultAlloc {
        size: 16,
        ..Default::default()
    };
    r.m.ctx
        .lock()
        .unwrap()
        .ioctl(
            &caller,
            IOMMU_FAULT_QUEUE_ALLOC,
            Arg::Bytes(alloc.as_mut_bytes()),
        )
        .unwrap();
    let inode = r.m.files.inode_of(alloc.out_fault_fd as i32).unwrap();
    let mut hwpt = IommuHwptAlloc {
        size: 48,
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: r.file.dev_id().unwrap(),
        pt_id: r.ioas,
        fault_id: alloc.out_fault_id,
        ..Default::default()
    };
    r.m.ctx
        .lock()
        .unwrap()
        .ioctl(&caller, IOMMU_HWPT_ALLOC, Arg::Bytes(hwpt.as_mut_bytes()))
        .unwrap();
    r.m.attach(&mut r.file, hwpt.out_hwpt_id).unwrap();
    r.descriptor(DESC, 0x1000, 0, UNMAPPED + 0x10, DST, DESC);
    r.start(DESC, REARM, 1);
    assert_eq!(r.wait() & 7, status::HALTED, "the channel halts");
    assert_eq!(r.chanerr(), chanerr::SRC_ADDR);
    // And the IOMMU raised a page request for the faulting page.
    let out = r.m.ctx.lock().unwrap().take_side_output();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, inode);
    let record = IommuHwptPgfault::read_from_bytes(&out[0].1).unwrap();
    assert_eq!(record.addr, UNMAPPED, "the page of the source read");
}
