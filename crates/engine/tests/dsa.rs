//! The DSA model driven as its drivers drive it: commands through CMD and
//! CMDSTS, the WQ and group tables, descriptors through the portal, and
//! completion records, interrupts and SWERR for every outcome.

mod common;

use common::vfio::*;
use softiommu_engine::devices::dsa::exec::{comp, op, SWERR_DROPPED};
use softiommu_engine::devices::dsa::{cmdsts, reg, TOTAL_WQ_SIZE};
use softiommu_engine::vfio::DeviceFile;
use softiommu_engine::Prot;
use softiommu_iommu::Topology;
use softiommu_uapi::vfio::*;
use std::time::{Duration, Instant};

const BDF: &str = "0000:6a:01.0";
const MEM: u64 = 0x100_0000;
const MEM_LEN: u64 = 8 << 20;
const UNMAPPED: u64 = 0x400_0000;
const LIST: u64 = MEM;
const CR: u64 = MEM + 0x10_0000;
const SRC: u64 = MEM + 0x20_0000;
const DST: u64 = MEM + 0x40_0000;
const CRAV: u32 = 0x04;
const RCR: u32 = 0x08;
const RCI: u32 = 0x10;
const MSI_EVENTFD: i32 = 11;

struct Rig {
    m: Machine,
    file: DeviceFile,
}

impl Rig {
    /// The DSA bound and attached, memory mapped, bus master on, MSI-X
    /// vector 1 wired, reset — not yet configured or enabled.
    fn bare(topology: Topology) -> Rig {
        let m = Machine::with(topology);
        let (file, _) = m.driven(BDF, &[(MEM, MEM_LEN, Prot::READ_WRITE)], 1, MSI_EVENTFD);
        let rig = Rig { m, file };
        assert_eq!(rig.command(5, 0), 0, "reset");
        rig
    }

    /// Configured and enabled as the VFIO selftests' driver does it.
    fn with(topology: Topology) -> Rig {
        let r = Rig::bare(topology);
        r.configure(TOTAL_WQ_SIZE, 1);
        assert_eq!(r.command(1, 0), 0, "enable device");
        assert_eq!(r.command(6, 0), 0, "enable WQ");
        r
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

    /// Issues a command; CMDSTS's error byte.
    fn command(&self, cmd: u32, operand: u32) -> u32 {
        self.write(reg::CMD, &(cmd << 20 | operand).to_le_bytes());
        let sts = self.read_u64(reg::CMDSTS) as u32;
        assert_eq!(sts & 1 << 31, 0, "commands finish at once");
        sts & 0xff
    }

    /// WQ 0 dedicated, of `size` entries, memmove and batch allowed, in
    /// group 0 with engine 0.
    fn configure(&self, size: u16, mode: u32) {
        let gencap = self.read_u64(reg::GENCAP);
        let mut wqcfg = [0u8; 64];
        wqcfg[0..2].copy_from_slice(&size.to_le_bytes());
        wqcfg[8..12].copy_from_slice(&(mode | 1 << 4).to_le_bytes());
        let limits = ((gencap >> 16) & 0x1f) | ((gencap >> 21) & 0xf) << 5;
        wqcfg[12..16].copy_from_slice(&(limits as u32).to_le_bytes());
        let ops = 1u64 << op::MEMMOVE | 1 << op::BATCH;
        wqcfg[32..40].copy_from_slice(&ops.to_le_bytes());
        for (i, word) in wqcfg.chunks(4).enumerate() {
            self.write(reg::WQCFG + 4 * i as u64, word);
        }
        self.write(reg::GRPCFG, &1u64.to_le_bytes());
        self.write(reg::GRPCFG + 32, &1u64.to_le_bytes());
    }

    fn descriptor(
        opcode: u8,
        flags: u32,
        cr: u64,
        src: u64,
        dst: u64,
        size: u32,
        int: u16,
    ) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&(1u32 << 31).to_le_bytes());
        d[4..8].copy_from_slice(&(flags | u32::from(opcode) << 24).to_le_bytes());
        d[8..16].copy_from_slice(&cr.to_le_bytes());
        d[16..24].copy_from_slice(&src.to_le_bytes());
        d[24..32].copy_from_slice(&dst.to_le_bytes());
        d[32..36].copy_from_slice(&size.to_le_bytes());
        d[36..38].copy_from_slice(&int.to_le_bytes());
        d
    }

    fn submit(&self, d: &[u8; 64]) {
        self.file.write(region(2), d).unwrap();
    }

    /// Waits for the completion record at `cr`; (status, completed, fault).
    fn wait(&self, cr: u64) -> (u8, u32, u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut rec = [0u8; 32];
            self.m.mem.read(cr, &mut rec).unwrap();
            if rec[0] != 0 {
                let completed = u32::from_le_bytes(rec[4..8].try_into().unwrap());
                let fault = u64::from_le_bytes(rec[8..16].try_into().unwrap());
                return (rec[0], completed, fault);
            }
            assert!(Instant::now() < deadline, "no completion");
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    fn swerr(&self) -> (u64, u64) {
        (self.read_u64(reg::SWERR), self.read_u64(reg::SWERR + 16))
    }
}

