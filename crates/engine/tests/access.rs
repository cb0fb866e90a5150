//! Accesses through the selftest commands: pin, read and write through an
//! IOAS, the unmap contract, replacing the IOAS, and the file's close.

mod common;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};

fn map(
    h: &mut Harness,
    ioas: u32,
    va: u64,
    len: u64,
    iova: u64,
    write: bool,
) -> Result<i64, Errno> {
    let mut flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
    if write {
        flags |= IOMMU_IOAS_MAP_WRITEABLE;
    }
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

fn create_access(h: &mut Harness, ioas: u32, flags: u32) -> Result<u32, Errno> {
    test_cmd(h, t::op::CREATE_ACCESS, ioas, |c| {
        c.set_payload(&t::TestCreateAccess {
            out_access_fd: 0,
            flags,
        })
    })
    .map(|c| c.payload_as::<t::TestCreateAccess>().out_access_fd)
}

fn pin(h: &mut Harness, fd: u32, iova: u64, length: u64, uptr: u64) -> Result<u32, Errno> {
    test_cmd(h, t::op::ACCESS_PAGES, fd, |c| {
        c.set_payload(&t::TestAccessPages {
            flags: 0,
            out_access_pages_id: 0,
            iova,
            length,
            uptr,
        })
    })
    .map(|c| c.payload_as::<t::TestAccessPages>().out_access_pages_id)
}

fn refs(h: &mut Harness, uptr: u64, length: u64, refs: u32) -> Result<IommuTestCmd, Errno> {
    test_cmd(h, t::op::MD_CHECK_REFS, 0, |c| {
        c.set_payload(&t::TestCheckRefs {
            length,
            uptr,
            refs,
            pad: 0,
        })
    })
}

fn rw(
    h: &mut Harness,
    fd: u32,
    iova: u64,
    length: u64,
    uptr: u64,
    flags: u32,
) -> Result<IommuTestCmd, Errno> {
    test_cmd(h, t::op::ACCESS_RW, fd, |c| {
        c.set_payload(&t::TestAccessRw {
            iova,
            length,
            uptr,
            flags,
            pad: 0,
        })
    })
}

#[test]
fn an_access_pins_and_an_unmap_takes_its_pins_away() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    map(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000, true).unwrap();
    let fd = create_access(&mut h, ioas, t::MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES).unwrap();
    assert_eq!(
        h.ctx.ioas(ioas).unwrap().iova_alignment(),
        PAGE,
        "a pinning access needs page alignment"
    );
    let item = pin(&mut h, fd, 0x10_1000, 2 * PAGE, BUF + PAGE).unwrap();
    refs(&mut h, BUF + PAGE, 2 * PAGE, 1).unwrap();
    assert_eq!(
        pin(&mut h, fd, 0x10_1000, PAGE, BUF).map(|_| ()),
        Err(Errno::EINVAL),
        "not the pages at uptr"
    );
    assert_eq!(
        pin(&mut h, fd, 0x10_0000, 17 << 20, BUF).map(|_| ()),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        pin(&mut h, fd, 0x20_0000, PAGE, BUF).map(|_| ()),
        Err(Errno::ENOENT),
        "not mapped"
    );
    assert_eq!(
        pin(&mut h, 7, 0x10_0000, PAGE, BUF).map(|_| ()),
        Err(Errno::EBADFD),
        "not an access file"
    );
    // The unmap contract: the access gives its pins up and the unmap completes.
    let mut u = IommuIoasUnmap {
        size: 24,
        ioas_id: ioas,
        iova: 0x10_0000,
        length: 8 * PAGE,
    };
    h.cmd(IOMMU_IOAS_UNMAP, &mut u).unwrap();
    assert_eq!(u.length, 8 * PAGE);
    refs(&mut h, BUF, 8 * PAGE, 0).unwrap();
    let gone = test_cmd(&mut h, t::op::DESTROY_ACCESS_PAGES, fd, |c| {
        c.set_payload(&t::TestOneId { id: item })
    });
    assert_eq!(
        gone.map(|_| ()),
        Err(Errno::ENOENT),
        "the item went with the unmap"
    );
    // Pins are released explicitly too.
    map(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000, true).unwrap();
    let item = pin(&mut h, fd, 0x10_0000, PAGE, BUF).unwrap();
    test_cmd(&mut h, t::op::DESTROY_ACCESS_PAGES, fd, |c| {
        c.set_payload(&t::TestOneId { id: item })
    })
    .unwrap();
    refs(&mut h, BUF, PAGE, 0).unwrap();
    // The IOAS is in use until the access's file closes.
    assert_eq!(destroy(&mut h, ioas), Err(Errno::EBUSY));
    pin(&mut h, fd, 0x10_0000, PAGE, BUF).unwrap();
    let inode = h.files.close_side_file(fd as i32).unwrap();
    h.ctx.side_file_closed(inode);
    refs(&mut h, BUF, PAGE, 0).unwrap();
    assert_eq!(h.ctx.ioas(ioas).unwrap().iova_alignment(), 1);
    destroy(&mut h, ioas).unwrap();
}

