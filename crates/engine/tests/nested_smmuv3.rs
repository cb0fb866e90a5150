//! Arm SMMUv3 nesting: a vIOMMU over a nest parent, a nested HWPT made
//! through it from a guest STE, whose context descriptor and AArch64
//! stage-1 tables live in guest memory and are walked for device DMA through
//! the stage 2; the guest's invalidation commands go through the vIOMMU.

mod common;
use common::*;
use softiommu_engine::memory::user_copy::Payload;
use softiommu_engine::ops::dma::DmaError;
use softiommu_engine::ops::hwpt::HwptSpec;
use softiommu_engine::Errno;
use softiommu_iommu::DriverInfo;
use softiommu_pt::FaultReason;
use softiommu_uapi::ioctl::IOMMU_HWPT_INVALIDATE;
use softiommu_uapi::iommufd::*;
use zerocopy::IntoBytes;

const GUEST: u64 = 0x1_0000;
const IOVA: u64 = 0x40_0000;
const DATA_GPA: u64 = 0x8000;
const RO_GPA: u64 = 0x9000;
const CD_GPA: u64 = 0x4000;
const VSID: u64 = 0x10;

const TABLE: u64 = 0b11;
const PAGE_RW: u64 = 0b11 | (1 << 10);
const PAGE_RO: u64 = PAGE_RW | (1 << 7);

struct Smmu {
    h: Harness,
    dev: u32,
    parent: u32,
    viommu: u32,
}

fn put(h: &Harness, gpa: u64, value: u64) {
    h.write_mem(BUF + gpa, &value.to_le_bytes());
}

fn slot(table: u64, iova: u64, level: u32) -> u64 {
    table + 8 * ((iova >> (12 + 9 * level)) & 511)
}

/// AArch64 4-level stage 1 at GPA 0 and its CD (T0SZ 16, 4 KiB granule).
fn build_stage1(h: &Harness) {
    put(h, slot(0, IOVA, 3), 0x1000 | TABLE);
    put(h, slot(0x1000, IOVA, 2), 0x2000 | TABLE);
    put(h, slot(0x2000, IOVA, 1), 0x3000 | TABLE);
    put(h, slot(0x3000, IOVA, 0), DATA_GPA | PAGE_RW);
    put(h, slot(0x3000, IOVA + PAGE, 0), RO_GPA | PAGE_RO);
    put(h, CD_GPA, 16 | (1 << 31) | (1 << 41));
    put(h, CD_GPA + 8, 0);
}

fn ste(ste0: u64) -> Vec<u8> {
    let mut d = ste0.to_le_bytes().to_vec();
    d.extend_from_slice(&0u64.to_le_bytes());
    d
}

const STE_S1: u64 = 1 | (5 << 1) | CD_GPA;

fn setup() -> Smmu {
    let (mut h, dev, parent) = nesting_machine(DriverInfo::arm_smmuv3(), GUEST);
    build_stage1(&h);
    let viommu = h
        .ctx
        .viommu_alloc(dev, parent, IOMMU_VIOMMU_TYPE_ARM_SMMUV3)
        .unwrap();
    h.ctx.vdevice_alloc(viommu, dev, VSID).unwrap();
    Smmu {
        h,
        dev,
        parent,
        viommu,
    }
}

fn nested(s: &mut Smmu, ste0: u64) -> Result<u32, Errno> {
    let data = ste(ste0);
    s.h.ctx.hwpt_alloc(
        s.dev,
        HwptSpec::ViommuNested {
            viommu: s.viommu,
            data_type: IOMMU_HWPT_DATA_ARM_SMMUV3,
            payload: Payload::Bytes(&data),
        },
    )
}

fn fault_of(r: Result<(), DmaError>) -> FaultReason {
    match r {
        Err(DmaError::Fault(f)) => f.reason,
        other => panic!("expected a fault, got {other:?}"),
    }
}

/// Guest commands `[word0, word1]` through the vIOMMU.
fn invalidate(s: &mut Smmu, cmds: &[[u64; 2]]) -> (Result<i64, Errno>, u32) {
    for (i, c) in cmds.iter().enumerate() {
        s.h.write_mem(SCRATCH + 16 * i as u64, c.as_bytes());
    }
    let mut cmd = IommuHwptInvalidate {
        size: 32,
        hwpt_id: s.viommu,
        data_uptr: SCRATCH,
        data_type: IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
        entry_len: 16,
        entry_num: cmds.len() as u32,
        ..Default::default()
    };
    let rc = s.h.raw(IOMMU_HWPT_INVALIDATE, cmd.as_mut_bytes());
    (rc, cmd.entry_num)
}