#[test]
fn the_device_advertises_what_the_selftests_driver_reads() {
    let r = Rig::bare(Topology::default_machine());
    let gencap = r.read_u64(reg::GENCAP);
    assert_eq!((gencap >> 16) & 0x1f, 21, "2 MiB transfers");
    assert_eq!((gencap >> 21) & 0xf, 10, "1024-descriptor batches");
    assert_ne!(gencap & 1 << 4, 0, "CMDCAP present");
    let cmdcap = r.read_u64(reg::CMDCAP);
    assert_eq!(cmdcap & 1 << 13, 0, "no interrupt handles to request");
    let wqcap = r.read_u64(reg::WQCAP);
    assert_eq!((wqcap & 0xffff, (wqcap >> 16) & 0xff), (32, 1));
    let tables = r.read_u64(reg::TABLE_OFFSET);
    assert_eq!(
        ((tables & 0xffff) * 0x100, ((tables >> 16) & 0xffff) * 0x100),
        (reg::GRPCFG, reg::WQCFG)
    );
    // Capabilities are read-only.
    r.write(reg::GENCAP, &0u64.to_le_bytes());
    assert_eq!(r.read_u64(reg::GENCAP), gencap);
}

#[test]
fn commands_check_the_configuration_as_the_device_does() {
    let r = Rig::bare(Topology::default_machine());
    assert_eq!(r.command(6, 0), cmdsts::DEV_NOTEN, "WQ before device");
    assert_eq!(r.command(0x1f, 0), cmdsts::INVAL_CMD);
    r.configure(TOTAL_WQ_SIZE + 1, 1);
    assert_eq!(r.command(1, 0), cmdsts::WQ_SIZE_ERANGE);
    r.configure(0, 1);
    assert_eq!(r.command(1, 0), 0);
    assert_eq!(r.command(1, 0), cmdsts::DEV_ENABLED);
    assert_eq!(r.command(6, 0), cmdsts::WQ_SIZE, "a WQ of size 0");
    assert_eq!(r.command(6, 3), cmdsts::INVAL_WQIDX);
    assert_eq!(r.command(2, 0), 0, "disable device");
    r.configure(8, 0);
    assert_eq!(r.command(1, 0), 0);
    assert_eq!(r.command(6, 0), cmdsts::WQ_MODE, "shared mode");
    assert_eq!(r.command(2, 0), 0);
    r.configure(8, 1);
    assert_eq!(r.command(1, 0), 0);
    assert_eq!(r.command(6, 0), 0);
    assert_eq!(r.command(6, 0), cmdsts::WQ_ENABLED);
    assert_eq!(r.read_u64(reg::GENSTATS) & 3, 1, "enabled");
    // Without bus mastering the device does not enable.
    assert_eq!(r.command(5, 0), 0);
    let config = region(VFIO_PCI_CONFIG_REGION_INDEX);
    r.file.write(config + 4, &0x2u16.to_le_bytes()).unwrap();
    r.configure(8, 1);
    assert_eq!(r.command(1, 0), cmdsts::BUSMASTER_EN);
}

