//! IO address spaces through the raw entry point: `IOAS_MAP`, `IOAS_UNMAP`,
//! `IOAS_COPY`, `IOAS_IOVA_RANGES`, `IOAS_ALLOW_IOVAS`, reserved ranges,
//! `IOMMU_OPTION`, `IOAS_MAP_FILE` and `IOAS_CHANGE_PROCESS`, with valid and
//! malformed input, against the errno Linux returns.

mod common;
use common::cmd::{self, RW};
use common::*;
use softiommu_engine::memory::SimFile;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use std::sync::Arc;
use zerocopy::IntoBytes;

// ---- IOAS_MAP / UNMAP ------------------------------------------------------------------------

#[test]
fn map_rejects_bad_flags_reserved_overflow_and_missing_access() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let ok = IommuIoasMap {
        size: 40,
        flags: RW,
        ioas_id: ioas,
        reserved: 0,
        user_va: BUF,
        length: PAGE,
        iova: 0,
    };
    let fixed = RW | IOMMU_IOAS_MAP_FIXED_IOVA;
    test_err_ioctl(
        &mut h,
        IOMMU_IOAS_MAP,
        &[
            (
                "an unknown flag",
                IommuIoasMap {
                    flags: RW | 8,
                    ..ok
                },
                Errno::EOPNOTSUPP,
            ),
            (
                "a reserved field",
                IommuIoasMap { reserved: 1, ..ok },
                Errno::EOPNOTSUPP,
            ),
            (
                "user_va + length wraps",
                IommuIoasMap {
                    length: u64::MAX,
                    ..ok
                },
                Errno::EOVERFLOW,
            ),
            (
                "a fixed IOVA + length wraps",
                IommuIoasMap {
                    flags: fixed,
                    iova: u64::MAX,
                    ..ok
                },
                Errno::EOVERFLOW,
            ),
            (
                "neither readable nor writeable",
                IommuIoasMap {
                    flags: IOMMU_IOAS_MAP_FIXED_IOVA,
                    ..ok
                },
                Errno::EINVAL,
            ),
            (
                "an unknown IOAS",
                IommuIoasMap { ioas_id: 99, ..ok },
                Errno::ENOENT,
            ),
            (
                "IOAS id 0",
                IommuIoasMap { ioas_id: 0, ..ok },
                Errno::ENOENT,
            ),
            (
                "zero length",
                IommuIoasMap { length: 0, ..ok },
                Errno::EINVAL,
            ),
            (
                "user_va near the top wraps",
                IommuIoasMap {
                    user_va: u64::MAX - 10,
                    ..ok
                },
                Errno::EOVERFLOW,
            ),
        ],
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 0);
}

#[test]
fn fixed_maps_refuse_overlap_reserved_ranges_and_misalignment() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, ioas, BUF, 4 * PAGE, 0x10_0000),
        Ok(0x10_0000)
    );
    // (user_va, length, iova)
    let fixed = |h: &mut Harness, (va, len, iova)| cmd::ioas_map_fixed(h, ioas, va, len, iova);
    test_err(
        &mut h,
        &[
            ("inside an area", (BUF, PAGE, 0x10_3000), Errno::EEXIST),
            (
                "across an area's start",
                (BUF, 2 * PAGE, 0x0f_f000),
                Errno::EEXIST,
            ),
        ],
        fixed,
    );
    cmd::add_reserved(&mut h, ioas, 0x20_0000, 0x1_0000).unwrap();
    test_err(
        &mut h,
        &[
            (
                "inside a reserved range",
                (BUF, PAGE, 0x20_8000),
                Errno::EINVAL,
            ),
            (
                "across a reserved range's start",
                (BUF, 2 * PAGE, 0x1f_f000),
                Errno::EINVAL,
            ),
            (
                "an IOVA that wraps",
                (BUF, 2 * PAGE, u64::MAX - PAGE),
                Errno::EOVERFLOW,
            ),
        ],
        fixed,
    );
    // With huge pages off the alignment is PAGE_SIZE.
    cmd::set_huge_pages(&mut h, ioas, false).unwrap();
    test_err(
        &mut h,
        &[
            ("an unaligned IOVA", (BUF, PAGE, 0x40_0800), Errno::EINVAL),
            ("an unaligned length", (BUF, 100, 0x40_0000), Errno::EINVAL),
            (
                "an unaligned user_va",
                (BUF + 0x800, PAGE, 0x40_0000),
                Errno::EINVAL,
            ),
        ],
        fixed,
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 1);
}

