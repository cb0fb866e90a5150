//! Every iommufd command through the raw byte entry point, with valid and
//! malformed input, against the errno Linux returns.

mod common;
use common::*;
use softiommu_engine::ioas::Prot;
use softiommu_engine::memory::{SimFile, PAGE_SIZE};
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use softiommu_uapi::vfio::*;
use std::sync::Arc;
use zerocopy::IntoBytes;

const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

fn map(h: &mut Harness, ioas: u32, flags: u32, va: u64, len: u64, iova: u64) -> Result<u64, Errno> {
    let mut c = IommuIoasMap {
        size: 40,
        flags,
        ioas_id: ioas,
        user_va: va,
        length: len,
        iova,
        reserved: 0,
    };
    h.cmd(IOMMU_IOAS_MAP, &mut c).map(|_| c.iova)
}

fn map_fixed(h: &mut Harness, ioas: u32, va: u64, len: u64, iova: u64) -> Result<u64, Errno> {
    map(h, ioas, RW | IOMMU_IOAS_MAP_FIXED_IOVA, va, len, iova)
}

fn unmap(h: &mut Harness, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
    let mut c = IommuIoasUnmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length: len,
    };
    h.cmd(IOMMU_IOAS_UNMAP, &mut c).map(|_| c.length)
}

fn test_cmd(
    h: &mut Harness,
    op: u32,
    id: u32,
    fill: impl FnOnce(&mut IommuTestCmd),
) -> Result<i64, Errno> {
    let mut c = IommuTestCmd {
        size: 72,
        op,
        id,
        ..Default::default()
    };
    fill(&mut c);
    h.cmd(IOMMU_TEST_CMD, &mut c)
}

fn add_reserved(h: &mut Harness, ioas: u32, start: u64, length: u64) -> Result<i64, Errno> {
    test_cmd(h, t::op::ADD_RESERVED, ioas, |c| {
        c.set_payload(&t::TestAddReserved { start, length })
    })
}

fn option(h: &mut Harness, id: u32, op: u16, object: u32, val: u64) -> Result<u64, Errno> {
    let mut c = IommuOption {
        size: 24,
        option_id: id,
        op,
        reserved: 0,
        object_id: object,
        val64: val,
    };
    h.cmd(IOMMU_OPTION, &mut c).map(|_| c.val64)
}

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
    assert_eq!((alloc(&mut h), alloc(&mut h), alloc(&mut h)), (1, 2, 3));
    let mut d = IommuDestroy { size: 8, id: 2 };
    h.cmd(IOMMU_DESTROY, &mut d).unwrap();
    assert_eq!(h.cmd(IOMMU_DESTROY, &mut d), Err(Errno::ENOENT));
    assert_eq!(alloc(&mut h), 2);
    assert_eq!(alloc(&mut h), 4);
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
    assert_eq!(alloc(&mut h), 1, "and its id is free again");
}

// ---- IOAS_MAP / UNMAP ------------------------------------------------------------------------

#[test]
fn map_rejects_bad_flags_reserved_overflow_and_missing_access() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    assert_eq!(
        map(&mut h, ioas, RW | 8, BUF, PAGE, 0),
        Err(Errno::EOPNOTSUPP)
    );
    let mut c = IommuIoasMap {
        size: 40,
        flags: RW,
        ioas_id: ioas,
        reserved: 1,
        user_va: BUF,
        length: PAGE,
        iova: 0,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_MAP, &mut c), Err(Errno::EOPNOTSUPP));
    assert_eq!(
        map(&mut h, ioas, RW, BUF, u64::MAX, 0),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        map(
            &mut h,
            ioas,
            RW | IOMMU_IOAS_MAP_FIXED_IOVA,
            BUF,
            PAGE,
            u64::MAX
        ),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        map(&mut h, ioas, IOMMU_IOAS_MAP_FIXED_IOVA, BUF, PAGE, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(map(&mut h, 99, RW, BUF, PAGE, 0), Err(Errno::ENOENT));
    assert_eq!(map(&mut h, 0, RW, BUF, PAGE, 0), Err(Errno::ENOENT));
    assert_eq!(map(&mut h, ioas, RW, BUF, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        map(&mut h, ioas, RW, u64::MAX - 10, PAGE, 0),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 0);
}

#[test]
fn fixed_maps_refuse_overlap_reserved_ranges_and_misalignment() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, 4 * PAGE, 0x10_0000),
        Ok(0x10_0000)
    );
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, PAGE, 0x10_3000),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, 2 * PAGE, 0x0f_f000),
        Err(Errno::EEXIST)
    );
    add_reserved(&mut h, ioas, 0x20_0000, 0x1_0000).unwrap();
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, PAGE, 0x20_8000),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, 2 * PAGE, 0x1f_f000),
        Err(Errno::EINVAL)
    );
    // An IOVA that wraps.
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, 2 * PAGE, u64::MAX - PAGE),
        Err(Errno::EOVERFLOW)
    );
    // With huge pages off the alignment is PAGE_SIZE.
    option(
        &mut h,
        IOMMU_OPTION_HUGE_PAGES,
        IOMMU_OPTION_OP_SET,
        ioas,
        0,
    )
    .unwrap();
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, PAGE, 0x40_0800),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        map_fixed(&mut h, ioas, BUF, 100, 0x40_0000),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        map_fixed(&mut h, ioas, BUF + 0x800, PAGE, 0x40_0000),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 1);
}

