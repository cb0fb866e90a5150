//! The selftest's mock devices through the raw entry point: `MOCK_DOMAIN`,
//! `MD_CHECK_MAP`, `MOCK_DOMAIN_REPLACE`, `IOMMU_GET_HW_INFO` and `IOMMU_HWPT_ALLOC`.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;
use zerocopy::IntoBytes;

#[test]
fn a_mock_domain_mirrors_the_ioas_and_checks_its_map() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    assert_eq!(
        (md.stdev, md.idev, md.hwpt),
        (2, 3, 4),
        "objects made in Linux's order"
    );
    let (ranges, r) = cmd::ioas_iova_ranges(&mut h, ioas, 1);
    ranges.unwrap();
    assert_eq!(r.out_iova_alignment, t::MOCK_PAGE_SIZE);
    assert_eq!(
        h.read_mem(SCRATCH, 16),
        IommuIovaRange {
            start: t::MOCK_APERTURE_START,
            last: t::MOCK_APERTURE_LAST
        }
        .as_bytes()
    );

    let iova = t::MOCK_APERTURE_START;
    cmd::ioas_map_fixed(&mut h, ioas, BUF, 8 * PAGE, iova).unwrap();
    cmd::check_map(&mut h, md.hwpt, iova, 8 * PAGE, BUF).unwrap();
    assert_eq!(
        cmd::check_map(&mut h, md.hwpt, iova, 8 * PAGE, BUF + PAGE),
        Err(Errno::EINVAL),
        "wrong memory"
    );
    assert_eq!(
        cmd::check_map(&mut h, md.hwpt, iova + 1, 2048, BUF),
        Err(Errno::EINVAL),
        "unaligned"
    );
    assert_eq!(
        cmd::check_map(&mut h, md.hwpt, iova + 8 * PAGE, 2048, BUF),
        Err(Errno::EINVAL),
        "unmapped"
    );
    cmd::check_refs(&mut h, BUF, 8 * PAGE, 1).unwrap();
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, 0x1000),
        Err(Errno::EINVAL),
        "below the aperture"
    );

    assert_eq!(
        cmd::destroy(&mut h, md.idev),
        Err(Errno::EBUSY),
        "the selftest object holds the device"
    );
    assert_eq!(cmd::destroy(&mut h, md.hwpt), Err(Errno::EBUSY), "attached");
    assert_eq!(cmd::destroy(&mut h, ioas), Err(Errno::EBUSY), "has a HWPT");
    cmd::destroy(&mut h, md.stdev).unwrap();
    assert_eq!(
        cmd::destroy(&mut h, md.hwpt),
        Err(Errno::ENOENT),
        "the automatic HWPT went with its device"
    );
    cmd::check_refs(&mut h, BUF, 8 * PAGE, 0).unwrap();
    cmd::destroy(&mut h, ioas).unwrap();
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn mock_domain_replace_moves_to_another_ioas_or_hwpt() {
    let mut h = Harness::new();
    let a = cmd::ioas_alloc(&mut h).unwrap();
    let b = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, a).unwrap();
    let to_b = cmd::mock_domain_replace(&mut h, md.stdev, b).unwrap();
    assert_ne!(to_b, md.hwpt);
    assert_eq!(
        cmd::destroy(&mut h, md.hwpt),
        Err(Errno::ENOENT),
        "the old automatic HWPT is gone"
    );
    let manual = cmd::hwpt_alloc(&mut h, md.idev, a, 0).unwrap();
    assert_eq!(
        cmd::mock_domain_replace(&mut h, md.stdev, manual),
        Ok(manual)
    );
    assert_eq!(cmd::destroy(&mut h, manual), Err(Errno::EBUSY));
    assert_eq!(cmd::mock_domain_replace(&mut h, 99, a), Err(Errno::ENOENT));
    cmd::destroy(&mut h, md.stdev).unwrap();
    cmd::destroy(&mut h, manual).unwrap();
}