#[test]
fn automatic_iovas_keep_the_source_alignment_and_never_use_zero() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let a = cmd::ioas_map(&mut h, ioas, RW, BUF, PAGE, 0).unwrap();
    assert_ne!(a, 0);
    assert_eq!(a % PAGE, 0);
    let b = cmd::ioas_map(&mut h, ioas, RW, BUF + 0x10, 64, 0).unwrap();
    assert_eq!(b % 16, 0);
    assert_eq!(b % PAGE, 0x10, "the page offset of the source is kept");
    let c = cmd::ioas_map(&mut h, ioas, RW, BUF + 0x10_0000, 0x10_0000, 0).unwrap();
    assert_eq!(c % 0x10_0000, 0);
    for (iova, len) in [(a, PAGE), (b, 64), (c, 0x10_0000)] {
        assert_eq!(cmd::ioas_unmap(&mut h, ioas, iova, len), Ok(len));
    }
}

#[test]
fn the_hole_index_is_built_by_the_first_automatic_map_and_kept_after() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    // Fixed maps with gaps between them, and one unmapped again.
    for i in 0..8 {
        let iova = 0x100_0000 + 2 * PAGE * i;
        assert_eq!(cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, iova), Ok(iova));
    }
    assert_eq!(
        cmd::ioas_unmap(&mut h, ioas, 0x100_0000 + 2 * PAGE, PAGE),
        Ok(PAGE)
    );
    assert!(!h.ctx.ioas(ioas).unwrap().free_space_built());
    let holes = h.ctx.ioas(ioas).unwrap().holes();
    assert!(holes.contains(&(0x100_0000 + PAGE, 0x100_0000 + 4 * PAGE - 1)));
    // The first automatic map builds the index from the areas...
    let a = cmd::ioas_map(&mut h, ioas, RW, BUF, PAGE, 0).unwrap();
    let t = h.ctx.ioas(ioas).unwrap();
    assert!(t.free_space_built() && t.free_space_is_consistent());
    assert!(!t.holes().iter().any(|&(s, l)| s <= a && a <= l));
    // ...and fixed maps and unmaps keep it in step from then on.
    for i in 8..16 {
        let iova = 0x100_0000 + 2 * PAGE * i;
        assert_eq!(cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, iova), Ok(iova));
    }
    assert_eq!(cmd::ioas_unmap(&mut h, ioas, 0x100_0000, PAGE), Ok(PAGE));
    let t = h.ctx.ioas(ioas).unwrap();
    assert!(t.free_space_built() && t.free_space_is_consistent());
}

#[test]
fn automatic_iovas_stay_inside_allowed_ranges_and_run_out_with_enospc() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
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
    let a = cmd::ioas_map(&mut h, ioas, RW, BUF, PAGE, 0).unwrap();
    let b = cmd::ioas_map(&mut h, ioas, RW, BUF, 2 * PAGE, 0).unwrap();
    assert!((0x10_0000..=0x10_3fff).contains(&a) && (0x10_0000..=0x10_3fff).contains(&b));
    assert_eq!(
        cmd::ioas_map(&mut h, ioas, RW, BUF, 2 * PAGE, 0),
        Err(Errno::ENOSPC)
    );
    // A fixed map may still go outside the allowed ranges.
    assert_eq!(
        cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, 0x50_0000),
        Ok(0x50_0000)
    );
}