#[test]
fn automatic_iovas_keep_the_source_alignment_and_never_use_zero() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let a = map(&mut h, ioas, RW, BUF, PAGE, 0).unwrap();
    assert_ne!(a, 0);
    assert_eq!(a % PAGE, 0);
    let b = map(&mut h, ioas, RW, BUF + 0x10, 64, 0).unwrap();
    assert_eq!(b % 16, 0);
    assert_eq!(b % PAGE, 0x10, "the page offset of the source is kept");
    let c = map(&mut h, ioas, RW, BUF + 0x10_0000, 0x10_0000, 0).unwrap();
    assert_eq!(c % 0x10_0000, 0);
    for (iova, len) in [(a, PAGE), (b, 64), (c, 0x10_0000)] {
        assert_eq!(unmap(&mut h, ioas, iova, len), Ok(len));
    }
}

#[test]
fn automatic_iovas_stay_inside_allowed_ranges_and_run_out_with_enospc() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let ranges = [IommuIovaRange {
        start: 0x10_0000,
        last: 0x10_3fff,
    }];
    h.write_mem(SCRATCH, ranges.as_bytes());
    let mut c = IommuIoasAllowIovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: 1,
        reserved: 0,
        allowed_iovas: SCRATCH,
    };
    h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c).unwrap();
    let a = map(&mut h, ioas, RW, BUF, PAGE, 0).unwrap();
    let b = map(&mut h, ioas, RW, BUF, 2 * PAGE, 0).unwrap();
    assert!((0x10_0000..=0x10_3fff).contains(&a) && (0x10_0000..=0x10_3fff).contains(&b));
    assert_eq!(map(&mut h, ioas, RW, BUF, 2 * PAGE, 0), Err(Errno::ENOSPC));
    // A fixed map may still go outside the allowed ranges.
    assert_eq!(map_fixed(&mut h, ioas, BUF, PAGE, 0x50_0000), Ok(0x50_0000));
}

#[test]
fn unmap_takes_whole_areas_only() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    for i in 0..4 {
        map_fixed(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000 + i * 16 * PAGE).unwrap();
    }
    assert_eq!(
        unmap(&mut h, ioas, 0x10_0000 - 4 * PAGE, 8 * PAGE),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        unmap(&mut h, ioas, 0x10_0000 + 3 * 16 * PAGE + 4 * PAGE, 8 * PAGE),
        Err(Errno::ENOENT)
    );
    // A range that covers two whole areas and part of a third changes nothing.
    assert_eq!(
        unmap(&mut h, ioas, 0x10_0000, 2 * 16 * PAGE + 4 * PAGE),
        Err(Errno::ENOENT)
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 4);
    assert_eq!(
        unmap(
            &mut h,
            ioas,
            0x10_0000 - 4 * PAGE,
            3 * 16 * PAGE + 8 * PAGE + 8 * PAGE
        ),
        Ok(32 * PAGE)
    );
    assert_eq!(unmap(&mut h, ioas, 0x10_0000, PAGE), Err(Errno::ENOENT));
    assert_eq!(unmap(&mut h, ioas, 0x10_0000, 0), Err(Errno::EINVAL));
    assert_eq!(unmap(&mut h, ioas, u64::MAX - 1, 3), Err(Errno::EOVERFLOW));
    assert_eq!(unmap(&mut h, ioas, u64::MAX - 1, 2), Err(Errno::ENOENT));
    assert_eq!(unmap(&mut h, ioas, u64::MAX, 1), Err(Errno::EOVERFLOW));
    assert_eq!(
        unmap(&mut h, ioas, 0, u64::MAX),
        Ok(0),
        "unmap-all of nothing succeeds"
    );
    assert_eq!(unmap(&mut h, 77, 0, u64::MAX), Err(Errno::ENOENT));
}

#[test]
fn an_area_at_the_top_of_the_iova_space() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let top = u64::MAX - PAGE + 1;
    // length and iova below ULONG_MAX, last byte = u64::MAX.
    assert_eq!(map_fixed(&mut h, ioas, BUF, PAGE, top), Ok(top));
    assert_eq!(unmap(&mut h, ioas, top, PAGE), Ok(PAGE));
}

// ---- COPY ------------------------------------------------------------------------------------

