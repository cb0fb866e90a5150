//! The selftest's mock devices through the raw entry point: `MOCK_DOMAIN`,
//! `MD_CHECK_MAP`, `MOCK_DOMAIN_REPLACE`, `IOMMU_GET_HW_INFO` and `IOMMU_HWPT_ALLOC`.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use zerocopy::IntoBytes;

fn mock_domain(h: &mut Harness, pt: u32) -> Result<t::TestMockDomain, Errno> {
    test_cmd(h, t::op::MOCK_DOMAIN, pt, |_| ()).map(|c| c.payload_as())
}

fn map(h: &mut Harness, ioas: u32, va: u64, len: u64, iova: u64) -> Result<i64, Errno> {
    let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    let mut c = IommuIoasMap {
        size: 40,
        flags,
        ioas_id: ioas,
        reserved: 0,
        user_va: va,
        length: len,
        iova,
    };
    h.cmd(IOMMU_IOAS_MAP, &mut c)
}

fn check_map(
    h: &mut Harness,
    hwpt: u32,
    iova: u64,
    len: u64,
    uptr: u64,
) -> Result<IommuTestCmd, Errno> {
    test_cmd(h, t::op::MD_CHECK_MAP, hwpt, |c| {
        c.set_payload(&t::TestCheckMap {
            iova,
            length: len,
            uptr,
        })
    })
}

#[test]
fn a_mock_domain_mirrors_the_ioas_and_checks_its_map() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let md = mock_domain(&mut h, ioas).unwrap();
    assert_eq!(
        (md.out_stdev_id, md.out_idev_id, md.out_hwpt_id),
        (2, 3, 4),
        "objects made in Linux's order"
    );
    let mut r = IommuIoasIovaRanges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 1,
        reserved: 0,
        allowed_iovas: SCRATCH,
        out_iova_alignment: 0,
    };
    h.cmd(IOMMU_IOAS_IOVA_RANGES, &mut r).unwrap();
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
    map(&mut h, ioas, BUF, 8 * PAGE, iova).unwrap();
    check_map(&mut h, md.out_hwpt_id, iova, 8 * PAGE, BUF).unwrap();
    assert_eq!(
        check_map(&mut h, md.out_hwpt_id, iova, 8 * PAGE, BUF + PAGE).map(|_| ()),
        Err(Errno::EINVAL),
        "wrong memory"
    );
    assert_eq!(
        check_map(&mut h, md.out_hwpt_id, iova + 1, 2048, BUF).map(|_| ()),
        Err(Errno::EINVAL),
        "unaligned"
    );
    assert_eq!(
        check_map(&mut h, md.out_hwpt_id, iova + 8 * PAGE, 2048, BUF).map(|_| ()),
        Err(Errno::EINVAL),
        "unmapped"
    );
    let refs = |h: &mut Harness, n| {
        test_cmd(h, t::op::MD_CHECK_REFS, 0, |c| {
            c.set_payload(&t::TestCheckRefs {
                length: 8 * PAGE,
                uptr: BUF,
                refs: n,
                pad: 0,
            })
        })
    };
    refs(&mut h, 1).unwrap();
    assert_eq!(
        map(&mut h, ioas, BUF, PAGE, 0x1000),
        Err(Errno::EINVAL),
        "below the aperture"
    );

    assert_eq!(
        destroy(&mut h, md.out_idev_id),
        Err(Errno::EBUSY),
        "the selftest object holds the device"
    );
    assert_eq!(
        destroy(&mut h, md.out_hwpt_id),
        Err(Errno::EBUSY),
        "attached"
    );
    assert_eq!(destroy(&mut h, ioas), Err(Errno::EBUSY), "has a HWPT");
    destroy(&mut h, md.out_stdev_id).unwrap();
    assert_eq!(
        destroy(&mut h, md.out_hwpt_id),
        Err(Errno::ENOENT),
        "the automatic HWPT went with its device"
    );
    refs(&mut h, 0).unwrap();
    destroy(&mut h, ioas).unwrap();
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn mock_domain_replace_moves_to_another_ioas_or_hwpt() {
    let mut h = Harness::new();
    let a = alloc(&mut h);
    let b = alloc(&mut h);
    let md = mock_domain(&mut h, a).unwrap();
    let replace = |h: &mut Harness, stdev: u32, pt: u32| {
        test_cmd(h, t::op::MOCK_DOMAIN_REPLACE, stdev, |c| {
            c.set_payload(&t::TestOneId { id: pt })
        })
        .map(|c| c.payload_as::<t::TestOneId>().id)
    };
    let to_b = replace(&mut h, md.out_stdev_id, b).unwrap();
    assert_ne!(to_b, md.out_hwpt_id);
    assert_eq!(
        destroy(&mut h, md.out_hwpt_id),
        Err(Errno::ENOENT),
        "the old automatic HWPT is gone"
    );
    let mut alloc_hwpt = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: a,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut alloc_hwpt).unwrap();
    let manual = alloc_hwpt.out_hwpt_id;
    assert_eq!(replace(&mut h, md.out_stdev_id, manual), Ok(manual));
    assert_eq!(destroy(&mut h, manual), Err(Errno::EBUSY));
    assert_eq!(replace(&mut h, 99, a), Err(Errno::ENOENT));
    destroy(&mut h, md.out_stdev_id).unwrap();
    destroy(&mut h, manual).unwrap();
}