#[test]
fn unmap_takes_whole_areas_only() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    for i in 0..4 {
        cmd::ioas_map_fixed(&mut h, ioas, BUF, 8 * PAGE, 0x10_0000 + i * 16 * PAGE).unwrap();
    }
    // (iova, length)
    let unmap = |h: &mut Harness, (iova, len)| cmd::ioas_unmap(h, ioas, iova, len);
    test_err(
        &mut h,
        &[
            (
                "half of the first area",
                (0x10_0000 - 4 * PAGE, 8 * PAGE),
                Errno::ENOENT,
            ),
            (
                "half of the last area",
                (0x10_0000 + 3 * 16 * PAGE + 4 * PAGE, 8 * PAGE),
                Errno::ENOENT,
            ),
            // Two whole areas and part of a third change nothing.
            (
                "two areas and part of a third",
                (0x10_0000, 2 * 16 * PAGE + 4 * PAGE),
                Errno::ENOENT,
            ),
        ],
        unmap,
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().area_count(), 4);
    assert_eq!(
        cmd::ioas_unmap(
            &mut h,
            ioas,
            0x10_0000 - 4 * PAGE,
            3 * 16 * PAGE + 8 * PAGE + 8 * PAGE
        ),
        Ok(32 * PAGE)
    );
    test_err(
        &mut h,
        &[
            ("an area already unmapped", (0x10_0000, PAGE), Errno::ENOENT),
            ("zero length", (0x10_0000, 0), Errno::EINVAL),
            ("a range past 2^64", (u64::MAX - 1, 3), Errno::EOVERFLOW),
            (
                "a range ending at 2^64 - 1",
                (u64::MAX - 1, 2),
                Errno::ENOENT,
            ),
            ("one byte past 2^64", (u64::MAX, 1), Errno::EOVERFLOW),
        ],
        unmap,
    );
    assert_eq!(
        cmd::ioas_unmap(&mut h, ioas, 0, u64::MAX),
        Ok(0),
        "unmap-all of nothing succeeds"
    );
    assert_eq!(cmd::ioas_unmap(&mut h, 77, 0, u64::MAX), Err(Errno::ENOENT));
}

#[test]
fn an_area_at_the_top_of_the_iova_space() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let top = u64::MAX - PAGE + 1;
    // length and iova below ULONG_MAX, last byte = u64::MAX.
    assert_eq!(cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, top), Ok(top));
    assert_eq!(cmd::ioas_unmap(&mut h, ioas, top, PAGE), Ok(PAGE));
}

// ---- COPY ------------------------------------------------------------------------------------

#[test]
fn maps_share_a_stand_in_until_something_pins_or_copies_them() {
    let mut h = Harness::new();
    let a = cmd::ioas_alloc(&mut h).unwrap();
    let b = cmd::ioas_alloc(&mut h).unwrap();
    for i in 0..3 {
        let iova = 0x10_0000 + i * 0x1_0000;
        cmd::ioas_map_fixed(&mut h, a, BUF + i * 2 * PAGE, PAGE, iova).unwrap();
    }
    let pages_of = |h: &Harness, ioas: u32| -> Vec<Arc<softiommu_engine::pages::Pages>> {
        let t = h.ctx.ioas(ioas).unwrap();
        t.areas().map(|x| x.pages.clone()).collect()
    };
    let p = pages_of(&h, a);
    assert!(p.iter().all(|x| x.is_stand_in() && Arc::ptr_eq(x, &p[0])));

    // A copy shares the source area's own pages (one pin per page
    // between them, as in Linux); the other areas keep the stand-in.
    let mut c = IommuIoasCopy {
        size: 40,
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: PAGE,
        dst_iova: 0x40_0000,
        src_iova: 0x11_0000,
    };
    h.cmd(IOMMU_IOAS_COPY, &mut c).unwrap();
    let (p, q) = (pages_of(&h, a), pages_of(&h, b));
    assert!(!p[1].is_stand_in() && Arc::ptr_eq(&p[1], &q[0]));
    assert!(p[0].is_stand_in() && p[2].is_stand_in());

    // A pin takes pages of its own for the area it pins; a pin that fails
    // leaves the areas it met on the stand-in.
    let t = h.ctx.ioas_mut(a).unwrap();
    assert_eq!(t.pin(0x12_0000, 2 * PAGE, false), Err(Errno::ENOENT));
    assert!(pages_of(&h, a)[2].is_stand_in());
    let t = h.ctx.ioas_mut(a).unwrap();
    let pin = t.pin(0x10_0000, PAGE, false).unwrap();
    let p = pages_of(&h, a);
    assert!(!p[0].is_stand_in() && p[0].pinned() == 1 && p[2].is_stand_in());

    // Reads through a stand-in reach the program's memory.
    h.write_mem(BUF + 4 * PAGE + 8, b"stand-in");
    let mut back = [0u8; 8];
    h.ctx
        .ioas(a)
        .unwrap()
        .access_rw(0x12_0008, &mut back, false)
        .unwrap();
    assert_eq!(&back, b"stand-in");
    h.ctx.ioas_mut(a).unwrap().unpin(pin).unwrap();
}

