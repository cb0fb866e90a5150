//! vIOMMUs and vDEVICEs through the raw entry point: allocation rules,
//! nested HWPTs made through a vIOMMU, cache invalidation by virtual device
//! id, and a vDEVICE going with its device.

mod common;
use common::*;
use softiommu_engine::memory::CallerFiles;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;
use zerocopy::IntoBytes;

struct Setup {
    ioas: u32,
    devs: [(u32, u32); 2],
    parent: u32,
}

/// Two mock devices on one IOAS and a nest parent over it.
fn setup(h: &mut Harness) -> Setup {
    let ioas = cmd::ioas_alloc(h).unwrap();
    let mut devs = [(0, 0); 2];
    for d in &mut devs {
        let md = cmd::mock_domain(h, ioas).unwrap();
        *d = (md.idev, md.stdev);
    }
    let parent = cmd::hwpt_alloc(h, devs[0].0, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT).unwrap();
    Setup { ioas, devs, parent }
}

/// Invalidates through `viommu` with `{flags, vdev_id, cache_id}` entries;
/// returns the outcome and how many entries were handled.
fn invalidate(
    h: &mut Harness,
    viommu: u32,
    entries: &[[u32; 3]],
    entry_len: u32,
    data_type: u32,
) -> (Result<(), Errno>, u32) {
    cmd::hwpt_invalidate(h, viommu, data_type, entry_len, entries)
}

#[test]
fn a_viommu_needs_a_nest_parent_and_the_drivers_type() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let dev = s.devs[0].0;
    let ty = t::IOMMU_VIOMMU_TYPE_SELFTEST;
    assert_eq!(
        cmd::viommu_alloc(&mut h, dev, s.parent, IOMMU_VIOMMU_TYPE_DEFAULT),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        cmd::viommu_alloc(&mut h, dev, s.parent, IOMMU_VIOMMU_TYPE_ARM_SMMUV3),
        Err(Errno::EOPNOTSUPP),
        "not the mock driver's type"
    );
    assert_eq!(
        cmd::viommu_alloc(&mut h, 999, s.parent, ty),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        cmd::viommu_alloc(&mut h, dev, s.ioas, ty),
        Err(Errno::ENOENT),
        "an IOAS is no HWPT"
    );
    let plain = cmd::hwpt_alloc(&mut h, dev, s.ioas, 0).unwrap();
    assert_eq!(
        cmd::viommu_alloc(&mut h, dev, plain, ty),
        Err(Errno::EINVAL),
        "not a nest parent"
    );
    let mut bad = IommuViommuAlloc {
        size: 32,
        flags: 1,
        viommu_type: ty,
        dev_id: dev,
        hwpt_id: s.parent,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_VIOMMU_ALLOC, &mut bad), Err(Errno::EOPNOTSUPP));
    let viommu = cmd::viommu_alloc(&mut h, dev, s.parent, ty).unwrap();
    assert_eq!(
        cmd::destroy(&mut h, s.parent),
        Err(Errno::EBUSY),
        "the vIOMMU holds its stage 2"
    );
    cmd::destroy(&mut h, viommu).unwrap();
    cmd::destroy(&mut h, s.parent).unwrap();
}

