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

/// A harness whose context may hold `objects` objects and `ranges` ranges.
fn limited(objects: u32, ranges: u64) -> Harness {
    let shared = std::sync::Arc::new(softiommu_engine::pages::EngineState::default());
    *shared.context_limits.lock().unwrap() =
        softiommu_engine::limits::ContextLimits { objects, ranges };
    Harness::with_shared(shared)
}

#[test]
fn a_context_holds_at_most_its_limit_of_objects() {
    let mut h = limited(3, u64::MAX);
    let ids: Vec<u32> = (0..3).map(|_| cmd::ioas_alloc(&mut h).unwrap()).collect();
    assert_eq!(cmd::ioas_alloc(&mut h), Err(Errno::ENOMEM));
    // An object with a file of its own is refused before its file is made.
    assert_eq!(cmd::create_access(&mut h, ids[0], 0), Err(Errno::ENOMEM));
    assert_eq!(cmd::fault_alloc(&mut h).map(|_| ()), Err(Errno::ENOMEM));
    cmd::destroy(&mut h, ids[2]).unwrap();
    let again = cmd::ioas_alloc(&mut h).unwrap();
    assert_eq!(again, ids[2], "the freed id is used again");
    // Another context of the same engine has a limit of its own.
    let mut other = h.sibling();
    cmd::ioas_alloc(&mut other).unwrap();
}

#[test]
fn a_context_holds_at_most_its_limit_of_ranges_and_a_refusal_changes_nothing() {
    let mut h = limited(u32::MAX, 4);
    let a = cmd::ioas_alloc(&mut h).unwrap();
    let b = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, a, BUF, PAGE, 1 << 30).unwrap();
    cmd::ioas_map_fixed(&mut h, b, BUF, PAGE, 1 << 30).unwrap();
    cmd::add_reserved(&mut h, a, 2 << 30, PAGE).unwrap();
    cmd::ioas_allow_iovas(&mut h, b, &[(3 << 30, (4 << 30) - 1)]).unwrap();
    // Four held over two IOASes: each kind of range is refused.
    let before = h.ctx.objects().ioas(a).unwrap().iopt.snapshot();
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, a, BUF, PAGE, 5 << 30),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cmd::add_reserved(&mut h, a, 6 << 30, PAGE),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cmd::ioas_allow_iovas(&mut h, a, &[(7 << 30, (8 << 30) - 1)]),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cmd::ioas_copy(&mut h, cmd::FIXED_RW, (a, 9 << 30), (b, 1 << 30), PAGE),
        Err(Errno::ENOMEM)
    );
    assert_eq!(h.ctx.objects().ioas(a).unwrap().iopt.snapshot(), before);
    // Replacing allowed ranges by as many needs no room.
    cmd::ioas_allow_iovas(&mut h, b, &[(5 << 30, (6 << 30) - 1)]).unwrap();
    // Unmapping, or destroying an IOAS, gives its ranges back.
    cmd::ioas_unmap(&mut h, a, 1 << 30, PAGE).unwrap();
    cmd::ioas_map_fixed(&mut h, a, BUF, PAGE, 5 << 30).unwrap();
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, a, BUF, PAGE, 1 << 30),
        Err(Errno::ENOMEM)
    );
    cmd::destroy(&mut h, b).unwrap();
    let c = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, c, BUF, PAGE, 1 << 30).unwrap();
    cmd::ioas_map_fixed(&mut h, c, BUF, PAGE, 2 << 30).unwrap();
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, c, BUF, PAGE, 3 << 30),
        Err(Errno::ENOMEM)
    );
}

/// What the engine holds, to compare before and after a workload.
fn engine_size(shared: &softiommu_engine::pages::EngineState) -> (usize, usize, usize, usize) {
    let core = shared.iommu.lock().unwrap();
    (
        core.domain_count(),
        core.topology().devices.len(),
        shared.pinned_frames(),
        shared.phys.lock().unwrap().chunks(),
    )
}

#[test]
fn contexts_made_and_dropped_forever_leave_the_engine_its_size() {
    let shared = std::sync::Arc::new(softiommu_engine::pages::EngineState::default());
    let mut after_warmup = None;
    for round in 0..300 {
        let mut h = Harness::with_shared(shared.clone());
        let ioas = cmd::ioas_alloc(&mut h).unwrap();
        let iova = cmd::ioas_map_fixed(&mut h, ioas, BUF, 4 * PAGE, 1 << 24).unwrap();
        let md = cmd::mock_domain(&mut h, ioas).unwrap();
        let hwpt = cmd::hwpt_alloc(&mut h, md.idev, ioas, 0).unwrap();
        cmd::mock_domain_replace(&mut h, md.stdev, hwpt).unwrap();
        let other = cmd::ioas_alloc(&mut h).unwrap();
        cmd::ioas_copy(
            &mut h,
            cmd::FIXED_RW,
            (other, 1 << 24),
            (ioas, iova),
            4 * PAGE,
        )
        .unwrap();
        cmd::add_reserved(&mut h, other, 1 << 40, PAGE).unwrap();
        // Half the rounds tidy up; the others leave it all to the close.
        if round % 2 == 0 {
            cmd::destroy(&mut h, md.stdev).unwrap();
        }
        drop(h);
        if round == 10 {
            after_warmup = Some(engine_size(&shared));
        }
    }
    assert_eq!(Some(engine_size(&shared)), after_warmup);
}