#[test]
fn copy_shares_pages_and_needs_exact_coverage() {
    let mut h = Harness::new();
    let src = cmd::ioas_alloc(&mut h).unwrap();
    let dst = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, src, BUF, 4 * PAGE, 0x10_0000).unwrap();
    cmd::ioas_map_fixed(&mut h, src, BUF + 0x10_0000, 4 * PAGE, 0x10_4000).unwrap();
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

    test_err_ioctl(
        &mut h,
        IOMMU_IOAS_COPY,
        &[
            (
                "runs past the mapped areas",
                IommuIoasCopy {
                    src_iova: 0x10_6000,
                    length: 4 * PAGE,
                    ..c
                },
                Errno::ENOENT,
            ),
            (
                "an unknown flag",
                IommuIoasCopy {
                    flags: RW | 0x100,
                    ..c
                },
                Errno::EOPNOTSUPP,
            ),
            (
                "neither readable nor writeable",
                IommuIoasCopy {
                    flags: IOMMU_IOAS_MAP_FIXED_IOVA,
                    ..c
                },
                Errno::EINVAL,
            ),
            (
                "a length that wraps",
                IommuIoasCopy {
                    length: u64::MAX,
                    ..c
                },
                Errno::EOVERFLOW,
            ),
            (
                "zero length",
                IommuIoasCopy { length: 0, ..c },
                Errno::EINVAL,
            ),
            (
                "an unknown source IOAS",
                IommuIoasCopy {
                    src_ioas_id: 9,
                    ..c
                },
                Errno::ENOENT,
            ),
            (
                "an unknown destination IOAS",
                IommuIoasCopy {
                    dst_ioas_id: 9,
                    ..c
                },
                Errno::ENOENT,
            ),
            ("destination already mapped", c, Errno::EEXIST),
        ],
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
    let src = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map(
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

#[test]
fn iova_ranges_reports_holes_between_reserved_ranges() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let (r, c) = cmd::ioas_iova_ranges(&mut h, ioas, 1);
    assert_eq!(r, Ok(()));
    assert_eq!((c.num_iovas, c.out_iova_alignment), (1, 1));
    assert_eq!(
        h.read_mem(SCRATCH, 16),
        IommuIovaRange {
            start: 0,
            last: u64::MAX
        }
        .as_bytes()
    );
    cmd::add_reserved(&mut h, ioas, 0x1000, 0x1000).unwrap();
    cmd::add_reserved(&mut h, ioas, 0x8000, 0x2000).unwrap();
    let (r, c) = cmd::ioas_iova_ranges(&mut h, ioas, 1);
    assert_eq!(r, Err(Errno::EMSGSIZE));
    assert_eq!(c.num_iovas, 3, "the needed count comes back with EMSGSIZE");
    let (r, c) = cmd::ioas_iova_ranges(&mut h, ioas, 0);
    assert_eq!((r, c.num_iovas), (Err(Errno::EMSGSIZE), 3));
    let (r, _) = cmd::ioas_iova_ranges(&mut h, ioas, 3);
    assert_eq!(r, Ok(()));
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

#[test]
fn allowed_and_reserved_ranges_exclude_each_other() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let allow: &[(u64, u64)] = &[(0x2000, 0x2000)];
    test_err(
        &mut h,
        &[
            ("start must be below last", allow, Errno::EINVAL),
            ("start above last", &[(0x2000, 0x1000)], Errno::EINVAL),
            (
                "overlap",
                &[(0x1000, 0x4fff), (0x4000, 0x8fff)],
                Errno::EINVAL,
            ),
        ],
        |h, ranges| cmd::ioas_allow_iovas(h, ioas, ranges),
    );
    cmd::ioas_allow_iovas(&mut h, ioas, &[(0x1000, 0x4fff), (0x5000, 0x8fff)]).unwrap();
    assert_eq!(
        cmd::add_reserved(&mut h, ioas, 0x4000, 0x2000),
        Err(Errno::EADDRINUSE)
    );
    cmd::ioas_allow_iovas(&mut h, ioas, &[]).unwrap();
    cmd::add_reserved(&mut h, ioas, 0x4000, 0x2000).unwrap();
    assert_eq!(
        cmd::ioas_allow_iovas(&mut h, ioas, &[(0x1000, 0x4fff)]),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().allowed(), vec![]);
    cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, 0x10_0000).unwrap();
    // (ioas, start, length)
    test_err(
        &mut h,
        &[
            (
                "over a mapped area",
                (ioas, 0x10_0000, 1),
                Errno::EADDRINUSE,
            ),
            ("zero length", (ioas, 0x10_0000, 0), Errno::EINVAL),
            ("a range that wraps", (ioas, u64::MAX, 2), Errno::EOVERFLOW),
            ("an unknown IOAS", (55, 0, 2), Errno::ENOENT),
            ("the range is checked first", (55, 0, 0), Errno::EINVAL),
        ],
        |h, (id, start, len)| cmd::add_reserved(h, id, start, len),
    );
    let c = IommuIoasAllowIovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: 2,
        reserved: 0,
        allowed_iovas: 0x10,
    };
    test_err_ioctl(
        &mut h,
        IOMMU_IOAS_ALLOW_IOVAS,
        &[
            ("an unreadable array", c, Errno::EFAULT),
            (
                "a reserved field",
                IommuIoasAllowIovas { reserved: 3, ..c },
                Errno::EOPNOTSUPP,
            ),
            (
                "an unknown IOAS",
                IommuIoasAllowIovas { ioas_id: 42, ..c },
                Errno::ENOENT,
            ),
        ],
    );
}