#[test]
fn memmove_copies_and_reports_in_the_completion_record() {
    let r = Rig::new();
    let len = 1 << 20;
    r.m.mem.write(SRC, &vec![b'x'; len]).unwrap();
    r.submit(&Rig::descriptor(
        op::MEMMOVE,
        CRAV | RCR,
        CR,
        SRC,
        DST,
        len as u32,
        0,
    ));
    assert_eq!(r.wait(CR), (comp::SUCCESS, len as u32, 0));
    let mut dst = vec![0u8; len];
    r.m.mem.read(DST, &mut dst).unwrap();
    assert_eq!(dst, vec![b'x'; len]);
    assert_eq!(r.m.counter(MSI_EVENTFD), 0);
    // RCI raises the descriptor's vector.
    r.m.mem.write(CR, &[0; 32]).unwrap();
    r.submit(&Rig::descriptor(
        op::MEMMOVE,
        CRAV | RCR | RCI,
        CR,
        SRC,
        DST,
        8,
        1,
    ));
    assert_eq!(r.wait(CR).0, comp::SUCCESS);
    assert_eq!(r.m.counter(MSI_EVENTFD), 1);
    assert_eq!(r.swerr().0, 0, "no software error");
}

#[test]
fn faults_and_bad_descriptors_come_back_in_the_completion_record() {
    for (what, d, want) in [
        (
            "source unmapped",
            Rig::descriptor(op::MEMMOVE, CRAV | RCR, CR, UNMAPPED, DST, 0x1000, 0),
            (comp::PAGE_FAULT_NOBOF, UNMAPPED),
        ),
        (
            "destination unmapped",
            Rig::descriptor(op::MEMMOVE, CRAV, CR, SRC, UNMAPPED, 0x1000, 0),
            (comp::PAGE_FAULT_NOBOF, UNMAPPED),
        ),
        (
            "too large",
            Rig::descriptor(op::MEMMOVE, CRAV, CR, SRC, DST, (2 << 20) + 1, 0),
            (comp::XFER_ERANGE, 0),
        ),
        (
            "an operation the WQ does not allow",
            Rig::descriptor(4, CRAV, CR, SRC, DST, 8, 0),
            (comp::BAD_OPCODE, 0),
        ),
        (
            "an interrupt handle the function lacks",
            Rig::descriptor(op::MEMMOVE, CRAV | RCI, CR, SRC, DST, 8, 7),
            (comp::INT_HANDLE_INVAL, 0),
        ),
        (
            "a batch of one",
            Rig::descriptor(op::BATCH, CRAV, CR, LIST, 0, 1, 0),
            (comp::DESC_CNT_ERANGE, 0),
        ),
        (
            "a misaligned batch list",
            Rig::descriptor(op::BATCH, CRAV, CR, LIST + 8, 0, 2, 0),
            (comp::DESCLIST_ALIGN, 0),
        ),
        (
            "an unreadable batch list",
            Rig::descriptor(op::BATCH, CRAV, CR, UNMAPPED, 0, 2, 0),
            (comp::BATCH_PAGE_FAULT, UNMAPPED),
        ),
    ] {
        let r = Rig::new();
        r.submit(&d);
        let (status, _, fault) = r.wait(CR);
        assert_eq!((status, fault), want, "{what}");
        assert_eq!(r.swerr().0, 0, "{what}: no software error");
        assert_eq!(r.m.counter(MSI_EVENTFD), 0, "{what}");
    }
}

#[test]
fn a_batch_runs_its_list_and_reports_failures_as_a_whole() {
    let r = Rig::new();
    r.m.mem.write(SRC, &[7u8; 64]).unwrap();
    let mut list = Vec::new();
    for i in 0..4u64 {
        list.extend_from_slice(&Rig::descriptor(
            op::MEMMOVE,
            CRAV,
            CR + 64,
            SRC,
            DST + i * 64,
            64,
            0,
        ));
    }
    r.m.mem.write(LIST, &list).unwrap();
    r.submit(&Rig::descriptor(op::BATCH, CRAV | RCR, CR, LIST, 0, 4, 0));
    assert_eq!(r.wait(CR), (comp::SUCCESS, 4, 0));
    let mut dst = [0u8; 256];
    r.m.mem.read(DST, &mut dst).unwrap();
    assert_eq!(dst, [7u8; 256]);
    // One failing copy: the batch fails, the copy's own record says why.
    let bad = Rig::descriptor(op::MEMMOVE, CRAV, CR + 64, UNMAPPED, DST, 64, 0);
    r.m.mem.write(LIST + 64, &bad).unwrap();
    r.m.mem.write(CR, &[0; 128]).unwrap();
    r.submit(&Rig::descriptor(op::BATCH, CRAV | RCR, CR, LIST, 0, 4, 0));
    assert_eq!(r.wait(CR), (comp::BATCH_FAIL, 4, 0));
    assert_eq!(r.wait(CR + 64).0, comp::PAGE_FAULT_NOBOF);
}

