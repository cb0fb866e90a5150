//! Nested translation with a real stage 1: an Intel VT-d device attached to a
//! nested HWPT whose x86-64 stage-1 table lives in guest memory (mapped in the
//! parent's IOAS), walked for device DMA through the stage-2 parent, with a
//! stage-1 IOTLB that stays stale until `IOMMU_HWPT_INVALIDATE`.

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

/// Guest physical memory: 64 KiB of the harness buffer at GPA 0.
const GUEST: u64 = 0x1_0000;
/// Where the stage-1 tables put the guest's buffer: IOVA → GPA.
const IOVA: u64 = 0x40_0000;
const DATA_GPA: u64 = 0x8000;
const RO_GPA: u64 = 0x9000;

struct Nested {
    h: Harness,
    dev: u32,
    nested: u32,
}

fn put(h: &Harness, gpa: u64, value: u64) {
    h.write_mem(BUF + gpa, &value.to_le_bytes());
}

/// An x86-64 4-level stage 1 at GPA 0 mapping IOVA → DATA_GPA read-write and
/// IOVA + 4 KiB → RO_GPA read-only.
fn build_stage1(h: &Harness) {
    const P_RW_U: u64 = 0x7;
    const P_U: u64 = 0x5;
    put(h, 8 * ((IOVA >> 39) & 511), 0x1000 | P_RW_U);
    put(h, 0x1000 + 8 * ((IOVA >> 30) & 511), 0x2000 | P_RW_U);
    put(h, 0x2000 + 8 * ((IOVA >> 21) & 511), 0x3000 | P_RW_U);
    put(h, 0x3000 + 8 * ((IOVA >> 12) & 511), DATA_GPA | P_RW_U);
    put(h, 0x3000 + 8 * (((IOVA + PAGE) >> 12) & 511), RO_GPA | P_U);
}

fn setup() -> Nested {
    let (mut h, dev, parent) = nesting_machine(DriverInfo::intel_vtd(), GUEST);
    build_stage1(&h);
    // struct iommu_hwpt_vtd_s1: flags, pgtbl_addr, addr_width, reserved.
    let mut data = Vec::new();
    data.extend_from_slice(&0u64.to_ne_bytes());
    data.extend_from_slice(&0u64.to_ne_bytes());
    data.extend_from_slice(&48u32.to_ne_bytes());
    data.extend_from_slice(&0u32.to_ne_bytes());
    let nested = h
        .ctx
        .hwpt_alloc(
            dev,
            HwptSpec::Nested {
                parent,
                data_type: IOMMU_HWPT_DATA_VTD_S1,
                payload: Payload::Bytes(&data),
            },
        )
        .unwrap();
    h.ctx.device_attach(dev, nested).unwrap();
    Nested { h, dev, nested }
}

/// `IOMMU_HWPT_INVALIDATE` with VT-d entries `{addr, npages, flags,
/// reserved}` of `entry_len` bytes; returns the outcome and `entry_num`.
fn invalidate(
    n: &mut Nested,
    entries: &[(u64, u64, u32, u32)],
    entry_len: u32,
    data_type: u32,
) -> (Result<i64, Errno>, u32) {
    for (i, &(addr, npages, flags, reserved)) in entries.iter().enumerate() {
        let mut e = vec![0u8; entry_len as usize];
        let mut full = Vec::new();
        full.extend_from_slice(&addr.to_ne_bytes());
        full.extend_from_slice(&npages.to_ne_bytes());
        full.extend_from_slice(&flags.to_ne_bytes());
        full.extend_from_slice(&reserved.to_ne_bytes());
        let k = e.len().min(full.len());
        e[..k].copy_from_slice(&full[..k]);
        n.h.write_mem(SCRATCH + i as u64 * u64::from(entry_len), &e);
    }
    let mut cmd = IommuHwptInvalidate {
        size: 32,
        hwpt_id: n.nested,
        data_uptr: SCRATCH,
        data_type,
        entry_len,
        entry_num: entries.len() as u32,
        ..Default::default()
    };
    let rc = n.h.raw(IOMMU_HWPT_INVALIDATE, cmd.as_mut_bytes());
    (rc, cmd.entry_num)
}