// ---- OPTION and VFIO_IOAS ------------------------------------------------------------------

const GET: u16 = IOMMU_OPTION_OP_GET;
const SET: u16 = IOMMU_OPTION_OP_SET;
const RLIMIT_MODE: u32 = IOMMU_OPTION_RLIMIT_MODE;
const HUGE_PAGES: u32 = IOMMU_OPTION_HUGE_PAGES;

/// `IOMMU_OPTION` of a table row: (option_id, op, object_id, val64).
fn option(h: &mut Harness, (id, op, object, val): (u32, u16, u32, u64)) -> Result<u64, Errno> {
    cmd::option(h, id, op, object, val)
}

#[test]
fn rlimit_mode_follows_linux_rules() {
    let mut h = Harness::new();
    test_table(
        &mut h,
        &[
            ("the default", (RLIMIT_MODE, GET, 0, 0), Ok(0)),
            (
                "setting needs CAP_SYS_RESOURCE",
                (RLIMIT_MODE, SET, 0, 1),
                Err(Errno::EPERM),
            ),
        ],
        option,
    );
    h.creds.cap_sys_resource = true;
    test_table(
        &mut h,
        &[
            ("set with CAP_SYS_RESOURCE", (RLIMIT_MODE, SET, 0, 1), Ok(1)),
            ("reads back", (RLIMIT_MODE, GET, 0, 0), Ok(1)),
            (
                "a value above 1",
                (RLIMIT_MODE, SET, 0, 2),
                Err(Errno::EINVAL),
            ),
            (
                "an object: the mode is global",
                (RLIMIT_MODE, GET, 1, 0),
                Err(Errno::EOPNOTSUPP),
            ),
            (
                "an unknown op",
                (RLIMIT_MODE, 7, 0, 0),
                Err(Errno::EOPNOTSUPP),
            ),
        ],
        option,
    );
    cmd::ioas_alloc(&mut h).unwrap();
    test_table(
        &mut h,
        &[
            (
                "not once an IOAS exists",
                (RLIMIT_MODE, SET, 0, 0),
                Err(Errno::EBUSY),
            ),
            ("an unknown option", (9, GET, 0, 0), Err(Errno::EOPNOTSUPP)),
        ],
        option,
    );
    let reserved = IommuOption {
        size: 24,
        option_id: 0,
        op: 1,
        reserved: 1,
        object_id: 0,
        val64: 0,
    };
    test_err_ioctl(
        &mut h,
        IOMMU_OPTION,
        &[("a reserved field", reserved, Errno::EOPNOTSUPP)],
    );
}