#[test]
fn hw_info_and_hwpt_alloc_follow_the_driver() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    h.write_mem(SCRATCH, &[0xaa; 32]);
    let mut info = IommuHwInfo {
        size: 40,
        dev_id: md.idev,
        data_len: 16,
        data_uptr: SCRATCH,
        ..Default::default()
    };
    h.cmd(IOMMU_GET_HW_INFO, &mut info).unwrap();
    assert_eq!(info.data_type, t::IOMMU_HW_INFO_TYPE_SELFTEST);
    assert_eq!(info.data_len, 8);
    assert_eq!(info.out_capabilities, IOMMU_HW_CAP_DIRTY_TRACKING);
    let mut want = t::IommuTestHwInfo {
        flags: 0,
        test_reg: t::IOMMU_HW_INFO_SELFTEST_REGVAL,
    }
    .as_bytes()
    .to_vec();
    want.extend_from_slice(&[0; 8]);
    want.extend_from_slice(&[0xaa; 16]);
    assert_eq!(
        h.read_mem(SCRATCH, 32),
        want,
        "data, then zeros up to data_len, then untouched"
    );
    let mut wrong = IommuHwInfo {
        size: 40,
        dev_id: md.idev,
        flags: IOMMU_HW_INFO_FLAG_INPUT_TYPE,
        data_type: 1,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_GET_HW_INFO, &mut wrong), Err(Errno::EOPNOTSUPP));
    let mut ioas_as_dev = IommuHwInfo {
        size: 40,
        dev_id: ioas,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_GET_HW_INFO, &mut ioas_as_dev),
        Err(Errno::ENOENT)
    );

    let mut a = IommuHwptAlloc {
        size: 48,
        dev_id: md.idev,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut a).unwrap();
    let parent = a.out_hwpt_id;
    a.flags = 1 << 9;
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut a), Err(Errno::EOPNOTSUPP));
    a.flags = 0;
    a.pt_id = md.stdev;
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut a),
        Err(Errno::EINVAL),
        "not an IOAS or HWPT"
    );
    a.pt_id = md.hwpt;
    a.data_type = t::IOMMU_HWPT_DATA_SELFTEST;
    a.data_len = 4;
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut a),
        Err(Errno::EINVAL),
        "an automatic HWPT cannot be a parent"
    );
    a.pt_id = parent;
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut a),
        Err(Errno::EFAULT),
        "the payload pointer is checked last"
    );
    h.write_mem(SCRATCH, &[0; 16]);
    h.write_mem(SCRATCH, &t::IOMMU_TEST_IOTLB_DEFAULT.to_ne_bytes());
    a.data_uptr = SCRATCH;
    h.cmd(IOMMU_HWPT_ALLOC, &mut a).unwrap();
    let nested = a.out_hwpt_id;
    let mut short = IommuHwptAlloc { data_len: 2, ..a };
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut short),
        Err(Errno::EINVAL),
        "payload below its minimum"
    );
    h.write_mem(SCRATCH + 4, &[1]);
    let mut long = IommuHwptAlloc { data_len: 8, ..a };
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut long),
        Err(Errno::E2BIG),
        "non-zero bytes past the payload"
    );
    let mut wrong = IommuHwptAlloc {
        data_type: IOMMU_HWPT_DATA_VTD_S1,
        ..a
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut wrong),
        Err(Errno::EOPNOTSUPP),
        "not the mock's type"
    );
    let mut flagged = IommuHwptAlloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
        ..a
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut flagged),
        Err(Errno::EOPNOTSUPP)
    );
    // A mock device attaches to the nested HWPT; its parent is busy meanwhile.
    let on_nested = cmd::mock_domain(&mut h, nested).unwrap();
    assert_eq!(on_nested.hwpt, nested);
    assert_eq!(cmd::destroy(&mut h, parent), Err(Errno::EBUSY));
    assert_eq!(cmd::destroy(&mut h, nested), Err(Errno::EBUSY));
    cmd::destroy(&mut h, on_nested.stdev).unwrap();
    cmd::destroy(&mut h, nested).unwrap();
    cmd::destroy(&mut h, parent).unwrap();
    // A device without dirty tracking refuses a dirty-tracking HWPT.
    let nd = cmd::mock_domain_flags(&mut h, ioas, t::MOCK_FLAGS_DEVICE_NO_DIRTY).unwrap();
    assert_eq!(
        cmd::hwpt_alloc(&mut h, nd.idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING),
        Err(Errno::EOPNOTSUPP)
    );
    // Closing releases everything.
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
    assert_eq!(h.shared.pinned_frames(), 0);
}

