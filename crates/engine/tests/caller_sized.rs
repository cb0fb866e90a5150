//! Lengths a caller chooses never size what the engine allocates: huge
//! lengths over memory that is not there end with Linux's errno at once,
//! and payloads are read in bounded pieces.

mod common;

use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::iommufd::*;

#[test]
fn check_refs_over_a_huge_unmapped_length_faults_at_the_first_missing_page() {
    let mut h = Harness::new();
    let len = 1u64 << 44;
    assert_eq!(cmd::check_refs(&mut h, BUF, len, 0), Err(Errno::EFAULT));
    // A count that is wrong before the hole is EIO, as Linux checks in order.
    assert_eq!(cmd::check_refs(&mut h, BUF, len, 1), Err(Errno::EIO));
    // An overflowing range is EINVAL, before anything is read.
    assert_eq!(
        cmd::check_refs(&mut h, !(PAGE - 1), 2 * PAGE, 0),
        Err(Errno::EINVAL)
    );
}

#[test]
fn check_map_over_a_huge_length_stops_at_the_first_untranslated_step() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    let flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    let iova = cmd::ioas_map(&mut h, ioas, flags, BUF, PAGE, 0).unwrap();
    cmd::check_map(&mut h, md.hwpt, iova, PAGE, BUF).unwrap();
    assert_eq!(
        cmd::check_map(&mut h, md.hwpt, iova, 1 << 44, BUF),
        Err(Errno::EINVAL)
    );
}
