//! Accesses through the selftest commands: pin, read and write through an
//! IOAS, the unmap contract, replacing the IOAS, and the file's close.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;

/// A fixed, readable map, writeable with `write`.
fn map(
    h: &mut Harness,
    ioas: u32,
    va: u64,
    len: u64,
    iova: u64,
    write: bool,
) -> Result<u64, Errno> {
    let flags = if write {
        cmd::FIXED_RW
    } else {
        IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE
    };
    cmd::ioas_map(h, ioas, flags, va, len, iova)
}

#[test]
fn an_access_pins_and_an_unmap_takes_its_pins_away() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    map(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000, true).unwrap();
    let fd = cmd::create_access(&mut h, ioas, t::MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES).unwrap();
    assert_eq!(
        h.ctx.ioas(ioas).unwrap().iova_alignment(),
        PAGE,
        "a pinning access needs page alignment"
    );
    let item = cmd::access_pages(&mut h, fd, 0x10_1000, 2 * PAGE, BUF + PAGE).unwrap();
    cmd::check_refs(&mut h, BUF + PAGE, 2 * PAGE, 1).unwrap();
    assert_eq!(
        cmd::access_pages(&mut h, fd, 0x10_1000, PAGE, BUF),
        Err(Errno::EINVAL),
        "not the pages at uptr"
    );
    assert_eq!(
        cmd::access_pages(&mut h, fd, 0x10_0000, 17 << 20, BUF),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cmd::access_pages(&mut h, fd, 0x20_0000, PAGE, BUF),
        Err(Errno::ENOENT),
        "not mapped"
    );
    assert_eq!(
        cmd::access_pages(&mut h, 7, 0x10_0000, PAGE, BUF),
        Err(Errno::EBADFD),
        "not an access file"
    );
    // The unmap contract: the access gives its pins up and the unmap completes.
    assert_eq!(
        cmd::ioas_unmap(&mut h, ioas, 0x10_0000, 8 * PAGE),
        Ok(8 * PAGE)
    );
    cmd::check_refs(&mut h, BUF, 8 * PAGE, 0).unwrap();
    assert_eq!(
        cmd::destroy_access_pages(&mut h, fd, item),
        Err(Errno::ENOENT),
        "the item went with the unmap"
    );
    // Pins are released explicitly too.
    map(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000, true).unwrap();
    let item = cmd::access_pages(&mut h, fd, 0x10_0000, PAGE, BUF).unwrap();
    cmd::destroy_access_pages(&mut h, fd, item).unwrap();
    cmd::check_refs(&mut h, BUF, PAGE, 0).unwrap();
    // The IOAS is in use until the access's file closes.
    assert_eq!(cmd::destroy(&mut h, ioas), Err(Errno::EBUSY));
    cmd::access_pages(&mut h, fd, 0x10_0000, PAGE, BUF).unwrap();
    let inode = h.files.close_side_file(fd as i32).unwrap();
    h.ctx.side_file_closed(inode);
    cmd::check_refs(&mut h, BUF, PAGE, 0).unwrap();
    assert_eq!(h.ctx.ioas(ioas).unwrap().iova_alignment(), 1);
    cmd::destroy(&mut h, ioas).unwrap();
}

