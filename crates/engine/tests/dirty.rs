//! Dirty tracking through the raw entry point, as the selftest drives it:
//! marks set in the mock domain's page table come back in the user bitmap,
//! cleared unless NO_CLEAR.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;

fn set_tracking(h: &mut Harness, hwpt: u32, on: bool) -> Result<i64, Errno> {
    let mut c = IommuHwptSetDirtyTracking {
        size: 16,
        flags: u32::from(on),
        hwpt_id: hwpt,
        reserved: 0,
    };
    h.cmd(IOMMU_HWPT_SET_DIRTY_TRACKING, &mut c)
}

fn get_bitmap(
    h: &mut Harness,
    hwpt: u32,
    iova: u64,
    length: u64,
    page_size: u64,
    flags: u32,
) -> Result<Vec<u8>, Errno> {
    let bytes = (length / page_size).div_ceil(8) as usize;
    h.write_mem(SCRATCH + 0x4000, &vec![0; bytes]);
    let mut c = IommuHwptGetDirtyBitmap {
        size: 48,
        hwpt_id: hwpt,
        flags,
        reserved: 0,
        iova,
        length,
        page_size,
        data: SCRATCH + 0x4000,
    };
    h.cmd(IOMMU_HWPT_GET_DIRTY_BITMAP, &mut c)?;
    Ok(h.read_mem(SCRATCH + 0x4000, bytes))
}

#[test]
fn dirty_bits_round_trip_through_the_page_table() {
    let mut h = Harness::new();
    let mut a = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    h.cmd(IOMMU_IOAS_ALLOC, &mut a).unwrap();
    let ioas = a.out_ioas_id;
    let md: t::TestMockDomain = test_cmd(&mut h, t::op::MOCK_DOMAIN, ioas, |_| ())
        .unwrap()
        .payload_as();
    let mut alloc = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut alloc).unwrap();
    let hwpt = alloc.out_hwpt_id;
    test_cmd(&mut h, t::op::MOCK_DOMAIN_REPLACE, md.out_stdev_id, |c| {
        c.set_payload(&t::TestOneId { id: hwpt })
    })
    .unwrap();
    let iova = t::MOCK_APERTURE_START;
    let len = 64 * PAGE;
    let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    let mut m = IommuIoasMap {
        size: 40,
        flags,
        ioas_id: ioas,
        reserved: 0,
        user_va: BUF,
        length: len,
        iova,
    };
    h.cmd(IOMMU_IOAS_MAP, &mut m).unwrap();

    assert_eq!(
        set_tracking(&mut h, md.out_hwpt_id, true),
        Err(Errno::ENOENT),
        "the automatic HWPT went with the replace"
    );
    let mark = |h: &mut Harness, bits: &[u8]| {
        h.write_mem(SCRATCH, bits);
        test_cmd(h, t::op::DIRTY, hwpt, |c| {
            c.set_payload(&t::TestDirty {
                iova,
                length: len,
                page_size: PAGE,
                uptr: SCRATCH,
                ..Default::default()
            })
        })
        .map(|c| c.payload_as::<t::TestDirty>().out_nr_dirty)
    };
    let pattern = [0b1010_0101u8, 0, 0xff, 1, 0, 0, 0, 0x80];
    assert_eq!(
        mark(&mut h, &pattern),
        Err(Errno::EINVAL),
        "tracking is off"
    );
    set_tracking(&mut h, hwpt, true).unwrap();
    assert_eq!(mark(&mut h, &pattern), Ok(14));
    assert_eq!(
        get_bitmap(
            &mut h,
            hwpt,
            iova,
            len,
            PAGE,
            IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR
        )
        .unwrap(),
        pattern
    );
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        pattern,
        "NO_CLEAR left them"
    );
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        vec![0; 8],
        "the read cleared them"
    );
    // A coarser bitmap page covers several small ones.
    mark(&mut h, &[0b0010_0000, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, 4 * PAGE, 0).unwrap(),
        vec![0b0000_0010, 0]
    );
    // Enabling again starts from a clean snapshot.
    mark(&mut h, &pattern).unwrap();
    set_tracking(&mut h, hwpt, true).unwrap();
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        vec![0; 8]
    );

    assert_eq!(
        get_bitmap(&mut h, hwpt, iova + 1, len, PAGE, 0),
        Err(Errno::EINVAL),
        "unaligned"
    );
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len + PAGE, PAGE, 0),
        Err(Errno::EINVAL),
        "past the mapped range"
    );
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, 3 * PAGE, 0),
        Err(Errno::EINVAL),
        "page size"
    );
    assert_eq!(
        get_bitmap(&mut h, hwpt, iova, len, PAGE, 4),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        get_bitmap(&mut h, ioas, iova, len, PAGE, 0),
        Err(Errno::ENOENT),
        "an IOAS is not a HWPT"
    );
    let mut bad = IommuHwptSetDirtyTracking {
        size: 16,
        flags: 2,
        hwpt_id: hwpt,
        reserved: 0,
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_SET_DIRTY_TRACKING, &mut bad),
        Err(Errno::EOPNOTSUPP)
    );
    // A HWPT made without DIRTY_TRACKING cannot track.
    let mut plain = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: ioas,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut plain).unwrap();
    assert_eq!(
        set_tracking(&mut h, plain.out_hwpt_id, true),
        Err(Errno::EOPNOTSUPP)
    );
    set_tracking(&mut h, hwpt, false).unwrap();
}
