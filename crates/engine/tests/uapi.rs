//! Every iommufd command through the raw byte entry point, with valid and
//! malformed input, against the errno Linux returns.

mod common;
use common::*;
use softiommu_engine::ioas::Prot;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use softiommu_uapi::vfio::*;
use zerocopy::IntoBytes;

// ---- extensible-struct rules, for every command ------------------------------------------

fn every_command() -> Vec<(u8, CommandInfo)> {
    (0x80..=0xa0u8)
        .filter_map(|nr| command_info(nr).ok().flatten().map(|i| (nr, i)))
        .collect()
}

fn with_size(info: &CommandInfo, size: usize, tail: u8) -> Vec<u8> {
    let mut b = vec![0u8; size.max(4)];
    b[..4].copy_from_slice(&(size as u32).to_ne_bytes());
    for byte in b.iter_mut().skip(info.size) {
        *byte = tail;
    }
    b
}

#[test]
fn size_below_the_minimum_is_einval_for_every_command() {
    for (nr, info) in every_command() {
        let mut h = Harness::new();
        let mut b = with_size(&info, info.min_size - 1, 0);
        assert_eq!(
            h.raw(info.request, &mut b),
            Err(Errno::EINVAL),
            "command {nr:#x}"
        );
    }
}

#[test]
fn nonzero_bytes_past_the_struct_are_e2big_for_every_command() {
    for (nr, info) in every_command() {
        let mut h = Harness::new();
        let mut b = with_size(&info, info.size + 1, 0xff);
        assert_eq!(
            h.raw(info.request, &mut b),
            Err(Errno::E2BIG),
            "command {nr:#x}"
        );
        let mut b = with_size(&info, info.size + 4096 + 7, 0);
        let last = b.len() - 1;
        b[last] = 1;
        assert_eq!(
            h.raw(info.request, &mut b),
            Err(Errno::E2BIG),
            "command {nr:#x}, far tail"
        );
    }
}

#[test]
fn a_zero_tail_behaves_exactly_like_the_known_size_for_every_command() {
    for (nr, info) in every_command() {
        let mut exact = Harness::new();
        let mut longer = Harness::new();
        let mut a = with_size(&info, info.size, 0);
        let mut b = with_size(&info, info.size + 16, 0);
        let ra = exact.raw(info.request, &mut a);
        let rb = longer.raw(info.request, &mut b);
        assert_eq!(ra, rb, "command {nr:#x}");
        // Output is copied back as min(user size, struct size): the tail stays zero.
        assert!(
            b[info.size..].iter().all(|&x| x == 0),
            "command {nr:#x} wrote past its struct"
        );
        assert_eq!(
            &a[4..],
            &b[4..info.size],
            "command {nr:#x} answered differently"
        );
    }
}

#[test]
fn an_unreadable_argument_is_efault() {
    let mut h = Harness::new();
    assert_eq!(h.ptr(IOMMU_DESTROY, 0), Err(Errno::EFAULT));
    assert_eq!(h.ptr(IOMMU_IOAS_ALLOC, 0xdead_0000), Err(Errno::EFAULT));
    assert_eq!(h.raw(IOMMU_DESTROY, &mut [8, 0]), Err(Errno::EFAULT));
    // A size larger than the readable memory: the tail cannot be checked.
    h.write_mem(BUF + BUF_LEN - 8, &64u32.to_ne_bytes());
    assert_eq!(
        h.ptr(IOMMU_IOAS_ALLOC, BUF + BUF_LEN - 8),
        Err(Errno::EFAULT)
    );
}

#[test]
fn unknown_requests_are_enotty() {
    let mut h = Harness::new();
    let mut b = 8u64.to_ne_bytes();
    assert_eq!(h.raw(io(b';', 0x7f), &mut b), Err(Errno::ENOTTY));
    assert_eq!(h.raw(io(b';', 0x95), &mut b), Err(Errno::ENOTTY));
    assert_eq!(h.raw(io(b';', 0x9f), &mut b), Err(Errno::ENOTTY));
    assert_eq!(h.raw(io(b';', 0xa1), &mut b), Err(Errno::ENOTTY));
    // Right number, wrong type byte or direction bits.
    assert_eq!(h.raw(io(b'x', 0x80), &mut b), Err(Errno::ENOTTY));
    assert_eq!(
        h.raw(IOMMU_DESTROY | 0x4008_0000, &mut b),
        Err(Errno::ENOTTY)
    );
    assert_eq!(h.raw(VFIO_IOMMU_DIRTY_PAGES, &mut b), Err(Errno::ENOTTY));
}