#[test]
fn vdevices_name_devices_inside_a_viommu_and_invalidation_reaches_their_caches() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let [(dev0, _), (dev1, _)] = s.devs;
    let viommu = cmd::viommu_alloc(&mut h, dev0, s.parent, t::IOMMU_VIOMMU_TYPE_SELFTEST).unwrap();
    assert_eq!(
        cmd::vdevice_alloc(&mut h, 999, dev0, 0x99),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        cmd::vdevice_alloc(&mut h, viommu, 999, 0x99),
        Err(Errno::ENOENT)
    );
    let vdev0 = cmd::vdevice_alloc(&mut h, viommu, dev0, 0x99).unwrap();
    assert_eq!(
        cmd::vdevice_alloc(&mut h, viommu, dev0, 0x98),
        Err(Errno::EEXIST),
        "a device has one vDEVICE"
    );
    assert_eq!(
        cmd::vdevice_alloc(&mut h, viommu, dev1, 0x99),
        Err(Errno::EEXIST),
        "a virtual id names one device"
    );
    let vdev1 = cmd::vdevice_alloc(&mut h, viommu, dev1, 0x88).unwrap();
    assert_eq!(cmd::destroy(&mut h, viommu), Err(Errno::EBUSY));

    let sel = t::IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST;
    let default = t::IOMMU_TEST_DEV_CACHE_DEFAULT;
    for id in 0..4 {
        cmd::dev_check_cache(&mut h, dev0, id, default).unwrap();
    }
    assert_eq!(
        cmd::dev_check_cache(&mut h, dev0, 4, default),
        Err(Errno::EINVAL)
    );
    assert_eq!(cmd::dev_check_cache(&mut h, dev0, 0, 0), Err(Errno::EINVAL));

    assert_eq!(invalidate(&mut h, viommu, &[], 12, sel), (Ok(()), 0));
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 0]], 4097, sel),
        (Err(Errno::EINVAL), 0),
        "an entry larger than a page"
    );
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 0]], 16, sel),
        (Ok(()), 1),
        "a longer entry with a zero tail"
    );
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 0], [1, 0, 0]], 16, sel),
        (Err(Errno::E2BIG), 0),
        "a longer entry whose tail is not zero"
    );
    cmd::dev_check_cache(&mut h, dev0, 0, 0).unwrap();
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 0]], 12, sel + 1),
        (Err(Errno::EINVAL), 0),
        "wrong data type"
    );
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 1], [2, 0x99, 2]], 12, sel),
        (Err(Errno::EOPNOTSUPP), 1),
        "the first entry is handled, the second has an unknown flag"
    );
    cmd::dev_check_cache(&mut h, dev0, 1, 0).unwrap();
    cmd::dev_check_cache(&mut h, dev0, 2, default).unwrap();
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x99, 4]], 12, sel),
        (Err(Errno::EINVAL), 0),
        "cache id past the end"
    );
    assert_eq!(
        invalidate(&mut h, viommu, &[[0, 0x77, 0]], 12, sel),
        (Err(Errno::EINVAL), 0),
        "no vDEVICE has that virtual id"
    );
    assert_eq!(
        invalidate(
            &mut h,
            viommu,
            &[[t::IOMMU_TEST_INVALIDATE_FLAG_ALL, 0x88, 3]],
            12,
            sel
        ),
        (Ok(()), 1)
    );
    for id in 0..4 {
        cmd::dev_check_cache(&mut h, dev1, id, 0).unwrap();
    }
    cmd::dev_check_cache(&mut h, dev0, 3, default).unwrap();

    cmd::destroy(&mut h, vdev1).unwrap();
    cmd::destroy(&mut h, vdev0).unwrap();
    cmd::destroy(&mut h, viommu).unwrap();
}

