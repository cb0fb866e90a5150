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
use zerocopy::{Immutable, IntoBytes};

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
    test_err(
        &mut h,
        &[
            ("below the first command", io(b';', 0x7f), Errno::ENOTTY),
            ("a hole in the numbers", io(b';', 0x95), Errno::ENOTTY),
            ("another hole", io(b';', 0x9f), Errno::ENOTTY),
            ("past the last command", io(b';', 0xa1), Errno::ENOTTY),
            // Right number, wrong type byte or direction bits.
            ("another type byte", io(b'x', 0x80), Errno::ENOTTY),
            (
                "direction bits set",
                IOMMU_DESTROY | 0x4008_0000,
                Errno::ENOTTY,
            ),
            (
                "a VFIO ioctl not served",
                VFIO_IOMMU_DIRTY_PAGES,
                Errno::ENOTTY,
            ),
        ],
        |h, request| h.raw(request, &mut 8u64.to_ne_bytes()),
    );
}

#[test]
fn destroy_with_an_extra_zero_tail_or_a_short_size() {
    // The selftest's cmd_ex_fail.
    let mut h = Harness::new();
    let mut zero_tail = [0u8; 16];
    zero_tail[..4].copy_from_slice(&16u32.to_ne_bytes());
    let mut dirty_tail = zero_tail;
    dirty_tail[12] = 0xaa;
    let short = IommuDestroy { size: 7, id: 0 };
    test_err(
        &mut h,
        &[
            ("a zero tail: id 0", zero_tail.to_vec(), Errno::ENOENT),
            ("a non-zero tail", dirty_tail.to_vec(), Errno::E2BIG),
            (
                "the exact size: id 0",
                IommuDestroy { size: 8, id: 0 }.as_bytes().to_vec(),
                Errno::ENOENT,
            ),
            ("a short size", short.as_bytes().to_vec(), Errno::EINVAL),
        ],
        |h, mut bytes| h.raw(IOMMU_DESTROY, &mut bytes),
    );
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

/// An `IOMMU_TEST_CMD` of `op` on `id` with `payload` at the front of its
/// union.
fn test_cmd_of(op: u32, id: u32, payload: impl IntoBytes + Immutable) -> IommuTestCmd {
    let mut c = IommuTestCmd {
        size: 72,
        op,
        id,
        ..Default::default()
    };
    c.set_payload(&payload);
    c
}

#[test]
fn device_and_hwpt_commands_validate_then_find_no_object() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let alloc = IommuHwptAlloc {
        size: 48,
        dev_id: 1,
        pt_id: ioas,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_HWPT_ALLOC,
        &[
            ("no device 1", alloc, Errno::ENOENT),
            (
                "a reserved field",
                IommuHwptAlloc {
                    reserved: 1,
                    ..alloc
                },
                Errno::EOPNOTSUPP,
            ),
            (
                "data_len without a data type",
                IommuHwptAlloc {
                    data_len: 8,
                    ..alloc
                },
                Errno::EINVAL,
            ),
        ],
    );
    let info = IommuHwInfo {
        size: 40,
        dev_id: ioas,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_GET_HW_INFO,
        &[
            ("an IOAS is not a device", info, Errno::ENOENT),
            (
                "an unknown flag",
                IommuHwInfo { flags: 2, ..info },
                Errno::EOPNOTSUPP,
            ),
        ],
    );
    let tracking = IommuHwptSetDirtyTracking {
        size: 16,
        flags: 1,
        hwpt_id: ioas,
        reserved: 0,
    };
    test_err_ioctl(
        &mut h,
        IOMMU_HWPT_SET_DIRTY_TRACKING,
        &[
            (
                "an unknown flag",
                IommuHwptSetDirtyTracking {
                    flags: 2,
                    ..tracking
                },
                Errno::EOPNOTSUPP,
            ),
            ("an IOAS is not a HWPT", tracking, Errno::ENOENT),
        ],
    );
    let bitmap = IommuHwptGetDirtyBitmap {
        size: 48,
        hwpt_id: ioas,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_HWPT_GET_DIRTY_BITMAP,
        &[
            (
                "an unknown flag",
                IommuHwptGetDirtyBitmap { flags: 4, ..bitmap },
                Errno::EOPNOTSUPP,
            ),
            ("an IOAS is not a HWPT", bitmap, Errno::ENOENT),
        ],
    );
    let inv = IommuHwptInvalidate {
        size: 32,
        hwpt_id: ioas,
        entry_num: 1,
        entry_len: 8,
        data_uptr: SCRATCH,
        ..Default::default()
    };
    let left = test_err_ioctl(
        &mut h,
        IOMMU_HWPT_INVALIDATE,
        &[
            (
                "entries of length 0",
                IommuHwptInvalidate {
                    entry_len: 0,
                    ..inv
                },
                Errno::EINVAL,
            ),
            ("an IOAS is no nested HWPT", inv, Errno::EINVAL),
            (
                "an unknown object",
                IommuHwptInvalidate {
                    hwpt_id: 999,
                    ..inv
                },
                Errno::ENOENT,
            ),
        ],
    );
    assert!(
        left.iter().all(|c| c.entry_num == 0),
        "entry_num reports the entries handled: {left:?}"
    );
    let viommu = IommuViommuAlloc {
        size: 40,
        dev_id: 1,
        hwpt_id: ioas,
        viommu_type: t::IOMMU_VIOMMU_TYPE_SELFTEST,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_VIOMMU_ALLOC,
        &[
            (
                "the default type is refused before any lookup",
                IommuViommuAlloc {
                    viommu_type: 0,
                    ..viommu
                },
                Errno::EOPNOTSUPP,
            ),
            ("no device 1", viommu, Errno::ENOENT),
            (
                "an unknown flag",
                IommuViommuAlloc { flags: 1, ..viommu },
                Errno::EOPNOTSUPP,
            ),
        ],
    );
    let vdevice = IommuVdeviceAlloc {
        size: 24,
        viommu_id: ioas,
        dev_id: 1,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_VDEVICE_ALLOC,
        &[("an IOAS is not a vIOMMU", vdevice, Errno::ENOENT)],
    );
    let veventq = IommuVeventqAlloc {
        size: 32,
        viommu_id: ioas,
        veventq_depth: 4,
        veventq_type: IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_VEVENTQ_ALLOC,
        &[
            (
                "the default type first",
                IommuVeventqAlloc {
                    veventq_type: 0,
                    ..veventq
                },
                Errno::EOPNOTSUPP,
            ),
            ("an IOAS is not a vIOMMU", veventq, Errno::ENOENT),
        ],
    );
    let hw_queue = IommuHwQueueAlloc {
        size: 40,
        viommu_id: ioas,
        length: PAGE,
        hw_queue_type: IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_HW_QUEUE_ALLOC,
        &[
            (
                "the default type first",
                IommuHwQueueAlloc {
                    hw_queue_type: 0,
                    ..hw_queue
                },
                Errno::EOPNOTSUPP,
            ),
            ("an IOAS is not a vIOMMU", hw_queue, Errno::ENOENT),
        ],
    );
    let fault = IommuFaultAlloc {
        size: 16,
        flags: 1,
        ..Default::default()
    };
    test_err_ioctl(
        &mut h,
        IOMMU_FAULT_QUEUE_ALLOC,
        &[("an unknown flag", fault, Errno::EOPNOTSUPP)],
    );
    let bad_flags = t::TestMockDomain {
        dev_flags: 1 << 9,
        ..Default::default()
    };
    let limit = |id| t::TestOneId { id };
    test_ioctl(
        &mut h,
        IOMMU_TEST_CMD,
        &[
            (
                "MOCK_DOMAIN: attach to pt_id 0",
                test_cmd_of(t::op::MOCK_DOMAIN, 0, ()),
                Err(Errno::ENOENT),
            ),
            (
                "MOCK_DOMAIN_REPLACE: stdev 0",
                test_cmd_of(t::op::MOCK_DOMAIN_REPLACE, 0, ()),
                Err(Errno::ENOENT),
            ),
            (
                "MOCK_DOMAIN_FLAGS: an unknown device flag",
                test_cmd_of(t::op::MOCK_DOMAIN_FLAGS, ioas, bad_flags),
                Err(Errno::EINVAL),
            ),
            (
                "ACCESS_RW: descriptor 3 is no access",
                test_cmd_of(t::op::ACCESS_RW, 3, ()),
                Err(Errno::EBADFD),
            ),
            (
                "MD_CHECK_MAP: an IOAS is not a HWPT",
                test_cmd_of(t::op::MD_CHECK_MAP, ioas, ()),
                Err(Errno::ENOENT),
            ),
            (
                "SET_TEMP_MEMORY_LIMIT: below the minimum",
                test_cmd_of(t::op::SET_TEMP_MEMORY_LIMIT, 0, limit(11)),
                Err(Errno::EINVAL),
            ),
            (
                "SET_TEMP_MEMORY_LIMIT: 16 pages",
                test_cmd_of(t::op::SET_TEMP_MEMORY_LIMIT, 0, limit(16)),
                Ok(0),
            ),
            (
                "an unknown op",
                test_cmd_of(999, ioas, ()),
                Err(Errno::EOPNOTSUPP),
            ),
        ],
    );
    // HWPT_INVALIDATE writes entry_num back on its early failures too.
    let left = test_err_ioctl(
        &mut h,
        IOMMU_HWPT_INVALIDATE,
        &[(
            "entries without data_uptr",
            IommuHwptInvalidate {
                data_uptr: 0,
                ..inv
            },
            Errno::EINVAL,
        )],
    );
    assert_eq!(left[0].entry_num, 0);
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