fn fault_of(r: Result<(), DmaError>) -> FaultReason {
    match r {
        Err(DmaError::Fault(f)) => f.reason,
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn device_dma_walks_the_guests_stage1_through_the_parent() {
    let mut n = setup();
    n.h.ctx
        .device_dma(n.dev, IOVA + 8, &mut b"nested".to_vec(), true)
        .unwrap();
    assert_eq!(n.h.read_mem(BUF + DATA_GPA + 8, 6), b"nested");
    let mut back = [0u8; 6];
    n.h.ctx
        .device_dma(n.dev, IOVA + 8, &mut back, false)
        .unwrap();
    assert_eq!(&back, b"nested");
    assert_eq!(
        fault_of(n.h.ctx.device_dma(n.dev, IOVA + PAGE, &mut [1], true)),
        FaultReason::Permission,
        "stage 1 maps that page read-only"
    );
    n.h.ctx
        .device_dma(n.dev, IOVA + PAGE, &mut [0], false)
        .unwrap();
    assert_eq!(
        fault_of(n.h.ctx.device_dma(n.dev, IOVA + 2 * PAGE, &mut [0], false)),
        FaultReason::NotPresent
    );
}

#[test]
fn the_stage1_iotlb_stays_stale_until_invalidated() {
    let mut n = setup();
    n.h.ctx.device_dma(n.dev, IOVA, &mut [0; 4], false).unwrap();
    // The guest removes the mapping without telling the IOMMU.
    put(&n.h, 0x3000 + 8 * ((IOVA >> 12) & 511), 0);
    n.h.ctx
        .device_dma(n.dev, IOVA, &mut [0; 4], false)
        .expect("stale but cached");

    // Malformed entries stop the array; entry_num counts those handled.
    assert_eq!(
        invalidate(&mut n, &[(IOVA, 1, 0, 0)], 24, 0xdead_beef),
        (Err(Errno::EINVAL), 0),
        "not the VT-d data type"
    );
    assert_eq!(
        invalidate(&mut n, &[(IOVA, 1, 0, 0)], 16, 0),
        (Err(Errno::EINVAL), 0)
    );
    assert_eq!(
        invalidate(&mut n, &[(IOVA, 1, 2, 0)], 24, 0),
        (Err(Errno::EOPNOTSUPP), 0)
    );
    assert_eq!(
        invalidate(&mut n, &[(IOVA, 1, 0, 1)], 24, 0),
        (Err(Errno::EOPNOTSUPP), 0)
    );
    assert_eq!(
        invalidate(&mut n, &[(IOVA + 1, 1, 0, 0)], 24, 0),
        (Err(Errno::EINVAL), 0)
    );
    assert_eq!(
        invalidate(&mut n, &[(IOVA, u64::MAX, 0, 0)], 24, 0),
        (Err(Errno::EINVAL), 0),
        "invalidate-all needs address 0"
    );
    n.h.ctx
        .device_dma(n.dev, IOVA, &mut [0; 4], false)
        .expect("nothing was invalidated");
    // A longer entry with a zero tail is fine; the second entry is bad.
    assert_eq!(
        invalidate(&mut n, &[(IOVA, 1, 1, 0), (IOVA, 1, 4, 0)], 32, 0),
        (Err(Errno::EOPNOTSUPP), 1)
    );
    assert_eq!(
        fault_of(n.h.ctx.device_dma(n.dev, IOVA, &mut [0; 4], false)),
        FaultReason::NotPresent,
        "the first entry dropped the stale translation"
    );

    // Re-map it elsewhere: the old cached page of the read-only mapping is
    // kept until an invalidate-all.
    n.h.ctx
        .device_dma(n.dev, IOVA + PAGE, &mut [0], false)
        .unwrap();
    put(
        &n.h,
        0x3000 + 8 * (((IOVA + PAGE) >> 12) & 511),
        DATA_GPA | 0x7,
    );
    assert_eq!(
        fault_of(n.h.ctx.device_dma(n.dev, IOVA + PAGE, &mut [1], true)),
        FaultReason::Permission,
        "stale read-only entry"
    );
    assert_eq!(
        invalidate(&mut n, &[(0, u64::MAX, 0, 0)], 24, 0),
        (Ok(0), 1)
    );
    n.h.ctx
        .device_dma(n.dev, IOVA + PAGE, &mut [7], true)
        .unwrap();
    assert_eq!(n.h.read_mem(BUF + DATA_GPA, 1), [7]);
}