#[test]
fn an_access_reads_and_writes_through_the_ioas() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    map(&mut h, ioas, BUF, 4 * PAGE, 0x10_0000, true).unwrap();
    map(&mut h, ioas, BUF + 0x10_0000, PAGE, 0x20_0000, false).unwrap();
    let fd = cmd::create_access(&mut h, ioas, 0).unwrap();
    h.write_mem(SCRATCH, b"through the ioas");
    cmd::access_rw(&mut h, fd, 0x10_0ffc, 16, SCRATCH, t::MOCK_ACCESS_RW_WRITE).unwrap();
    assert_eq!(
        h.read_mem(BUF + 0xffc, 16),
        b"through the ioas",
        "the write crossed a page"
    );
    h.write_mem(SCRATCH, &[0; 16]);
    cmd::access_rw(
        &mut h,
        fd,
        0x10_0ffc,
        16,
        SCRATCH,
        t::MOCK_ACCESS_RW_SLOW_PATH,
    )
    .unwrap();
    assert_eq!(h.read_mem(SCRATCH, 16), b"through the ioas");
    assert_eq!(
        cmd::access_rw(&mut h, fd, 0x20_0000, 4, SCRATCH, t::MOCK_ACCESS_RW_WRITE),
        Err(Errno::EPERM),
        "read-only"
    );
    assert_eq!(
        cmd::access_rw(&mut h, fd, 0x30_0000, 4, SCRATCH, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        cmd::access_rw(&mut h, fd, 0x10_0000, 4, SCRATCH, 1 << 5),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        cmd::access_pages(&mut h, fd, 0x10_0000, PAGE, BUF),
        Err(Errno::EOPNOTSUPP),
        "created without NEEDS_PIN_PAGES"
    );
    // Replacing the IOAS.
    let other = cmd::ioas_alloc(&mut h).unwrap();
    cmd::access_replace_ioas(&mut h, fd, other).unwrap();
    assert_eq!(
        cmd::access_rw(&mut h, fd, 0x10_0000, 4, SCRATCH, 0),
        Err(Errno::ENOENT),
        "the new IOAS is empty"
    );
    cmd::destroy(&mut h, ioas).unwrap();
    assert_eq!(cmd::destroy(&mut h, other), Err(Errno::EBUSY));
    assert_eq!(
        cmd::create_access(&mut h, other, 1 << 3),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(cmd::create_access(&mut h, 99, 0), Err(Errno::ENOENT));
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn a_dma_buf_maps_by_descriptor_and_its_revocation_empties_the_domains() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    assert_eq!(cmd::dmabuf_get(&mut h, 0), Err(Errno::EINVAL));
    assert_eq!(cmd::dmabuf_get(&mut h, 100), Err(Errno::EINVAL));
    assert_eq!(cmd::dmabuf_get(&mut h, 513 * 4096), Err(Errno::EINVAL));
    let fd = cmd::dmabuf_get(&mut h, 16 * PAGE as u32).unwrap();
    assert!(fd > 0, "the descriptor is the return value");
    let map_file = |h: &mut Harness, fd: i32, iova: u64| {
        cmd::ioas_map_file(h, ioas, cmd::FIXED_RW, fd, 0, 16 * PAGE, iova)
    };
    let iova = t::MOCK_APERTURE_START;
    map_file(&mut h, fd, iova).unwrap();
    // An access cannot pin or copy peer-to-peer memory (Linux: EINVAL).
    let access =
        cmd::create_access(&mut h, ioas, t::MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES).unwrap();
    assert_eq!(
        cmd::access_pages(&mut h, access, iova, PAGE, BUF),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cmd::access_rw(&mut h, access, iova, 8, SCRATCH, t::MOCK_ACCESS_RW_WRITE),
        Err(Errno::EINVAL)
    );
    let inode = h.files.close_side_file(access as i32).unwrap();
    h.ctx.side_file_closed(inode);
    let mapped = |h: &Harness| {
        let t = h.ctx.objects().hwpt_paging(md.hwpt).unwrap().table.clone();
        let t = t.lock().unwrap();
        t.iova_to_phys(iova).is_some()
    };
    assert!(mapped(&h));
    let revoke = |h: &mut Harness, revoked: u32| {
        cmd::test_cmd(h, t::op::DMABUF_REVOKE, 0, |c| {
            c.set_payload(&t::TestDmabufRevoke {
                dmabuf_fd: fd,
                revoked,
            })
        })
    };
    revoke(&mut h, 1).unwrap();
    assert!(
        !mapped(&h),
        "revocation takes the memory out of the domains"
    );
    assert_eq!(map_file(&mut h, fd, iova + 0x10_0000), Err(Errno::ENODEV));
    revoke(&mut h, 0).unwrap();
    // Linux's iommufd never maps a revoked area again (`iopt_revoke_notify`
    // leaves it a hole): the program unmaps it and maps anew.
    assert!(!mapped(&h), "a restore does not bring the old mapping back");
    map_file(&mut h, fd, iova + 0x10_0000).unwrap();
    assert_eq!(
        cmd::ioas_unmap(&mut h, ioas, iova, 16 * PAGE),
        Ok(16 * PAGE)
    );
    map_file(&mut h, fd, iova).unwrap();
    assert!(
        mapped(&h),
        "a new map of the restored dma-buf is in the domain"
    );
    let bad = cmd::test_cmd(&mut h, t::op::DMABUF_REVOKE, 0, |c| {
        c.set_payload(&t::TestDmabufRevoke {
            dmabuf_fd: 3,
            revoked: 1,
        })
    });
    assert_eq!(bad.map(|_| ()), Err(Errno::EBADF));
    assert_eq!(cmd::ioas_unmap(&mut h, ioas, 0, u64::MAX), Ok(32 * PAGE));
    h.ctx.close();
    assert_eq!(h.shared.pinned_frames(), 0);
}