#[test]
fn copy_shares_pages_and_needs_exact_coverage() {
    let mut h = Harness::new();
    let src = alloc(&mut h);
    let dst = alloc(&mut h);
    map_fixed(&mut h, src, BUF, 4 * PAGE, 0x10_0000).unwrap();
    map_fixed(&mut h, src, BUF + 0x10_0000, 4 * PAGE, 0x10_4000).unwrap();
    let mut c = IommuIoasCopy {
        size: 40,
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
        dst_ioas_id: dst,
        src_ioas_id: src,
        length: 6 * PAGE,
        dst_iova: 0x40_0000,
        src_iova: 0x10_1000,
    };
    h.cmd(IOMMU_IOAS_COPY, &mut c).unwrap();
    let d = h.ctx.ioas(dst).unwrap();
    assert_eq!(d.area_count(), 2, "one area per source slice");
    h.write_mem(BUF + 0x10_0000, b"second");
    let mut back = [0u8; 6];
    d.access_rw(0x40_3000, &mut back, false).unwrap();
    assert_eq!(&back, b"second");

    let mut bad = c;
    bad.src_iova = 0x10_6000;
    bad.length = 4 * PAGE;
    assert_eq!(
        h.cmd(IOMMU_IOAS_COPY, &mut bad),
        Err(Errno::ENOENT),
        "runs past the mapped areas"
    );
    bad = c;
    bad.flags = RW | 0x100;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::EOPNOTSUPP));
    bad = c;
    bad.flags = IOMMU_IOAS_MAP_FIXED_IOVA;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::EINVAL));
    bad = c;
    bad.length = u64::MAX;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::EOVERFLOW));
    bad = c;
    bad.length = 0;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::EINVAL));
    bad = c;
    bad.src_ioas_id = 9;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::ENOENT));
    bad = c;
    bad.dst_ioas_id = 9;
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut bad), Err(Errno::ENOENT));
    bad = c;
    assert_eq!(
        h.cmd(IOMMU_IOAS_COPY, &mut bad),
        Err(Errno::EEXIST),
        "destination already mapped"
    );
    // Automatic destination IOVA.
    let mut auto = c;
    auto.flags = IOMMU_IOAS_MAP_READABLE;
    h.cmd(IOMMU_IOAS_COPY, &mut auto).unwrap();
    assert_ne!(auto.dst_iova, 0);
}

#[test]
fn a_writable_copy_of_read_only_pages_is_eperm() {
    let mut h = Harness::new();
    let src = alloc(&mut h);
    map(
        &mut h,
        src,
        IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
        BUF,
        PAGE,
        0x1000,
    )
    .unwrap();
    let mut c = IommuIoasCopy {
        size: 40,
        flags: RW,
        dst_ioas_id: src,
        src_ioas_id: src,
        length: PAGE,
        dst_iova: 0,
        src_iova: 0x1000,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_COPY, &mut c), Err(Errno::EPERM));
}

// ---- IOVA_RANGES, ALLOW_IOVAS, reserved -----------------------------------------------------

fn iova_ranges(h: &mut Harness, ioas: u32, num: u32) -> (Result<i64, Errno>, IommuIoasIovaRanges) {
    let mut c = IommuIoasIovaRanges {
        size: 32,
        ioas_id: ioas,
        num_iovas: num,
        reserved: 0,
        allowed_iovas: SCRATCH,
        out_iova_alignment: 0,
    };
    let r = h.cmd(IOMMU_IOAS_IOVA_RANGES, &mut c);
    (r, c)
}

#[test]
fn iova_ranges_reports_holes_between_reserved_ranges() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    let (r, c) = iova_ranges(&mut h, ioas, 1);
    assert_eq!(r, Ok(0));
    assert_eq!((c.num_iovas, c.out_iova_alignment), (1, 1));
    assert_eq!(
        h.read_mem(SCRATCH, 16),
        IommuIovaRange {
            start: 0,
            last: u64::MAX
        }
        .as_bytes()
    );
    add_reserved(&mut h, ioas, 0x1000, 0x1000).unwrap();
    add_reserved(&mut h, ioas, 0x8000, 0x2000).unwrap();
    let (r, c) = iova_ranges(&mut h, ioas, 1);
    assert_eq!(r, Err(Errno::EMSGSIZE));
    assert_eq!(c.num_iovas, 3, "the needed count comes back with EMSGSIZE");
    let (r, c) = iova_ranges(&mut h, ioas, 0);
    assert_eq!((r, c.num_iovas), (Err(Errno::EMSGSIZE), 3));
    let (r, _) = iova_ranges(&mut h, ioas, 3);
    assert_eq!(r, Ok(0));
    let got = h.read_mem(SCRATCH, 48);
    let want = [
        IommuIovaRange {
            start: 0,
            last: 0xfff,
        },
        IommuIovaRange {
            start: 0x2000,
            last: 0x7fff,
        },
        IommuIovaRange {
            start: 0xa000,
            last: u64::MAX,
        },
    ];
    assert_eq!(got, want.as_bytes());
    let mut c = IommuIoasIovaRanges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 3,
        reserved: 0,
        allowed_iovas: 0x5,
        out_iova_alignment: 0,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_IOVA_RANGES, &mut c), Err(Errno::EFAULT));
    c.reserved = 1;
    assert_eq!(
        h.cmd(IOMMU_IOAS_IOVA_RANGES, &mut c),
        Err(Errno::EOPNOTSUPP)
    );
}

fn allow(h: &mut Harness, ioas: u32, ranges: &[(u64, u64)]) -> Result<i64, Errno> {
    let v: Vec<IommuIovaRange> = ranges
        .iter()
        .map(|&(start, last)| IommuIovaRange { start, last })
        .collect();
    h.write_mem(SCRATCH, v.as_bytes());
    let mut c = IommuIoasAllowIovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: v.len() as u32,
        reserved: 0,
        allowed_iovas: SCRATCH,
    };
    h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c)
}