#[test]
fn an_access_reads_and_writes_through_the_ioas() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    map(&mut h, ioas, BUF, 4 * PAGE, 0x10_0000, true).unwrap();
    map(&mut h, ioas, BUF + 0x10_0000, PAGE, 0x20_0000, false).unwrap();
    let fd = create_access(&mut h, ioas, 0).unwrap();
    h.write_mem(SCRATCH, b"through the ioas");
    rw(&mut h, fd, 0x10_0ffc, 16, SCRATCH, t::MOCK_ACCESS_RW_WRITE).unwrap();
    assert_eq!(
        h.read_mem(BUF + 0xffc, 16),
        b"through the ioas",
        "the write crossed a page"
    );
    h.write_mem(SCRATCH, &[0; 16]);
    rw(
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
        rw(&mut h, fd, 0x20_0000, 4, SCRATCH, t::MOCK_ACCESS_RW_WRITE).map(|_| ()),
        Err(Errno::EPERM),
        "read-only"
    );
    assert_eq!(
        rw(&mut h, fd, 0x30_0000, 4, SCRATCH, 0).map(|_| ()),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        rw(&mut h, fd, 0x10_0000, 4, SCRATCH, 1 << 5).map(|_| ()),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        pin(&mut h, fd, 0x10_0000, PAGE, BUF).map(|_| ()),
        Err(Errno::EOPNOTSUPP),
        "created without NEEDS_PIN_PAGES"
    );
    // Replacing the IOAS.
    let other = alloc(&mut h);
    test_cmd(&mut h, t::op::ACCESS_REPLACE_IOAS, fd, |c| {
        c.set_payload(&t::TestOneId { id: other })
    })
    .unwrap();
    assert_eq!(
        rw(&mut h, fd, 0x10_0000, 4, SCRATCH, 0).map(|_| ()),
        Err(Errno::ENOENT),
        "the new IOAS is empty"
    );
    destroy(&mut h, ioas).unwrap();
    assert_eq!(destroy(&mut h, other), Err(Errno::EBUSY));
    assert_eq!(create_access(&mut h, other, 1 << 3), Err(Errno::EOPNOTSUPP));
    assert_eq!(create_access(&mut h, 99, 0), Err(Errno::ENOENT));
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn a_dma_buf_maps_by_descriptor_and_its_revocation_empties_the_domains() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let md: t::TestMockDomain = test_cmd(&mut h, t::op::MOCK_DOMAIN, ioas, |_| ())
        .unwrap()
        .payload_as();
    let get = |h: &mut Harness, length: u32| {
        let mut c = IommuTestCmd {
            size: 72,
            op: t::op::DMABUF_GET,
            ..Default::default()
        };
        c.set_payload(&t::TestDmabufGet {
            length,
            open_flags: 0,
        });
        h.cmd(IOMMU_TEST_CMD, &mut c)
    };
    assert_eq!(get(&mut h, 0), Err(Errno::EINVAL));
    assert_eq!(get(&mut h, 100), Err(Errno::EINVAL));
    assert_eq!(get(&mut h, 513 * 4096), Err(Errno::EINVAL));
    let fd = get(&mut h, 16 * PAGE as u32).unwrap() as i32;
    assert!(fd > 0, "the descriptor is the return value");
    let map_file = |h: &mut Harness, fd: i32, iova: u64| {
        let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
        let mut c = IommuIoasMapFile {
            size: 40,
            flags,
            ioas_id: ioas,
            fd,
            start: 0,
            length: 16 * PAGE,
            iova,
        };
        h.cmd(IOMMU_IOAS_MAP_FILE, &mut c)
    };
    let iova = t::MOCK_APERTURE_START;
    map_file(&mut h, fd, iova).unwrap();
    let mapped = |h: &Harness| {
        let t = h.ctx.objects().hwpt(md.out_hwpt_id).unwrap().table.clone();
        let t = t.lock().unwrap();
        t.iova_to_phys(iova).is_some()
    };
    assert!(mapped(&h));
    let revoke = |h: &mut Harness, revoked: u32| {
        test_cmd(h, t::op::DMABUF_REVOKE, 0, |c| {
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
    assert!(mapped(&h), "and restoring puts it back");
    let bad = test_cmd(&mut h, t::op::DMABUF_REVOKE, 0, |c| {
        c.set_payload(&t::TestDmabufRevoke {
            dmabuf_fd: 3,
            revoked: 1,
        })
    });
    assert_eq!(bad.map(|_| ()), Err(Errno::EBADF));
    let mut u = IommuIoasUnmap {
        size: 24,
        ioas_id: ioas,
        iova: 0,
        length: u64::MAX,
    };
    h.cmd(IOMMU_IOAS_UNMAP, &mut u).unwrap();
    assert_eq!(u.length, 16 * PAGE);
    h.ctx.close();
    assert_eq!(h.shared.pinned_frames(), 0);
}