#[test]
fn hw_info_and_hwpt_alloc_follow_the_driver() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let md = mock_domain(&mut h, ioas).unwrap();
    h.write_mem(SCRATCH, &[0xaa; 32]);
    let mut info = IommuHwInfo {
        size: 40,
        dev_id: md.out_idev_id,
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
        dev_id: md.out_idev_id,
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
        dev_id: md.out_idev_id,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_NEST_PARENT,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut a).unwrap();
    let parent = a.out_hwpt_id;
    a.flags = 1 << 9;
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut a), Err(Errno::EOPNOTSUPP));
    a.flags = 0;
    a.pt_id = md.out_stdev_id;
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut a),
        Err(Errno::EINVAL),
        "not an IOAS or HWPT"
    );
    a.pt_id = md.out_hwpt_id;
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
    let on_nested = mock_domain(&mut h, nested).unwrap();
    assert_eq!(on_nested.out_hwpt_id, nested);
    assert_eq!(destroy(&mut h, parent), Err(Errno::EBUSY));
    assert_eq!(destroy(&mut h, nested), Err(Errno::EBUSY));
    destroy(&mut h, on_nested.out_stdev_id).unwrap();
    destroy(&mut h, nested).unwrap();
    destroy(&mut h, parent).unwrap();
    // A device without dirty tracking refuses a dirty-tracking HWPT.
    let nd = test_cmd(&mut h, t::op::MOCK_DOMAIN_FLAGS, ioas, |c| {
        c.set_payload(&t::TestMockDomain {
            dev_flags: t::MOCK_FLAGS_DEVICE_NO_DIRTY,
            ..Default::default()
        })
    })
    .unwrap()
    .payload_as::<t::TestMockDomain>();
    let mut d = IommuHwptAlloc {
        size: 48,
        dev_id: nd.out_idev_id,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut d), Err(Errno::EOPNOTSUPP));
    // Closing releases everything.
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
    assert_eq!(h.shared.pinned_frames(), 0);
}

#[test]
fn vfio_type1_v1_splits_mappings_a_domain_holds() {
    use softiommu_uapi::vfio::*;
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let md = mock_domain(&mut h, ioas).unwrap();
    let mut v = IommuVfioIoas {
        size: 12,
        ioas_id: ioas,
        op: IOMMU_VFIO_IOAS_SET,
        reserved: 0,
    };
    h.cmd(IOMMU_VFIO_IOAS, &mut v).unwrap();
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
    check_map(&mut h, md.out_hwpt_id, base, 2 * PAGE, BUF).unwrap();
    check_map(
        &mut h,
        md.out_hwpt_id,
        base + 4 * PAGE,
        4 * PAGE,
        BUF + 4 * PAGE,
    )
    .unwrap();
    assert!(
        check_map(
            &mut h,
            md.out_hwpt_id,
            base + 2 * PAGE,
            2048,
            BUF + 2 * PAGE
        )
        .is_err(),
        "the hole is unmapped"
    );
    // Type1 (v1) cannot be selected once a domain holds mappings.
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU),
        Ok(0),
        "already v1: nothing changes"
    );
    let mut opt = IommuOption {
        size: 24,
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: IOMMU_OPTION_OP_SET,
        reserved: 0,
        object_id: ioas,
        val64: 1,
    };
    h.cmd(IOMMU_OPTION, &mut opt).unwrap();
    opt.val64 = 0;
    assert_eq!(
        h.cmd(IOMMU_OPTION, &mut opt),
        Err(Errno::EINVAL),
        "domains with mappings may hold large pages"
    );
}

#[test]
fn a_nested_mock_domain_keeps_an_iotlb_that_invalidation_clears() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let md = mock_domain(&mut h, ioas).unwrap();
    let mut parent = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut parent).unwrap();
    h.write_mem(SCRATCH, &t::IOMMU_TEST_IOTLB_DEFAULT.to_ne_bytes());
    let mut nested = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: parent.out_hwpt_id,
        data_type: t::IOMMU_HWPT_DATA_SELFTEST,
        data_len: 4,
        data_uptr: SCRATCH,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut nested).unwrap();
    let hwpt = nested.out_hwpt_id;
    let iotlb = |h: &mut Harness, id: u32, value: u32| {
        test_cmd(h, t::op::MD_CHECK_IOTLB, hwpt, |c| {
            c.set_payload(&t::TestCheckCache { id, value })
        })
        .map(|_| ())
    };
    for id in 0..4 {
        iotlb(&mut h, id, t::IOMMU_TEST_IOTLB_DEFAULT).unwrap();
    }
    assert_eq!(iotlb(&mut h, 4, 0), Err(Errno::EINVAL));
    let invalidate = |h: &mut Harness, entries: &[[u32; 2]], len: u32, dtype: u32| {
        let bytes: Vec<u8> = entries
            .iter()
            .flat_map(|e| e.iter().flat_map(|w| w.to_ne_bytes()))
            .collect();
        h.write_mem(SCRATCH + 0x100, &bytes);
        let mut c = IommuHwptInvalidate {
            size: 32,
            hwpt_id: hwpt,
            data_uptr: SCRATCH + 0x100,
            data_type: dtype,
            entry_len: len,
            entry_num: entries.len() as u32,
            reserved: 0,
        };
        let r = h.cmd(IOMMU_HWPT_INVALIDATE, &mut c).map(|_| ());
        (r, c.entry_num)
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
        hwpt_id: parent.out_hwpt_id,
        data_type: sel,
        entry_len: 8,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_INVALIDATE, &mut on_parent),
        Err(Errno::EINVAL),
        "a paging HWPT has no user cache"
    );
    let mut both = IommuHwptAlloc {
        size: 48,
        dev_id: md.out_idev_id,
        pt_id: ioas,
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut both), Err(Errno::EOPNOTSUPP));
}