#[test]
fn allowed_and_reserved_ranges_exclude_each_other() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    assert_eq!(
        allow(&mut h, ioas, &[(0x2000, 0x2000)]),
        Err(Errno::EINVAL),
        "start must be below last"
    );
    assert_eq!(allow(&mut h, ioas, &[(0x2000, 0x1000)]), Err(Errno::EINVAL));
    assert_eq!(
        allow(&mut h, ioas, &[(0x1000, 0x4fff), (0x4000, 0x8fff)]),
        Err(Errno::EINVAL),
        "overlap"
    );
    allow(&mut h, ioas, &[(0x1000, 0x4fff), (0x5000, 0x8fff)]).unwrap();
    assert_eq!(
        add_reserved(&mut h, ioas, 0x4000, 0x2000),
        Err(Errno::EADDRINUSE)
    );
    allow(&mut h, ioas, &[]).unwrap();
    add_reserved(&mut h, ioas, 0x4000, 0x2000).unwrap();
    assert_eq!(
        allow(&mut h, ioas, &[(0x1000, 0x4fff)]),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().allowed(), vec![]);
    map_fixed(&mut h, ioas, BUF, PAGE, 0x10_0000).unwrap();
    assert_eq!(
        add_reserved(&mut h, ioas, 0x10_0000, 1),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(add_reserved(&mut h, ioas, 0x10_0000, 0), Err(Errno::EINVAL));
    assert_eq!(
        add_reserved(&mut h, ioas, u64::MAX, 2),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(add_reserved(&mut h, 55, 0, 2), Err(Errno::ENOENT));
    assert_eq!(
        add_reserved(&mut h, 55, 0, 0),
        Err(Errno::EINVAL),
        "the range is checked first"
    );
    let mut c = IommuIoasAllowIovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: 2,
        reserved: 0,
        allowed_iovas: 0x10,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c), Err(Errno::EFAULT));
    c.reserved = 3;
    assert_eq!(
        h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c),
        Err(Errno::EOPNOTSUPP)
    );
    c.reserved = 0;
    c.ioas_id = 42;
    assert_eq!(h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c), Err(Errno::ENOENT));
}

// ---- OPTION and VFIO_IOAS ------------------------------------------------------------------

#[test]
fn rlimit_mode_follows_linux_rules() {
    let mut h = Harness::new();
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0),
        Ok(0)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1),
        Err(Errno::EPERM)
    );
    h.creds.cap_sys_resource = true;
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1),
        Ok(1)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0),
        Ok(1)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 2),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, 0),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, 7, 0, 0),
        Err(Errno::EOPNOTSUPP)
    );
    alloc(&mut h);
    assert_eq!(
        option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 0),
        Err(Errno::EBUSY)
    );
    assert_eq!(
        option(&mut h, 9, IOMMU_OPTION_OP_GET, 0, 0),
        Err(Errno::EOPNOTSUPP)
    );
    let mut c = IommuOption {
        size: 24,
        option_id: 0,
        op: 1,
        reserved: 1,
        object_id: 0,
        val64: 0,
    };
    assert_eq!(h.cmd(IOMMU_OPTION, &mut c), Err(Errno::EOPNOTSUPP));
}

#[test]
fn huge_pages_option_and_alignment() {
    let mut h = Harness::new();
    assert_eq!(
        option(&mut h, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 0, 0),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, 0, 0),
        Err(Errno::ENOENT)
    );
    let ioas = alloc(&mut h);
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_GET,
            ioas,
            0
        ),
        Ok(1)
    );
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_SET,
            ioas,
            2
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        option(&mut h, IOMMU_OPTION_HUGE_PAGES, 5, ioas, 0),
        Err(Errno::EOPNOTSUPP)
    );
    map_fixed(&mut h, ioas, BUF + 0x800, PAGE, 0x10_0800).unwrap();
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_SET,
            ioas,
            0
        ),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_GET,
            ioas,
            0
        ),
        Ok(1),
        "rolled back"
    );
    unmap(&mut h, ioas, 0, u64::MAX).unwrap();
    option(
        &mut h,
        IOMMU_OPTION_HUGE_PAGES,
        IOMMU_OPTION_OP_SET,
        ioas,
        0,
    )
    .unwrap();
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_GET,
            ioas,
            0
        ),
        Ok(0)
    );
    let (_, c) = iova_ranges(&mut h, ioas, 0);
    assert_eq!(c.out_iova_alignment, PAGE);
    option(
        &mut h,
        IOMMU_OPTION_HUGE_PAGES,
        IOMMU_OPTION_OP_SET,
        ioas,
        1,
    )
    .unwrap();
    let (_, c) = iova_ranges(&mut h, ioas, 0);
    assert_eq!(c.out_iova_alignment, 1);
}

fn vfio_ioas(h: &mut Harness, op: u16, id: u32) -> Result<u32, Errno> {
    let mut c = IommuVfioIoas {
        size: 12,
        ioas_id: id,
        op,
        reserved: 0,
    };
    h.cmd(IOMMU_VFIO_IOAS, &mut c).map(|_| c.ioas_id)
}