#[test]
fn nested_hwpts_through_a_viommu_hold_it_and_its_veventq_takes_events() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let (dev, stdev) = s.devs[0];
    let viommu = cmd::viommu_alloc(&mut h, dev, s.parent, t::IOMMU_VIOMMU_TYPE_SELFTEST).unwrap();
    assert_eq!(
        cmd::hwpt_alloc_nested(&mut h, dev, viommu, IOMMU_HWPT_ALLOC_NEST_PARENT, 0),
        Err(Errno::EOPNOTSUPP)
    );
    let hwpt = cmd::hwpt_alloc_nested(&mut h, dev, viommu, 0, 0).unwrap();
    assert_eq!(cmd::destroy(&mut h, viommu), Err(Errno::EBUSY));
    let vevent = |h: &mut Harness| cmd::trigger_vevent(h, dev);
    let replace = |h: &mut Harness, pt: u32| cmd::mock_domain_replace(h, stdev, pt).map(|_| ());
    assert_eq!(
        replace(&mut h, hwpt),
        Err(Errno::ENOENT),
        "a device needs its vDEVICE before it attaches through the vIOMMU"
    );
    let vdev = cmd::vdevice_alloc(&mut h, viommu, dev, 0x42).unwrap();
    assert_eq!(
        vevent(&mut h),
        Err(Errno::ENOENT),
        "not on a HWPT of the vIOMMU"
    );
    replace(&mut h, hwpt).unwrap();
    assert_eq!(
        vevent(&mut h),
        Err(Errno::EOPNOTSUPP),
        "no vEVENTQ takes the event"
    );
    let mut q = IommuVeventqAlloc {
        size: 32,
        viommu_id: viommu,
        veventq_type: t::IOMMU_VEVENTQ_TYPE_SELFTEST,
        veventq_depth: 1,
        ..Default::default()
    };
    h.cmd(IOMMU_VEVENTQ_ALLOC, &mut q).unwrap();
    let inode = h.files.inode_of(q.out_veventq_fd as i32).unwrap();
    assert_eq!(h.cmd(IOMMU_VEVENTQ_ALLOC, &mut q), Err(Errno::EEXIST));
    let record = |seq: u32| {
        let mut r = seq.to_ne_bytes().to_vec();
        r.splice(0..0, 0u32.to_ne_bytes());
        r.extend_from_slice(&0x42u32.to_ne_bytes());
        r
    };
    vevent(&mut h).unwrap();
    assert_eq!(h.ctx.take_side_output(), [(inode, record(0))]);
    vevent(&mut h).unwrap();
    let lost = [IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 1].as_bytes().to_vec();
    assert_eq!(h.ctx.take_side_output(), [(inode, lost)], "depth 1 is full");
    vevent(&mut h).unwrap();
    assert_eq!(
        h.ctx.take_side_output(),
        [],
        "one lost-events header covers it"
    );
    // The reader reads the event and the header but one byte.
    h.ctx.side_file_unread(inode, 1);
    vevent(&mut h).unwrap();
    assert_eq!(h.ctx.take_side_output(), [(inode, record(3))]);
    cmd::destroy(&mut h, vdev).unwrap();
    h.ctx.side_file_unread(inode, 0);
    vevent(&mut h).unwrap();
    assert_eq!(
        h.ctx.take_side_output(),
        [(inode, record(4))],
        "the device keeps its event target until it attaches elsewhere"
    );
    replace(&mut h, s.parent).unwrap();
    assert_eq!(vevent(&mut h), Err(Errno::ENOENT));
    replace(&mut h, s.ioas).unwrap();
    cmd::destroy(&mut h, hwpt).unwrap();
    assert_eq!(
        cmd::destroy(&mut h, viommu),
        Err(Errno::EBUSY),
        "its vEVENTQ holds it"
    );
    assert_eq!(
        cmd::destroy(&mut h, q.out_veventq_id),
        Err(Errno::EBUSY),
        "the file holds the queue"
    );
    let closed = h.files.close_side_file(q.out_veventq_fd as i32).unwrap();
    h.ctx.side_file_closed(closed);
    cmd::destroy(&mut h, q.out_veventq_id).unwrap();
    cmd::destroy(&mut h, viommu).unwrap();
    cmd::destroy(&mut h, s.parent).unwrap();
}

#[test]
fn a_vdevice_goes_with_its_device() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let (dev, stdev) = s.devs[1];
    let viommu =
        cmd::viommu_alloc(&mut h, s.devs[0].0, s.parent, t::IOMMU_VIOMMU_TYPE_SELFTEST).unwrap();
    let vdev = cmd::vdevice_alloc(&mut h, viommu, dev, 7).unwrap();
    cmd::destroy(&mut h, stdev).unwrap();
    assert_eq!(cmd::destroy(&mut h, vdev), Err(Errno::ENOENT));
    for _ in 0..4 {
        assert_ne!(
            cmd::ioas_alloc(&mut h).unwrap(),
            vdev,
            "a tombstone's id is not handed out again"
        );
    }
    cmd::destroy(&mut h, viommu).unwrap();
    let (r, done) = invalidate(
        &mut h,
        viommu,
        &[[0, 7, 0]],
        12,
        t::IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST,
    );
    assert_eq!((r, done), (Err(Errno::ENOENT), 0));
}