#[test]
fn huge_pages_option_and_alignment() {
    let mut h = Harness::new();
    test_table(
        &mut h,
        &[
            (
                "read: no object 0",
                (HUGE_PAGES, GET, 0, 0),
                Err(Errno::ENOENT),
            ),
            (
                "set: no object 0",
                (HUGE_PAGES, SET, 0, 0),
                Err(Errno::ENOENT),
            ),
        ],
        option,
    );
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    test_table(
        &mut h,
        &[
            ("on by default", (HUGE_PAGES, GET, ioas, 0), Ok(1)),
            (
                "a value above 1",
                (HUGE_PAGES, SET, ioas, 2),
                Err(Errno::EINVAL),
            ),
            (
                "an unknown op",
                (HUGE_PAGES, 5, ioas, 0),
                Err(Errno::EOPNOTSUPP),
            ),
        ],
        option,
    );
    cmd::ioas_map_fixed(&mut h, ioas, BUF + 0x800, PAGE, 0x10_0800).unwrap();
    test_table(
        &mut h,
        &[
            (
                "off under an area not page aligned",
                (HUGE_PAGES, SET, ioas, 0),
                Err(Errno::EADDRINUSE),
            ),
            ("rolled back", (HUGE_PAGES, GET, ioas, 0), Ok(1)),
        ],
        option,
    );
    cmd::ioas_unmap(&mut h, ioas, 0, u64::MAX).unwrap();
    test_table(
        &mut h,
        &[
            ("off once unmapped", (HUGE_PAGES, SET, ioas, 0), Ok(0)),
            ("reads back off", (HUGE_PAGES, GET, ioas, 0), Ok(0)),
        ],
        option,
    );
    let (_, c) = cmd::ioas_iova_ranges(&mut h, ioas, 0);
    assert_eq!(c.out_iova_alignment, PAGE);
    cmd::set_huge_pages(&mut h, ioas, true).unwrap();
    let (_, c) = cmd::ioas_iova_ranges(&mut h, ioas, 0);
    assert_eq!(c.out_iova_alignment, 1);
}

// ---- MAP_FILE and CHANGE_PROCESS ---------------------------------------------------------

#[test]
fn map_file_checks_the_descriptor_its_mode_and_its_size() {
    let mut h = Harness::new();
    let file = Arc::new(SimFile::new(16 * PAGE as usize, true));
    let ro_file = Arc::new(SimFile::new(16 * PAGE as usize, false));
    h.files.insert(5, file.clone());
    h.files.insert(6, ro_file);
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    // (ioas, flags, fd, start, length), at an automatic IOVA.
    let map_file = |h: &mut Harness, (id, flags, fd, start, len)| {
        cmd::ioas_map_file(h, id, flags, fd, start, len, 0)
    };
    test_err(
        &mut h,
        &[
            ("no descriptor 9", (ioas, RW, 9, 0, PAGE), Errno::EBADF),
            ("range before fd", (ioas, RW, 9, 0, 0), Errno::EINVAL),
            (
                "last byte at 2^64 - 1 is no overflow",
                (ioas, RW, 9, u64::MAX, 1),
                Errno::EBADF,
            ),
            (
                "start + length past 2^64",
                (ioas, RW, 9, u64::MAX, 2),
                Errno::EOVERFLOW,
            ),
            ("an unknown IOAS", (8, RW, 5, 0, PAGE), Errno::ENOENT),
            (
                "writeable over a read-only file",
                (ioas, RW, 6, 0, PAGE),
                Errno::EPERM,
            ),
        ],
        map_file,
    );
    assert!(cmd::ioas_map_file(&mut h, ioas, IOMMU_IOAS_MAP_READABLE, 6, 0, PAGE, 0).is_ok());
    test_err(
        &mut h,
        &[
            (
                "past the end of the file",
                (ioas, RW, 5, 0, 17 * PAGE),
                Errno::EINVAL,
            ),
            ("zero length", (ioas, RW, 5, 0, 0), Errno::EINVAL),
            (
                "start + length past 2^64",
                (ioas, RW, 5, u64::MAX - 1, 4),
                Errno::EOVERFLOW,
            ),
            (
                "an unknown flag",
                (ioas, RW | 64, 5, 0, PAGE),
                Errno::EOPNOTSUPP,
            ),
            (
                "neither readable nor writeable",
                (ioas, 0, 5, 0, PAGE),
                Errno::EINVAL,
            ),
        ],
        map_file,
    );
    let iova = cmd::ioas_map_file(
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
        cmd::ioas_map_file(&mut h, ioas, RW, 5, 0, PAGE, 0),
        Err(Errno::EINVAL),
        "nor mapped"
    );
}

#[test]
fn change_process_moves_file_backed_charges_and_refuses_user_memory() {
    let mut h = Harness::new();
    let file = Arc::new(SimFile::new(16 * PAGE as usize, true));
    h.files.insert(5, file);
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let iova = cmd::ioas_map_file(&mut h, ioas, RW, 5, 0, 4 * PAGE, 0).unwrap();
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
    cmd::ioas_map_fixed(&mut h, ioas, BUF, PAGE, 0x90_0000).unwrap();
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