#[test]
fn vfio_ioas_get_set_clear() {
    let mut h = Harness::new();
    assert_eq!(
        vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, 0),
        Err(Errno::ENOENT)
    );
    let ioas = alloc(&mut h);
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    assert_eq!(vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0), Ok(ioas));
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_CLEAR, 0).unwrap();
    assert_eq!(
        vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV)
    );
    assert_eq!(vfio_ioas(&mut h, 3, 0), Err(Errno::EOPNOTSUPP));
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    let mut d = IommuDestroy { size: 8, id: ioas };
    h.cmd(IOMMU_DESTROY, &mut d).unwrap();
    assert_eq!(
        vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV),
        "destroy clears the compat IOAS"
    );
    let mut c = IommuVfioIoas {
        size: 12,
        ioas_id: 0,
        op: 0,
        reserved: 1,
    };
    assert_eq!(h.cmd(IOMMU_VFIO_IOAS, &mut c), Err(Errno::EOPNOTSUPP));
}

// ---- MAP_FILE and CHANGE_PROCESS ---------------------------------------------------------

fn map_file(
    h: &mut Harness,
    ioas: u32,
    flags: u32,
    fd: i32,
    start: u64,
    len: u64,
    iova: u64,
) -> Result<u64, Errno> {
    let mut c = IommuIoasMapFile {
        size: 40,
        flags,
        ioas_id: ioas,
        fd,
        start,
        length: len,
        iova,
    };
    h.cmd(IOMMU_IOAS_MAP_FILE, &mut c).map(|_| c.iova)
}