#[test]
fn driver_data_gives_the_viommu_a_region_to_map() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let dev = s.devs[0].0;
    let with_data = |h: &mut Harness, len: u32, uptr: u64| {
        let mut c = IommuViommuAlloc {
            size: 40,
            viommu_type: t::IOMMU_VIOMMU_TYPE_SELFTEST,
            dev_id: dev,
            hwpt_id: s.parent,
            data_len: len,
            data_uptr: uptr,
            ..Default::default()
        };
        h.cmd(IOMMU_VIOMMU_ALLOC, &mut c).map(|_| c.out_viommu_id)
    };
    let data = |in_data: u32| {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&in_data.to_ne_bytes());
        d
    };
    h.write_mem(SCRATCH, &data(0xbeef));
    assert_eq!(
        with_data(&mut h, 7, SCRATCH),
        Err(Errno::EINVAL),
        "short of out_data"
    );
    assert_eq!(with_data(&mut h, 24, 0x10), Err(Errno::EFAULT));
    h.write_mem(SCRATCH + 24, &[1]);
    assert_eq!(
        with_data(&mut h, 32, SCRATCH),
        Err(Errno::E2BIG),
        "a non-zero tail"
    );
    h.write_mem(SCRATCH + 24, &[0]);
    assert_eq!(
        with_data(&mut h, 32, SCRATCH),
        Err(Errno::EINVAL),
        "longer than the driver writes back"
    );
    let first = with_data(&mut h, 24, SCRATCH).unwrap();
    let out = h.read_mem(SCRATCH, 24);
    let word = |at: usize| u64::from_ne_bytes(out[at..at + 8].try_into().unwrap());
    assert_eq!(&out[4..8], &0xbeefu32.to_ne_bytes(), "out_data");
    assert_eq!((word(8), word(16)), (PAGE, 2 * PAGE), "offset and length");
    let region = h.ctx.mmap_check(PAGE, 2 * PAGE, 3, 1).unwrap();
    assert_eq!(region.contents, 0xbeefu32.to_ne_bytes());
    for (offset, len, prot, flags, errno) in [
        (2 * PAGE, 2 * PAGE, 3, 1, Errno::ENXIO),
        (PAGE, PAGE, 3, 1, Errno::ENXIO),
        (PAGE, 4 * PAGE, 3, 1, Errno::ENXIO),
        (PAGE, 2 * PAGE, 3, 2, Errno::EINVAL),
        (PAGE, 2 * PAGE, 7, 1, Errno::EPERM),
        (0, 2 * PAGE, 3, 1, Errno::ENXIO),
    ] {
        assert_eq!(
            h.ctx.mmap_check(offset, len, prot, flags).err(),
            Some(errno),
            "{offset:#x} {len:#x} {prot} {flags}"
        );
    }
    // Only 8 bytes: the offset and length are not written back.
    h.write_mem(SCRATCH, &data(5));
    let second = with_data(&mut h, 8, SCRATCH).unwrap();
    assert_eq!(h.read_mem(SCRATCH + 8, 8), [0; 8]);
    assert!(
        h.ctx.mmap_check(3 * PAGE, 2 * PAGE, 3, 1).is_ok(),
        "the next free offset"
    );
    cmd::destroy(&mut h, first).unwrap();
    assert_eq!(
        h.ctx.mmap_check(PAGE, 2 * PAGE, 3, 1).err(),
        Some(Errno::ENXIO)
    );
    let third = with_data(&mut h, 24, SCRATCH).unwrap();
    assert_eq!(
        h.read_mem(SCRATCH + 8, 8),
        PAGE.to_ne_bytes(),
        "the freed offset again"
    );
    cmd::destroy(&mut h, second).unwrap();
    cmd::destroy(&mut h, third).unwrap();
}

#[test]
fn a_hw_queue_needs_memory_one_area_holds() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let viommu =
        cmd::viommu_alloc(&mut h, s.devs[0].0, s.parent, t::IOMMU_VIOMMU_TYPE_SELFTEST).unwrap();
    let iova = t::MOCK_APERTURE_START;
    for i in 0..2 {
        let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
        cmd::ioas_map(&mut h, s.ioas, flags, BUF + i * PAGE, PAGE, iova + i * PAGE).unwrap();
    }
    let queue = |h: &mut Harness, index: u32, at: u64, len: u64| {
        let mut c = IommuHwQueueAlloc {
            size: 40,
            viommu_id: viommu,
            hw_queue_type: t::IOMMU_HW_QUEUE_TYPE_SELFTEST,
            index,
            nesting_parent_iova: at,
            length: len,
            ..Default::default()
        };
        h.cmd(IOMMU_HW_QUEUE_ALLOC, &mut c)
            .map(|_| c.out_hw_queue_id)
    };
    assert_eq!(
        queue(&mut h, 0, iova, 2 * PAGE),
        Err(Errno::EFAULT),
        "two areas are not one contiguous block"
    );
    let unmap = |h: &mut Harness, at: u64| cmd::ioas_unmap(h, s.ioas, at, PAGE);
    unmap(&mut h, iova + PAGE).expect("the failed queue left no pin behind");
    let q0 = queue(&mut h, 0, iova + 8, 16).unwrap();
    assert_eq!(unmap(&mut h, iova), Err(Errno::EBUSY));
    assert_eq!(queue(&mut h, 9, iova, PAGE), Err(Errno::EINVAL));
    cmd::destroy(&mut h, q0).unwrap();
    unmap(&mut h, iova).unwrap();
    cmd::destroy(&mut h, viommu).unwrap();
}