#[test]
fn vfio_type1_v1_splits_mappings_a_domain_holds() {
    use softiommu_uapi::vfio::*;
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU).unwrap();
    let mut info = VfioIommuType1Info {
        argsz: 24,
        ..Default::default()
    };
    h.cmd(VFIO_IOMMU_GET_INFO, &mut info).unwrap();
    assert_eq!(
        info.iova_pgsizes, PAGE,
        "the mock's 2 KiB pages are reported as PAGE_SIZE"
    );
    let base = t::MOCK_APERTURE_START;
    let mut m = VfioIommuType1DmaMap {
        argsz: 32,
        flags: 3,
        vaddr: BUF,
        iova: base,
        size: 8 * PAGE,
    };
    h.cmd(VFIO_IOMMU_MAP_DMA, &mut m).unwrap();
    let mut u = VfioIommuType1DmaUnmap {
        argsz: 24,
        flags: 0,
        iova: base + 2 * PAGE,
        size: 2 * PAGE,
    };
    h.cmd(VFIO_IOMMU_UNMAP_DMA, &mut u).unwrap();
    assert_eq!(u.size, 2 * PAGE);
    cmd::check_map(&mut h, md.hwpt, base, 2 * PAGE, BUF).unwrap();
    cmd::check_map(&mut h, md.hwpt, base + 4 * PAGE, 4 * PAGE, BUF + 4 * PAGE).unwrap();
    assert!(
        cmd::check_map(&mut h, md.hwpt, base + 2 * PAGE, 2048, BUF + 2 * PAGE).is_err(),
        "the hole is unmapped"
    );
    // Type1 (v1) cannot be selected once a domain holds mappings.
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU),
        Ok(0),
        "already v1: nothing changes"
    );
    cmd::set_huge_pages(&mut h, ioas, true).unwrap();
    assert_eq!(
        cmd::set_huge_pages(&mut h, ioas, false),
        Err(Errno::EINVAL),
        "domains with mappings may hold large pages"
    );
}

#[test]
fn a_nested_mock_domain_keeps_an_iotlb_that_invalidation_clears() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    let parent = cmd::hwpt_alloc(&mut h, md.idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT).unwrap();
    let hwpt = cmd::hwpt_alloc_nested(&mut h, md.idev, parent, 0, 0).unwrap();
    let iotlb = |h: &mut Harness, id: u32, value: u32| cmd::check_iotlb(h, hwpt, id, value);
    for id in 0..4 {
        iotlb(&mut h, id, t::IOMMU_TEST_IOTLB_DEFAULT).unwrap();
    }
    assert_eq!(iotlb(&mut h, 4, 0), Err(Errno::EINVAL));
    let invalidate = |h: &mut Harness, entries: &[[u32; 2]], len: u32, dtype: u32| {
        cmd::hwpt_invalidate(h, hwpt, dtype, len, entries)
    };
    let sel = t::IOMMU_HWPT_INVALIDATE_DATA_SELFTEST;
    assert_eq!(
        invalidate(&mut h, &[], 8, sel),
        (Ok(()), 0),
        "no entries: the type is checked only"
    );
    assert_eq!(
        invalidate(&mut h, &[[0, 1]], 8, 0x1234),
        (Err(Errno::EINVAL), 0)
    );
    assert_eq!(
        invalidate(&mut h, &[[0, 1]], 9, sel),
        (Err(Errno::EINVAL), 0),
        "entry_len must be exact"
    );
    assert_eq!(
        invalidate(&mut h, &[[0, 1], [4, 0]], 8, sel),
        (Err(Errno::EOPNOTSUPP), 1),
        "the first entry applied"
    );
    iotlb(&mut h, 1, 0).unwrap();
    iotlb(&mut h, 2, t::IOMMU_TEST_IOTLB_DEFAULT).unwrap();
    assert_eq!(
        invalidate(&mut h, &[[0, 7]], 8, sel),
        (Err(Errno::EINVAL), 0),
        "iotlb id out of range"
    );
    assert_eq!(
        invalidate(&mut h, &[[t::IOMMU_TEST_INVALIDATE_FLAG_ALL, 0]], 8, sel),
        (Ok(()), 1)
    );
    for id in 0..4 {
        iotlb(&mut h, id, 0).unwrap();
    }
    let mut on_parent = IommuHwptInvalidate {
        size: 32,
        hwpt_id: parent,
        data_type: sel,
        entry_len: 8,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_INVALIDATE, &mut on_parent),
        Err(Errno::EINVAL),
        "a paging HWPT has no user cache"
    );
    let both = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID;
    assert_eq!(
        cmd::hwpt_alloc(&mut h, md.idev, ioas, both),
        Err(Errno::EOPNOTSUPP)
    );
}