#[test]
fn what_a_record_cannot_carry_goes_to_swerr() {
    let r = Rig::new();
    // A completion record that does not translate.
    r.submit(&Rig::descriptor(
        op::MEMMOVE,
        CRAV | RCR,
        UNMAPPED,
        SRC,
        DST,
        8,
        0,
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.swerr().0 & 1 == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_micros(50));
    }
    let (bits, fault) = r.swerr();
    assert_eq!((bits >> 8) & 0xff, u64::from(comp::CRA_XLAT));
    assert_eq!(fault, UNMAPPED);
    // A second error while one is recorded sets OVERFLOW.
    r.submit(&Rig::descriptor(
        op::MEMMOVE,
        CRAV | RCR,
        CR + 8,
        SRC,
        DST,
        8,
        0,
    ));
    while r.swerr().0 & 2 == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_micros(50));
    }
    // VALID and OVERFLOW clear by writing 1.
    r.write(reg::SWERR, &3u64.to_le_bytes());
    assert_eq!(r.swerr(), (0, 0));
    // A descriptor for a disabled WQ is dropped and reported.
    assert_eq!(r.command(7, 0), 0, "disable WQ");
    r.submit(&Rig::descriptor(
        op::MEMMOVE,
        CRAV | RCR,
        CR,
        SRC,
        DST,
        8,
        0,
    ));
    assert_eq!((r.swerr().0 >> 8) & 0xff, u64::from(SWERR_DROPPED));
}

#[test]
fn dsa_dma_goes_through_every_page_table_format() {
    for driver in ["amd_v1", "intel_vtd", "arm_smmuv3"] {
        let r = Rig::with(alone_behind(driver, BDF, "dsa"));
        r.m.mem.write(SRC, &[3u8; 4096]).unwrap();
        r.submit(&Rig::descriptor(
            op::MEMMOVE,
            CRAV | RCR,
            CR,
            SRC,
            DST,
            4096,
            0,
        ));
        assert_eq!(r.wait(CR).0, comp::SUCCESS, "{driver}");
        let mut dst = [0u8; 4096];
        r.m.mem.read(DST, &mut dst).unwrap();
        assert_eq!(dst, [3u8; 4096], "{driver}");
    }
}

