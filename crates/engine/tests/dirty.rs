//! Dirty tracking through the raw entry point, as the selftest drives it:
//! marks set in the mock domain's page table come back in the user bitmap,
//! cleared unless NO_CLEAR.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;

#[test]
fn dirty_bits_round_trip_through_the_page_table() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    let hwpt = cmd::hwpt_alloc(&mut h, md.idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap();
    cmd::mock_domain_replace(&mut h, md.stdev, hwpt).unwrap();
    let iova = t::MOCK_APERTURE_START;
    let len = 64 * PAGE;
    cmd::ioas_map_fixed(&mut h, ioas, BUF, len, iova).unwrap();

    assert_eq!(
        cmd::set_dirty_tracking(&mut h, md.hwpt, true),
        Err(Errno::ENOENT),
        "the automatic HWPT went with the replace"
    );
    let mark = |h: &mut Harness, bits: &[u8]| {
        h.write_mem(SCRATCH, bits);
        cmd::mock_dirty(h, hwpt, iova, len, PAGE, SCRATCH)
    };
    let pattern = [0b1010_0101u8, 0, 0xff, 1, 0, 0, 0, 0x80];
    assert_eq!(
        mark(&mut h, &pattern),
        Err(Errno::EINVAL),
        "tracking is off"
    );
    cmd::set_dirty_tracking(&mut h, hwpt, true).unwrap();
    assert_eq!(mark(&mut h, &pattern), Ok(14));
    assert_eq!(
        cmd::get_dirty_bitmap(
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
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        pattern,
        "NO_CLEAR left them"
    );
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        vec![0; 8],
        "the read cleared them"
    );
    // A coarser bitmap page covers several small ones.
    mark(&mut h, &[0b0010_0000, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, 4 * PAGE, 0).unwrap(),
        vec![0b0000_0010, 0]
    );
    // Enabling again starts from a clean snapshot.
    mark(&mut h, &pattern).unwrap();
    cmd::set_dirty_tracking(&mut h, hwpt, true).unwrap();
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, PAGE, 0).unwrap(),
        vec![0; 8]
    );

    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova + 1, len, PAGE, 0),
        Err(Errno::EINVAL),
        "unaligned"
    );
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len + PAGE, PAGE, 0),
        Err(Errno::EINVAL),
        "past the mapped range"
    );
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, 3 * PAGE, 0),
        Err(Errno::EINVAL),
        "page size"
    );
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, hwpt, iova, len, PAGE, 4),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        cmd::get_dirty_bitmap(&mut h, ioas, iova, len, PAGE, 0),
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
    let plain = cmd::hwpt_alloc(&mut h, md.idev, ioas, 0).unwrap();
    assert_eq!(
        cmd::set_dirty_tracking(&mut h, plain, true),
        Err(Errno::EOPNOTSUPP)
    );
    cmd::set_dirty_tracking(&mut h, hwpt, false).unwrap();
}