#[test]
fn map_file_checks_the_descriptor_its_mode_and_its_size() {
    let mut h = Harness::new();
    let file = Arc::new(SimFile::new(16 * PAGE as usize, true));
    let ro_file = Arc::new(SimFile::new(16 * PAGE as usize, false));
    h.files.insert(5, file.clone());
    h.files.insert(6, ro_file);
    let ioas = alloc(&mut h);
    assert_eq!(map_file(&mut h, ioas, RW, 9, 0, PAGE, 0), Err(Errno::EBADF));
    assert_eq!(
        map_file(&mut h, ioas, RW, 9, 0, 0, 0),
        Err(Errno::EINVAL),
        "range before fd"
    );
    assert_eq!(
        map_file(&mut h, ioas, RW, 9, u64::MAX, 1, 0),
        Ok(u64::MAX).and(Err(Errno::EBADF)),
        "last byte at 2^64 - 1 is no overflow"
    );
    assert_eq!(
        map_file(&mut h, ioas, RW, 9, u64::MAX, 2, 0),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(map_file(&mut h, 8, RW, 5, 0, PAGE, 0), Err(Errno::ENOENT));
    assert_eq!(map_file(&mut h, ioas, RW, 6, 0, PAGE, 0), Err(Errno::EPERM));
    assert!(map_file(&mut h, ioas, IOMMU_IOAS_MAP_READABLE, 6, 0, PAGE, 0).is_ok());
    assert_eq!(
        map_file(&mut h, ioas, RW, 5, 0, 17 * PAGE, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(map_file(&mut h, ioas, RW, 5, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(
        map_file(&mut h, ioas, RW, 5, u64::MAX - 1, 4, 0),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        map_file(&mut h, ioas, RW | 64, 5, 0, PAGE, 0),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(map_file(&mut h, ioas, 0, 5, 0, PAGE, 0), Err(Errno::EINVAL));
    let iova = map_file(
        &mut h,
        ioas,
        RW | IOMMU_IOAS_MAP_FIXED_IOVA,
        5,
        2 * PAGE,
        4 * PAGE,
        0x40_0000,
    )
    .unwrap();
    h.ctx
        .ioas(ioas)
        .unwrap()
        .access_rw(iova + 1, &mut [0x42u8; 3], true)
        .unwrap();
    let mut back = [0u8; 4];
    softiommu_engine::memory::FileBacking::read_at(file.as_ref(), 2 * PAGE, &mut back).unwrap();
    assert_eq!(back, [0, 0x42, 0x42, 0x42]);
    // After truncation the pages cannot be pinned.
    file.truncate(0);
    assert_eq!(
        h.ctx.ioas_mut(ioas).unwrap().pin(iova, PAGE, false),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        map_file(&mut h, ioas, RW, 5, 0, PAGE, 0),
        Err(Errno::EINVAL)
    );
}

#[test]
fn change_process_moves_file_backed_charges_and_refuses_user_memory() {
    let mut h = Harness::new();
    let file = Arc::new(SimFile::new(16 * PAGE as usize, true));
    h.files.insert(5, file);
    let ioas = alloc(&mut h);
    let iova = map_file(&mut h, ioas, RW, 5, 0, 4 * PAGE, 0).unwrap();
    let pin = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(iova, 4 * PAGE, true)
        .unwrap();
    let old_mm = h.mem.id();
    assert_eq!(h.shared.accounting.mm(old_mm).pinned_vm, 4);
    // Another process calls CHANGE_PROCESS.
    let other: Arc<dyn softiommu_engine::memory::AddressSpace> =
        Arc::new(softiommu_engine::memory::SimMemory::new());
    let caller = softiommu_engine::Caller {
        mem: &other,
        files: &h.files,
        creds: h.creds,
    };
    let mut c = IommuIoasChangeProcess {
        size: 8,
        reserved: 0,
    };
    h.ctx
        .ioctl(
            &caller,
            IOMMU_IOAS_CHANGE_PROCESS,
            softiommu_engine::Arg::Bytes(c.as_mut_bytes()),
        )
        .unwrap();
    assert_eq!(h.shared.accounting.mm(old_mm).pinned_vm, 0);
    assert_eq!(h.shared.accounting.mm(other.id()).pinned_vm, 4);
    h.ctx.ioas_mut(ioas).unwrap().unpin(pin).unwrap();
    assert_eq!(h.shared.accounting.mm(other.id()).pinned_vm, 0);
    map_fixed(&mut h, ioas, BUF, PAGE, 0x90_0000).unwrap();
    let mut c = IommuIoasChangeProcess {
        size: 8,
        reserved: 0,
    };
    assert_eq!(h.cmd(IOMMU_IOAS_CHANGE_PROCESS, &mut c), Err(Errno::EINVAL));
    c.reserved = 1;
    assert_eq!(
        h.cmd(IOMMU_IOAS_CHANGE_PROCESS, &mut c),
        Err(Errno::EOPNOTSUPP)
    );
}

// ---- pinning and accounting ----------------------------------------------------------------

#[test]
fn pages_are_pinned_lazily_and_counted_per_page_across_contexts() {
    let mut h = Harness::new();
    let mut other = h.sibling();
    let a = alloc(&mut h);
    let b = alloc(&mut other);
    map_fixed(&mut h, a, BUF, 4 * PAGE, 0x10_0000).unwrap();
    map_fixed(&mut other, b, BUF + PAGE, 4 * PAGE, 0x10_0000).unwrap();
    let refs = |h: &mut Harness, n: u32| {
        test_cmd(h, t::op::MD_CHECK_REFS, 0, |c| {
            c.set_payload(&t::TestCheckRefs {
                length: PAGE,
                uptr: BUF + PAGE,
                refs: n,
                pad: 0,
            })
        })
    };
    assert_eq!(refs(&mut h, 0), Ok(0), "mapping pins nothing");
    assert_eq!(h.shared.accounting.user_locked(h.creds.uid), 0);
    let p1 = h
        .ctx
        .ioas_mut(a)
        .unwrap()
        .pin(0x10_0000, 4 * PAGE, true)
        .unwrap();
    let p2 = other
        .ctx
        .ioas_mut(b)
        .unwrap()
        .pin(0x10_0000, PAGE, false)
        .unwrap();
    assert_eq!(refs(&mut h, 2), Ok(0));
    assert_eq!(refs(&mut h, 1), Err(Errno::EIO));
    assert_eq!(
        h.shared.accounting.user_locked(h.creds.uid),
        5,
        "each context's pages charge separately"
    );
    // Unmapping a pinned area waits for the pin to go.
    assert_eq!(unmap(&mut h, a, 0x10_0000, 4 * PAGE), Err(Errno::EBUSY));
    h.ctx.ioas_mut(a).unwrap().unpin(p1).unwrap();
    assert_eq!(refs(&mut h, 1), Ok(0));
    other.ctx.ioas_mut(b).unwrap().unpin(p2).unwrap();
    assert_eq!(refs(&mut h, 0), Ok(0));
    assert!(h.shared.accounting.is_idle());
    let bad = test_cmd(&mut h, t::op::MD_CHECK_REFS, 0, |c| {
        c.set_payload(&t::TestCheckRefs {
            length: 100,
            uptr: BUF,
            refs: 0,
            pad: 0,
        })
    });
    assert_eq!(bad, Err(Errno::EINVAL));
}

#[test]
fn pins_beyond_the_locked_memory_limit_are_enomem_and_cap_ipc_lock_is_free() {
    let mut h = Harness::new();
    h.creds.memlock_limit = 8 * PAGE;
    let ioas = alloc(&mut h);
    map_fixed(&mut h, ioas, BUF, 16 * PAGE, 0x10_0000).unwrap();
    let first = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    assert_eq!(
        h.ctx.ioas_mut(ioas).unwrap().pin(0x10_8000, PAGE, false),
        Err(Errno::ENOMEM)
    );
    // Pinning pages already pinned charges nothing more.
    let again = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    h.ctx.ioas_mut(ioas).unwrap().unpin(again).unwrap();
    h.ctx.ioas_mut(ioas).unwrap().unpin(first).unwrap();

    let mut root = Harness::new();
    root.creds.memlock_limit = 0;
    root.creds.cap_ipc_lock = true;
    let ioas = alloc(&mut root);
    map_fixed(&mut root, ioas, BUF, 16 * PAGE, 0x10_0000).unwrap();
    let p = root
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 16 * PAGE, false)
        .unwrap();
    assert_eq!(root.shared.accounting.user_locked(root.creds.uid), 0);
    assert_eq!(root.shared.accounting.mm(root.mem.id()).pinned_vm, 16);
    root.ctx.ioas_mut(ioas).unwrap().unpin(p).unwrap();
}

#[test]
fn mm_accounting_charges_the_process() {
    let mut h = Harness::new();
    h.creds.cap_sys_resource = true;
    option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1).unwrap();
    let ioas = alloc(&mut h);
    map_fixed(&mut h, ioas, BUF, 2 * PAGE, 0x10_0000).unwrap();
    let p = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 2 * PAGE, false)
        .unwrap();
    let mm = h.shared.accounting.mm(h.mem.id());
    assert_eq!((mm.locked_vm, mm.pinned_vm), (2, 2));
    assert_eq!(h.shared.accounting.user_locked(h.creds.uid), 0);
    h.ctx.ioas_mut(ioas).unwrap().unpin(p).unwrap();
}

#[test]
fn pinning_unmapped_or_read_only_memory_is_efault() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    // Lazy: mapping memory that is not there succeeds until something pins it.
    map_fixed(&mut h, ioas, 0x4000_0000, PAGE, 0x10_0000).unwrap();
    map_fixed(&mut h, ioas, RO, PAGE, 0x20_0000).unwrap();
    let t = h.ctx.ioas_mut(ioas).unwrap();
    assert_eq!(t.pin(0x10_0000, PAGE, false), Err(Errno::EFAULT));
    assert_eq!(t.pin(0x20_0000, PAGE, true), Err(Errno::EFAULT));
    assert!(t.pin(0x20_0000, PAGE, false).is_ok());
    assert_eq!(t.pin(0x30_0000, PAGE, false), Err(Errno::ENOENT));
}

#[test]
fn closing_a_context_destroys_everything_and_releases_every_pin() {
    let mut h = Harness::new();
    let a = alloc(&mut h);
    let b = alloc(&mut h);
    map_fixed(&mut h, a, BUF, 8 * PAGE, 0x10_0000).unwrap();
    let mut c = IommuIoasCopy {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: 8 * PAGE,
        dst_iova: 0,
        src_iova: 0x10_0000,
    };
    h.cmd(IOMMU_IOAS_COPY, &mut c).unwrap();
    h.ctx
        .ioas_mut(a)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    h.ctx
        .ioas_mut(b)
        .unwrap()
        .pin(c.dst_iova, 8 * PAGE, false)
        .unwrap();
    assert_eq!(h.shared.pinned_frames(), 8);
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
    assert_eq!(h.shared.pinned_frames(), 0);
    assert!(h.shared.accounting.is_idle());
}

// ---- VFIO type1 compatibility -------------------------------------------------------------

fn vfio_map(h: &mut Harness, flags: u32, va: u64, iova: u64, size: u64) -> Result<i64, Errno> {
    let mut m = VfioIommuType1DmaMap {
        argsz: 32,
        flags,
        vaddr: va,
        iova,
        size,
    };
    h.cmd(VFIO_IOMMU_MAP_DMA, &mut m)
}

fn vfio_unmap(h: &mut Harness, flags: u32, iova: u64, size: u64) -> (Result<i64, Errno>, u64) {
    let mut u = VfioIommuType1DmaUnmap {
        argsz: 24,
        flags,
        iova,
        size,
    };
    let r = h.cmd(VFIO_IOMMU_UNMAP_DMA, &mut u);
    (r, u.size)
}

#[test]
fn vfio_compat_needs_a_compat_ioas() {
    let mut h = Harness::new();
    let mut b = [0u8; 32];
    assert_eq!(h.raw(VFIO_GET_API_VERSION, &mut b), Ok(0));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_TYPE1V2_IOMMU), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR), Ok(0));
    assert_eq!(
        h.ptr(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, PAGE),
        Err(Errno::ENODEV)
    );
    assert_eq!(vfio_unmap(&mut h, 0, 0x10_0000, PAGE).0, Err(Errno::ENODEV));
    let mut info = VfioIommuType1Info {
        argsz: 24,
        ..Default::default()
    };
    assert_eq!(h.cmd(VFIO_IOMMU_GET_INFO, &mut info), Err(Errno::ENODEV));
    let ioas = alloc(&mut h);
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU), Ok(0));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), Ok(1));
}