#[test]
fn destroy_with_an_extra_zero_tail_or_a_short_size() {
    // The selftest's cmd_ex_fail.
    let mut h = Harness::new();
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&16u32.to_ne_bytes());
    assert_eq!(h.raw(IOMMU_DESTROY, &mut b), Err(Errno::ENOENT));
    b[12] = 0xaa;
    assert_eq!(h.raw(IOMMU_DESTROY, &mut b), Err(Errno::E2BIG));
    let mut c = IommuDestroy { size: 8, id: 0 };
    assert_eq!(h.cmd(IOMMU_DESTROY, &mut c), Err(Errno::ENOENT));
    c.size = 7;
    assert_eq!(h.cmd(IOMMU_DESTROY, &mut c), Err(Errno::EINVAL));
}

// ---- objects -------------------------------------------------------------------------------

#[test]
fn ioas_ids_start_at_one_and_the_lowest_free_id_is_reused() {
    let mut h = Harness::new();
    assert_eq!(
        (
            cmd::ioas_alloc(&mut h).unwrap(),
            cmd::ioas_alloc(&mut h).unwrap(),
            cmd::ioas_alloc(&mut h).unwrap()
        ),
        (1, 2, 3)
    );
    let mut d = IommuDestroy { size: 8, id: 2 };
    h.cmd(IOMMU_DESTROY, &mut d).unwrap();
    assert_eq!(h.cmd(IOMMU_DESTROY, &mut d), Err(Errno::ENOENT));
    assert_eq!(cmd::ioas_alloc(&mut h).unwrap(), 2);
    assert_eq!(cmd::ioas_alloc(&mut h).unwrap(), 4);
}

#[test]
fn ioas_alloc_rejects_flags() {
    let mut h = Harness::new();
    let mut c = IommuIoasAlloc {
        size: 12,
        flags: 1,
        out_ioas_id: 0,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_ALLOC, &mut c), Err(Errno::EOPNOTSUPP));
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn an_answer_that_cannot_be_written_is_efault_and_leaves_no_object() {
    let mut h = Harness::new();
    let c = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    h.sim.poke(RO, c.as_bytes()).unwrap();
    assert_eq!(h.ptr(IOMMU_IOAS_ALLOC, RO), Err(Errno::EFAULT));
    assert!(
        h.ctx.objects().is_empty(),
        "the half-made IOAS was destroyed"
    );
    assert_eq!(
        cmd::ioas_alloc(&mut h).unwrap(),
        1,
        "and its id is free again"
    );
}

// ---- commands on objects that arrive with later issues ------------------------------------