/// A WQ configured with a PASID tags its DMA with it: the copy goes through
/// the HWPT attached to that PASID, not the RID's; with the PASID detached
/// it faults, and the fault comes back in the completion record.
#[test]
fn a_wq_with_a_pasid_does_its_dma_through_that_pasids_hwpt() {
    use softiommu_engine::{Arg, MapArgs};
    use softiommu_uapi::ioctl::IOMMU_HWPT_ALLOC;
    use softiommu_uapi::iommufd::*;
    use zerocopy::IntoBytes;
    const PASID: u32 = 7;
    let m = Machine::new();
    let mut file = m.open(BDF);
    let dev_id = m.bind(&mut file).unwrap();
    // The RID's IOAS maps nothing; the PASID's maps the memory.
    let (empty, full) = {
        let mut ctx = m.ctx.lock().unwrap();
        (ctx.ioas_alloc().unwrap(), ctx.ioas_alloc().unwrap())
    };
    m.sim.map(MEM, MEM_LEN, true);
    let args = MapArgs {
        iova: Some(MEM),
        length: MEM_LEN,
        prot: Prot::READ_WRITE,
    };
    m.ctx
        .lock()
        .unwrap()
        .ioas_map(&m.caller(), full, MEM, args)
        .unwrap();
    let hwpt = |ioas: u32| {
        let mut alloc = IommuHwptAlloc {
            size: std::mem::size_of::<IommuHwptAlloc>() as u32,
            flags: IOMMU_HWPT_ALLOC_PASID,
            dev_id,
            pt_id: ioas,
            ..Default::default()
        };
        m.ctx
            .lock()
            .unwrap()
            .ioctl(
                &m.caller(),
                IOMMU_HWPT_ALLOC,
                Arg::Bytes(alloc.as_mut_bytes()),
            )
            .unwrap();
        alloc.out_hwpt_id
    };
    let (rid_hwpt, pasid_hwpt) = (hwpt(empty), hwpt(full));
    m.attach(&mut file, rid_hwpt).unwrap();
    let mut attach = VfioDeviceAttachIommufdPt {
        argsz: 16,
        flags: VFIO_DEVICE_ATTACH_PASID,
        pt_id: pasid_hwpt,
        pasid: PASID,
    };
    m.ioctl(
        &mut file,
        VFIO_DEVICE_ATTACH_IOMMUFD_PT,
        attach.as_mut_bytes(),
    )
    .unwrap();
    file.write(
        region(VFIO_PCI_CONFIG_REGION_INDEX) + 4,
        &0x6u16.to_le_bytes(),
    )
    .unwrap();
    let mut r = Rig { m, file };
    assert_eq!(r.command(5, 0), 0, "reset");
    r.configure(TOTAL_WQ_SIZE, 1 | PASID << 8 | 1 << 28);
    assert_eq!(r.command(1, 0), 0, "enable device");
    assert_eq!(r.command(6, 0), 0, "enable WQ");

    r.m.mem.write(SRC, &[9u8; 4096]).unwrap();
    let copy = Rig::descriptor(op::MEMMOVE, CRAV | RCR, CR, SRC, DST, 4096, 0);
    r.submit(&copy);
    assert_eq!(r.wait(CR).0, comp::SUCCESS, "through the PASID's HWPT");
    let mut dst = [0u8; 4096];
    r.m.mem.read(DST, &mut dst).unwrap();
    assert_eq!(dst, [9u8; 4096]);

    // Without the PASID the device finds no translation for its DMA, not
    // even for its completion record: SWERR reports it.
    let mut detach = VfioDeviceDetachIommufdPt {
        argsz: 12,
        flags: VFIO_DEVICE_DETACH_PASID,
        pasid: PASID,
    };
    r.m.ioctl(
        &mut r.file,
        VFIO_DEVICE_DETACH_IOMMUFD_PT,
        detach.as_mut_bytes(),
    )
    .unwrap();
    r.submit(&copy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.swerr().0 & 1 == 0 {
        assert!(Instant::now() < deadline, "the fault is reported");
        std::thread::sleep(Duration::from_micros(50));
    }
    let (bits, fault) = r.swerr();
    assert_eq!((bits >> 8) & 0xff, u64::from(comp::CRA_XLAT));
    assert_eq!(fault, CR);
}

/// A small deterministic generator for the random-input test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

/// Both models (the DSA and the I/OAT) under random register and portal
/// writes, with memory full of random descriptors: no panic, no hang, and
/// the device still answers.
#[test]
fn random_register_writes_and_descriptors_never_break_the_device() {
    for (bdf, bars, vector) in [(BDF, [0u32, 2], 1), ("0000:00:04.0", [0, 0], 0)] {
        let m = Machine::new();
        let (file, _) = m.driven(
            bdf,
            &[(MEM, MEM_LEN, Prot::READ_WRITE)],
            vector,
            MSI_EVENTFD,
        );
        let mut rng = Lcg(0x5eed ^ u64::from(bars[1]));
        // Memory full of plausible-looking garbage: descriptors, lists.
        let mut garbage = vec![0u8; 1 << 20];
        for chunk in garbage.chunks_mut(8) {
            let v = MEM + rng.next() % MEM_LEN;
            chunk.copy_from_slice(&if rng.next() % 4 == 0 { rng.next() } else { v }.to_le_bytes());
        }
        m.mem.write(MEM, &garbage).unwrap();
        for _ in 0..20000 {
            let bar = bars[(rng.next() % 2) as usize];
            let len = [1usize, 2, 4, 8, 64, 100][(rng.next() % 6) as usize];
            let offset = rng.next() % 0x1100;
            let mut data = vec![0u8; len];
            for b in &mut data {
                *b = rng.next() as u8;
            }
            // Commands and doorbells with sensible values half the time.
            if rng.next() % 2 == 0 && len == 4 {
                data = ((rng.next() % 12) << 20).to_le_bytes()[..4].to_vec();
            }
            let _ = file.write(region(bar) + offset, &data);
            let _ = file.read(region(bar) + rng.next() % 0x1100, &mut [0u8; 8]);
        }
        // The device still answers, and a reset still works.
        let mut b = [0u8; 8];
        file.read(region(0), &mut b).unwrap();
        drop(file);
    }
}