#[test]
fn vfio_type1v2_maps_and_unmaps_whole_mappings() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU).unwrap();
    assert_eq!(
        vfio_map(&mut h, 8, BUF, 0x10_0000, PAGE),
        Err(Errno::EINVAL),
        "unknown flag"
    );
    let mut short = VfioIommuType1DmaMap {
        argsz: 31,
        flags: 0,
        vaddr: BUF,
        iova: 0,
        size: PAGE,
    };
    assert_eq!(h.cmd(VFIO_IOMMU_MAP_DMA, &mut short), Err(Errno::EINVAL));
    vfio_map(
        &mut h,
        VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        BUF,
        0x10_0000,
        4 * PAGE,
    )
    .unwrap();
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_1000, PAGE),
        (Err(Errno::ENOENT), 0)
    );
    assert_eq!(
        vfio_unmap(&mut h, 4, 0, 0).0,
        Err(Errno::EINVAL),
        "unknown flag"
    );
    assert_eq!(
        vfio_unmap(&mut h, VFIO_DMA_UNMAP_FLAG_ALL, 0x10_0000, 0).0,
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_0000, 4 * PAGE),
        (Ok(0), 4 * PAGE)
    );
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, 4 * PAGE).unwrap();
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x20_0000, 4 * PAGE).unwrap();
    assert_eq!(
        vfio_unmap(&mut h, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0),
        (Ok(0), 8 * PAGE)
    );
}