#[test]
fn device_and_hwpt_commands_validate_then_find_no_object() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let mut c = IommuHwptAlloc {
        size: 48,
        dev_id: 1,
        pt_id: ioas,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut c), Err(Errno::ENOENT));
    c.reserved = 1;
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut c), Err(Errno::EOPNOTSUPP));
    c.reserved = 0;
    c.data_len = 8;
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut c), Err(Errno::EINVAL));
    let mut i = IommuHwInfo {
        size: 40,
        dev_id: ioas,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_GET_HW_INFO, &mut i),
        Err(Errno::ENOENT),
        "an IOAS is not a device"
    );
    i.flags = 2;
    assert_eq!(h.cmd(IOMMU_GET_HW_INFO, &mut i), Err(Errno::EOPNOTSUPP));
    let mut d = IommuHwptSetDirtyTracking {
        size: 16,
        flags: 2,
        hwpt_id: ioas,
        reserved: 0,
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_SET_DIRTY_TRACKING, &mut d),
        Err(Errno::EOPNOTSUPP)
    );
    d.flags = 1;
    assert_eq!(
        h.cmd(IOMMU_HWPT_SET_DIRTY_TRACKING, &mut d),
        Err(Errno::ENOENT)
    );
    let mut g = IommuHwptGetDirtyBitmap {
        size: 48,
        hwpt_id: ioas,
        flags: 4,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_GET_DIRTY_BITMAP, &mut g),
        Err(Errno::EOPNOTSUPP)
    );
    g.flags = 0;
    assert_eq!(
        h.cmd(IOMMU_HWPT_GET_DIRTY_BITMAP, &mut g),
        Err(Errno::ENOENT)
    );
    let mut inv = IommuHwptInvalidate {
        size: 32,
        hwpt_id: ioas,
        entry_num: 1,
        entry_len: 0,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_INVALIDATE, &mut inv), Err(Errno::EINVAL));
    inv.entry_len = 8;
    inv.data_uptr = SCRATCH;
    assert_eq!(
        h.cmd(IOMMU_HWPT_INVALIDATE, &mut inv),
        Err(Errno::EINVAL),
        "an IOAS is no nested HWPT"
    );
    inv.hwpt_id = 999;
    assert_eq!(h.cmd(IOMMU_HWPT_INVALIDATE, &mut inv), Err(Errno::ENOENT));
    assert_eq!(inv.entry_num, 0, "entry_num reports the entries handled");
    let mut v = IommuViommuAlloc {
        size: 40,
        dev_id: 1,
        hwpt_id: ioas,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_VIOMMU_ALLOC, &mut v),
        Err(Errno::EOPNOTSUPP),
        "the default type is refused before any lookup"
    );
    v.viommu_type = softiommu_uapi::test_cmd::IOMMU_VIOMMU_TYPE_SELFTEST;
    assert_eq!(h.cmd(IOMMU_VIOMMU_ALLOC, &mut v), Err(Errno::ENOENT));
    v.flags = 1;
    assert_eq!(h.cmd(IOMMU_VIOMMU_ALLOC, &mut v), Err(Errno::EOPNOTSUPP));
    let mut vd = IommuVdeviceAlloc {
        size: 24,
        viommu_id: ioas,
        dev_id: 1,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_VDEVICE_ALLOC, &mut vd), Err(Errno::ENOENT));
    let mut q = IommuVeventqAlloc {
        size: 32,
        viommu_id: ioas,
        veventq_depth: 4,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_VEVENTQ_ALLOC, &mut q),
        Err(Errno::EOPNOTSUPP),
        "the default type first"
    );
    q.veventq_type = IOMMU_VEVENTQ_TYPE_ARM_SMMUV3;
    assert_eq!(h.cmd(IOMMU_VEVENTQ_ALLOC, &mut q), Err(Errno::ENOENT));
    let mut hq = IommuHwQueueAlloc {
        size: 40,
        viommu_id: ioas,
        length: PAGE,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_HW_QUEUE_ALLOC, &mut hq),
        Err(Errno::EOPNOTSUPP),
        "the default type first"
    );
    hq.hw_queue_type = IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV;
    assert_eq!(h.cmd(IOMMU_HW_QUEUE_ALLOC, &mut hq), Err(Errno::ENOENT));
    let mut f = IommuFaultAlloc {
        size: 16,
        flags: 1,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_FAULT_QUEUE_ALLOC, &mut f),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::MOCK_DOMAIN, 0, |_| ()),
        Err(Errno::ENOENT),
        "attach to pt_id 0"
    );
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::MOCK_DOMAIN_REPLACE, 0, |_| ()),
        Err(Errno::ENOENT),
        "stdev 0"
    );
    let bad_flags = t::TestMockDomain {
        dev_flags: 1 << 9,
        ..Default::default()
    };
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::MOCK_DOMAIN_FLAGS, ioas, |c| c
            .set_payload(&bad_flags)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::ACCESS_RW, 3, |_| ()),
        Err(Errno::EBADFD)
    );
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::MD_CHECK_MAP, ioas, |_| ()),
        Err(Errno::ENOENT),
        "an IOAS is not a HWPT"
    );
    let limit = |id| move |c: &mut IommuTestCmd| c.set_payload(&t::TestOneId { id });
    assert_eq!(
        cmd::test_cmd(&mut h, t::op::SET_TEMP_MEMORY_LIMIT, 0, limit(11)),
        Err(Errno::EINVAL)
    );
    let mut set_limit = IommuTestCmd {
        size: 72,
        op: t::op::SET_TEMP_MEMORY_LIMIT,
        ..Default::default()
    };
    limit(16)(&mut set_limit);
    assert_eq!(h.cmd(IOMMU_TEST_CMD, &mut set_limit), Ok(0));
    assert_eq!(
        cmd::test_cmd(&mut h, 999, ioas, |_| ()),
        Err(Errno::EOPNOTSUPP)
    );
    // HWPT_INVALIDATE writes entry_num back on its early failures too.
    let mut inv = IommuHwptInvalidate {
        size: 32,
        hwpt_id: ioas,
        entry_num: 1,
        entry_len: 8,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_INVALIDATE, &mut inv), Err(Errno::EINVAL));
    assert_eq!(inv.entry_num, 0);
}

#[test]
fn the_typed_api_reports_errno_and_context() {
    let engine = softiommu_engine::api::Engine::new();
    let mut fd = engine.open();
    let ioas = fd.alloc_ioas().unwrap();
    let buffer = vec![1u8; 8192];
    let iova = fd
        .map_buffer(
            ioas,
            &buffer,
            Some(0x10_0000),
            Prot {
                read: true,
                write: true,
            },
        )
        .unwrap();
    let e = fd
        .map_buffer(
            ioas,
            &buffer,
            Some(0x10_0000),
            Prot {
                read: true,
                write: true,
            },
        )
        .unwrap_err();
    assert_eq!(e.errno, Errno::EEXIST);
    assert!(e.to_string().contains("mapping"), "{e}");
    let pin = fd.pin(ioas, iova, 8192, true).unwrap();
    fd.write(ioas, iova + 4, &[9, 9]).unwrap();
    assert_eq!(&buffer[3..7], &[1, 9, 9, 1]);
    assert_eq!(fd.unmap(ioas, iova, 8192).unwrap_err().errno, Errno::EBUSY);
    fd.unpin(ioas, pin).unwrap();
    assert_eq!(fd.unmap(ioas, iova, 8192).unwrap(), 8192);
    assert_eq!(
        fd.destroy(softiommu_engine::api::ObjectId(ioas.0 + 1))
            .unwrap_err()
            .errno,
        Errno::ENOENT
    );
}
