//! What a caller chooses never grows the engine without bound: huge
//! lengths over memory that is not there end with Linux's errno at once,
//! and mock devices made and dropped forever leave the machine its size.

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

#[test]
fn mock_devices_made_and_dropped_forever_keep_the_machine_its_size() {
    let shared = std::sync::Arc::new(softiommu_engine::pages::EngineState::default());
    let size = |shared: &softiommu_engine::pages::EngineState| {
        let core = shared.iommu.lock().unwrap();
        (core.topology().devices.len(), core.topology().groups.len())
    };
    let mut after_first = None;
    for round in 0..200 {
        let mut h = Harness::with_shared(shared.clone());
        let ioas = cmd::ioas_alloc(&mut h).unwrap();
        let md = cmd::mock_domain(&mut h, ioas).unwrap();
        cmd::destroy(&mut h, md.stdev).unwrap();
        drop(h);
        if round == 0 {
            after_first = Some(size(&shared));
        }
    }
    assert_eq!(Some(size(&shared)), after_first);
    // Closing a context with its mock devices unplugs them as well.
    for _ in 0..50 {
        let mut h = Harness::with_shared(shared.clone());
        let ioas = cmd::ioas_alloc(&mut h).unwrap();
        cmd::mock_domain(&mut h, ioas).unwrap();
        cmd::mock_domain(&mut h, ioas).unwrap();
    }
    let (devices, _) = size(&shared);
    assert!(devices <= after_first.unwrap().0 + 1, "{devices} devices");
}