#[test]
fn vfio_type1_v1_may_unmap_inside_a_mapping() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU).unwrap();
    assert_eq!(
        option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_GET,
            ioas,
            0
        ),
        Ok(0)
    );
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, 8 * PAGE).unwrap();
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_2000, 2 * PAGE),
        (Ok(0), 2 * PAGE)
    );
    let starts: Vec<(u64, u64)> = h
        .ctx
        .ioas(ioas)
        .unwrap()
        .areas()
        .map(|a| (a.start, a.length()))
        .collect();
    assert_eq!(starts, vec![(0x10_0000, 2 * PAGE), (0x10_4000, 4 * PAGE)]);
    // The pieces still reach the right bytes.
    h.write_mem(BUF + 5 * PAGE, b"v1");
    let mut back = [0u8; 2];
    h.ctx
        .ioas(ioas)
        .unwrap()
        .access_rw(0x10_5000, &mut back, false)
        .unwrap();
    assert_eq!(&back, b"v1");
}

#[test]
fn vfio_get_info_returns_the_capability_chain() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
    vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    let mut small = VfioIommuType1Info {
        argsz: 15,
        ..Default::default()
    };
    assert_eq!(h.cmd(VFIO_IOMMU_GET_INFO, &mut small), Err(Errno::EINVAL));
    let mut info = VfioIommuType1Info {
        argsz: 24,
        ..Default::default()
    };
    h.cmd(VFIO_IOMMU_GET_INFO, &mut info).unwrap();
    assert_eq!(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    assert_eq!(info.iova_pgsizes, !(PAGE_SIZE - 1));
    assert_eq!(info.cap_offset, 0, "too small for the caps");
    assert_eq!(info.argsz, 24 + 12 + 16 + 16);
    let mut buf = vec![0u8; 68];
    buf[..4].copy_from_slice(&68u32.to_ne_bytes());
    h.raw(VFIO_IOMMU_GET_INFO, &mut buf).unwrap();
    let cap_offset = u32::from_ne_bytes(buf[16..20].try_into().unwrap());
    assert_eq!(cap_offset, 24);
    assert_eq!(
        u16::from_ne_bytes([buf[24], buf[25]]),
        VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
    );
    assert_eq!(
        u32::from_ne_bytes(buf[28..32].try_into().unwrap()),
        36,
        "next capability"
    );
    assert_eq!(
        u32::from_ne_bytes(buf[32..36].try_into().unwrap()),
        u32::MAX
    );
    assert_eq!(
        u16::from_ne_bytes([buf[36], buf[37]]),
        VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
    );
    assert_eq!(u32::from_ne_bytes(buf[44..48].try_into().unwrap()), 1);
    assert_eq!(
        u64::from_ne_bytes(buf[60..68].try_into().unwrap()),
        u64::MAX
    );
}

// ---- commands on objects that arrive with later issues ------------------------------------

#[test]
fn device_and_hwpt_commands_validate_then_find_no_object() {
    let mut h = Harness::new();
    let ioas = alloc(&mut h);
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
        test_cmd(&mut h, t::op::MOCK_DOMAIN, 0, |_| ()),
        Err(Errno::ENOENT),
        "attach to pt_id 0"
    );
    assert_eq!(
        test_cmd(&mut h, t::op::MOCK_DOMAIN_REPLACE, 0, |_| ()),
        Err(Errno::ENOENT),
        "stdev 0"
    );
    let bad_flags = t::TestMockDomain {
        dev_flags: 1 << 9,
        ..Default::default()
    };
    assert_eq!(
        test_cmd(&mut h, t::op::MOCK_DOMAIN_FLAGS, ioas, |c| c
            .set_payload(&bad_flags)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        test_cmd(&mut h, t::op::ACCESS_RW, 3, |_| ()),
        Err(Errno::EBADFD)
    );
    assert_eq!(
        test_cmd(&mut h, t::op::MD_CHECK_MAP, ioas, |_| ()),
        Err(Errno::ENOENT),
        "an IOAS is not a HWPT"
    );
    let limit = |id| move |c: &mut IommuTestCmd| c.set_payload(&t::TestOneId { id });
    assert_eq!(
        test_cmd(&mut h, t::op::SET_TEMP_MEMORY_LIMIT, 0, limit(11)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        test_cmd(&mut h, t::op::SET_TEMP_MEMORY_LIMIT, 0, limit(16)),
        Ok(0)
    );
    assert_eq!(test_cmd(&mut h, 999, ioas, |_| ()), Err(Errno::EOPNOTSUPP));
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
    assert_eq!(fd.destroy(ioas.0 + 1).unwrap_err().errno, Errno::ENOENT);
}