#[test]
fn guest_stes_are_checked_and_need_the_viommu() {
    let mut s = setup();
    let data = ste(STE_S1);
    assert_eq!(
        s.h.ctx.hwpt_alloc(
            s.dev,
            HwptSpec::Nested {
                parent: s.parent,
                data_type: IOMMU_HWPT_DATA_ARM_SMMUV3,
                payload: Payload::Bytes(&data),
            },
        ),
        Err(Errno::EOPNOTSUPP),
        "SMMUv3 nests only through a vIOMMU"
    );
    assert_eq!(
        nested(&mut s, 1 | (6 << 1)),
        Err(Errno::EIO),
        "stage 2 is the host's"
    );
    assert_eq!(nested(&mut s, STE_S1 | (1 << 55)), Err(Errno::EIO));
    nested(&mut s, STE_S1).unwrap();
}

#[test]
fn device_dma_walks_the_cd_and_the_guests_stage1() {
    let mut s = setup();
    let hwpt = nested(&mut s, STE_S1).unwrap();
    s.h.ctx.device_attach(s.dev, hwpt).unwrap();
    s.h.ctx
        .device_dma(s.dev, IOVA + 4, &mut b"smmu".to_vec(), true)
        .unwrap();
    assert_eq!(s.h.read_mem(BUF + DATA_GPA + 4, 4), b"smmu");
    assert_eq!(
        fault_of(s.h.ctx.device_dma(s.dev, IOVA + PAGE, &mut [1], true)),
        FaultReason::Permission,
        "AP[2] makes the page read-only"
    );
    s.h.ctx
        .device_dma(s.dev, IOVA + PAGE, &mut [0], false)
        .unwrap();
    assert_eq!(
        fault_of(s.h.ctx.device_dma(s.dev, 1 << 48, &mut [0], false)),
        FaultReason::OutOfRange,
        "past the CD's input size"
    );
    // The guest disables its CD: the next walk faults.
    put(&s.h, CD_GPA, 16 | (1 << 41));
    assert_eq!(
        fault_of(s.h.ctx.device_dma(s.dev, IOVA + 2 * PAGE, &mut [0], false)),
        FaultReason::NotPresent
    );

    // Bypass and abort STEs.
    let bypass = nested(&mut s, 1 | (4 << 1)).unwrap();
    s.h.ctx.device_replace(s.dev, bypass).unwrap();
    let mut back = [0u8; 4];
    s.h.ctx
        .device_dma(s.dev, DATA_GPA + 4, &mut back, false)
        .unwrap();
    assert_eq!(&back, b"smmu", "bypass: IOVA is the GPA");
    let abort = nested(&mut s, 0).unwrap();
    s.h.ctx.device_replace(s.dev, abort).unwrap();
    assert_eq!(
        fault_of(s.h.ctx.device_dma(s.dev, DATA_GPA, &mut back, false)),
        FaultReason::NotPresent
    );
}

#[test]
fn guest_commands_invalidate_through_the_viommu() {
    use softiommu_engine::Errno;
    let mut s = setup();
    let hwpt = nested(&mut s, STE_S1).unwrap();
    s.h.ctx.device_attach(s.dev, hwpt).unwrap();
    s.h.ctx.device_dma(s.dev, IOVA, &mut [0; 4], false).unwrap();
    put(&s.h, slot(0x3000, IOVA, 0), 0);
    s.h.ctx
        .device_dma(s.dev, IOVA, &mut [0; 4], false)
        .expect("stale but cached");

    const TLBI_NH_VA: u64 = 0x12;
    const CFGI_CD: u64 = 0x05;
    assert_eq!(
        invalidate(&mut s, &[[CFGI_CD | (VSID << 32), 0], [0x20, 0]]),
        (Err(Errno::EIO), 1),
        "an unknown command stops the array"
    );
    assert_eq!(
        invalidate(&mut s, &[[CFGI_CD | (0x99 << 32), 0]]),
        (Err(Errno::EIO), 0),
        "an unknown vSID"
    );
    s.h.ctx
        .device_dma(s.dev, IOVA, &mut [0; 4], false)
        .expect("still cached");
    assert_eq!(invalidate(&mut s, &[[TLBI_NH_VA, IOVA + PAGE]]), (Ok(0), 1));
    s.h.ctx
        .device_dma(s.dev, IOVA, &mut [0; 4], false)
        .expect("another page was invalidated");
    assert_eq!(invalidate(&mut s, &[[TLBI_NH_VA, IOVA]]), (Ok(0), 1));
    assert_eq!(
        fault_of(s.h.ctx.device_dma(s.dev, IOVA, &mut [0; 4], false)),
        FaultReason::NotPresent
    );
}
