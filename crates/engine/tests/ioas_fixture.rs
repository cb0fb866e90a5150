//! What a user of an IOAS relies on, with 0, 1 and 2 mock domains attached:
//! the selftest's `FIXTURE_VARIANT(iommufd_ioas)` and its `mock_domains`.
//! [`ioas_fixture!`] makes one module per variant that runs every scenario
//! below on its own fixture. A scenario checks what it maps through every
//! domain (`MD_CHECK_MAP`) and through an access (`ACCESS_RW`), which reads
//! with no domain too, and the pins a map holds (`MD_CHECK_REFS`).

mod common;
use common::cmd::{self, FIXED_RW, RW};
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::test_cmd::{
    MOCK_ACCESS_RW_WRITE, MOCK_APERTURE_LAST, MOCK_APERTURE_START, MOCK_PAGE_SIZE,
};

/// Where the scenarios map: the start of the mock aperture, which every
/// variant accepts.
const IOVA: u64 = MOCK_APERTURE_START;
/// Where an access copies bytes to and from: in the writable buffer, past
/// what the scenarios map.
const STAGING: u64 = BUF + (2 << 20);

/// An IOAS with `domains.len()` mock devices attached, each through a
/// domain of its own, and an access on the IOAS for reading and writing
/// through it.
struct IoasFixture {
    h: Harness,
    ioas: u32,
    /// The HWPT of each domain.
    domains: Vec<u32>,
    access: u32,
}

impl IoasFixture {
    /// The fixture with `mock_domains` devices. A second mock device alone
    /// would share the first one's automatic domain (as in Linux, an auto
    /// domain is reused when compatible), so each later device is moved to
    /// an `IOMMU_HWPT_ALLOC`ed HWPT of its own: two page tables that must
    /// both mirror the IOAS.
    fn new(mock_domains: usize) -> Self {
        let mut h = Harness::new();
        let ioas = cmd::ioas_alloc(&mut h).unwrap();
        let mut domains = Vec::new();
        for i in 0..mock_domains {
            let md = cmd::mock_domain(&mut h, ioas).unwrap();
            let hwpt = if i == 0 {
                md.hwpt
            } else {
                let own = cmd::hwpt_alloc(&mut h, md.idev, ioas, 0).unwrap();
                assert_eq!(cmd::mock_domain_replace(&mut h, md.stdev, own), Ok(own));
                own
            };
            domains.push(hwpt);
        }
        let mut distinct = domains.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), mock_domains, "one domain per device");
        let access = cmd::create_access(&mut h, ioas, 0).unwrap();
        IoasFixture {
            h,
            ioas,
            domains,
            access,
        }
    }

    /// The pins a mapped page holds: one once a domain maps it (all domains
    /// and all areas over the same pages share it), none while nothing
    /// needs the pages.
    fn pinned(&self) -> u32 {
        u32::from(!self.domains.is_empty())
    }

    /// `MD_CHECK_REFS`: every page of `[va, va + len)` holds the pins a
    /// mapped page holds in this variant.
    #[track_caller]
    fn check_pinned(&mut self, va: u64, len: u64, what: &str) {
        let refs = self.pinned();
        assert_eq!(
            cmd::check_refs(&mut self.h, va, len, refs),
            Ok(()),
            "{what}: {va:#x}+{len:#x} pinned {refs} times"
        );
    }

    /// `[iova, iova + len)` reaches the memory at `va`: every domain maps
    /// it there, and an access reads the bytes that are there.
    #[track_caller]
    fn check_mapped(&mut self, iova: u64, len: u64, va: u64) {
        for &hwpt in &self.domains {
            assert_eq!(
                cmd::check_map(&mut self.h, hwpt, iova, len, va),
                Ok(()),
                "domain {hwpt} maps {iova:#x}+{len:#x} to {va:#x}"
            );
        }
        self.h.write_mem(STAGING, &vec![0; len as usize]);
        cmd::access_rw(&mut self.h, self.access, iova, len, STAGING, 0).unwrap();
        assert_eq!(
            self.h.read_mem(STAGING, len as usize),
            self.h.read_mem(va, len as usize),
            "an access reads {iova:#x}+{len:#x} as the memory at {va:#x}"
        );
    }

    /// `[iova, iova + len)` is gone: from every domain and for an access.
    #[track_caller]
    fn check_unmapped(&mut self, iova: u64, len: u64) {
        for &hwpt in &self.domains {
            assert_eq!(
                cmd::check_map(&mut self.h, hwpt, iova, len, BUF),
                Err(Errno::EINVAL),
                "domain {hwpt} still maps {iova:#x}"
            );
        }
        assert_eq!(
            cmd::access_rw(&mut self.h, self.access, iova, len, STAGING, 0),
            Err(Errno::ENOENT),
            "an access still reaches {iova:#x}"
        );
    }

    /// Fills `[va, va + len)` with bytes that differ page to page.
    fn fill(&self, va: u64, len: u64, seed: u8) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| seed ^ (i as u8) ^ ((i / PAGE) as u8).wrapping_mul(31))
            .collect();
        self.h.write_mem(va, &bytes);
    }
}

/// A fixed map reaches the buffer's bytes; its unmap takes them away, and
/// the pins with them.
fn map_then_unmap(mut f: IoasFixture) {
    f.fill(BUF, 8 * PAGE, 1);
    assert_eq!(
        cmd::ioas_map_fixed(&mut f.h, f.ioas, BUF, 8 * PAGE, IOVA),
        Ok(IOVA)
    );
    f.check_mapped(IOVA, 8 * PAGE, BUF);
    f.check_mapped(IOVA + 3 * PAGE, 2 * PAGE, BUF + 3 * PAGE);
    f.check_pinned(BUF, 8 * PAGE, "mapped");
    assert_eq!(
        cmd::ioas_unmap(&mut f.h, f.ioas, IOVA, 8 * PAGE),
        Ok(8 * PAGE)
    );
    f.check_unmapped(IOVA, 8 * PAGE);
    assert_eq!(cmd::check_refs(&mut f.h, BUF, 8 * PAGE, 0), Ok(()));
}

/// A copy maps the same pages at a second IOVA: a write through one is
/// read through the other, the pages are pinned once, and the copy
/// outlives its source.
fn copy_shares_the_pages(mut f: IoasFixture) {
    f.fill(BUF, 4 * PAGE, 2);
    let copy = IOVA + 0x10_0000;
    cmd::ioas_map_fixed(&mut f.h, f.ioas, BUF, 4 * PAGE, IOVA).unwrap();
    assert_eq!(
        cmd::ioas_copy(&mut f.h, FIXED_RW, (f.ioas, copy), (f.ioas, IOVA), 4 * PAGE),
        Ok(copy)
    );
    f.check_mapped(copy, 4 * PAGE, BUF);
    f.h.write_mem(STAGING, b"through the copy");
    let write = MOCK_ACCESS_RW_WRITE;
    cmd::access_rw(&mut f.h, f.access, copy + PAGE, 16, STAGING, write).unwrap();
    assert_eq!(f.h.read_mem(BUF + PAGE, 16), b"through the copy");
    f.check_mapped(IOVA, 4 * PAGE, BUF);
    f.check_pinned(BUF, 4 * PAGE, "one pin for both areas");
    assert_eq!(
        cmd::ioas_unmap(&mut f.h, f.ioas, IOVA, 4 * PAGE),
        Ok(4 * PAGE)
    );
    f.check_unmapped(IOVA, 4 * PAGE);
    f.check_mapped(copy, 4 * PAGE, BUF);
    f.check_pinned(BUF, 4 * PAGE, "the copy keeps the pages");
    assert_eq!(
        cmd::ioas_unmap(&mut f.h, f.ioas, copy, 4 * PAGE),
        Ok(4 * PAGE)
    );
    assert_eq!(cmd::check_refs(&mut f.h, BUF, 4 * PAGE, 0), Ok(()));
}

/// Unmap-all takes every area, fixed and automatic, and every pin; a second
/// one finds nothing.
fn unmap_all_releases_everything(mut f: IoasFixture) {
    let second = BUF + 0x10_0000;
    let third = BUF + 0x8_0000;
    f.fill(BUF, 4 * PAGE, 3);
    f.fill(second, 2 * PAGE, 4);
    f.fill(third, 2 * PAGE, 5);
    cmd::ioas_map_fixed(&mut f.h, f.ioas, BUF, 4 * PAGE, IOVA).unwrap();
    cmd::ioas_map_fixed(&mut f.h, f.ioas, second, 2 * PAGE, IOVA + 0x10_0000).unwrap();
    let auto = cmd::ioas_map(&mut f.h, f.ioas, RW, third, 2 * PAGE, 0).unwrap();
    let areas = [
        (IOVA, 4 * PAGE, BUF),
        (IOVA + 0x10_0000, 2 * PAGE, second),
        (auto, 2 * PAGE, third),
    ];
    for (iova, len, va) in areas {
        f.check_mapped(iova, len, va);
        f.check_pinned(va, len, "mapped");
    }
    assert_eq!(cmd::ioas_unmap(&mut f.h, f.ioas, 0, u64::MAX), Ok(8 * PAGE));
    assert_eq!(f.h.ctx.ioas(f.ioas).unwrap().area_count(), 0);
    for (iova, len, va) in areas {
        f.check_unmapped(iova, len);
        assert_eq!(cmd::check_refs(&mut f.h, va, len, 0), Ok(()));
    }
    assert_eq!(cmd::ioas_unmap(&mut f.h, f.ioas, 0, u64::MAX), Ok(0));
}

/// The IOVA ranges are everything with no domain and the mock aperture
/// with one; automatic IOVAs land inside them, fixed IOVAs outside them are
/// refused.
fn iova_ranges_follow_the_domains(mut f: IoasFixture) {
    let (ranges, alignment) = if f.domains.is_empty() {
        ((0, u64::MAX), 1)
    } else {
        ((MOCK_APERTURE_START, MOCK_APERTURE_LAST), MOCK_PAGE_SIZE)
    };
    let (r, c) = cmd::ioas_iova_ranges(&mut f.h, f.ioas, 1);
    assert_eq!(
        (r, c.num_iovas, c.out_iova_alignment),
        (Ok(()), 1, alignment)
    );
    let start = u64::from_ne_bytes(f.h.read_mem(SCRATCH, 8).try_into().unwrap());
    let last = u64::from_ne_bytes(f.h.read_mem(SCRATCH + 8, 8).try_into().unwrap());
    assert_eq!((start, last), ranges);

    f.fill(BUF, 2 * PAGE, 6);
    let auto = cmd::ioas_map(&mut f.h, f.ioas, RW, BUF, 2 * PAGE, 0).unwrap();
    assert!(
        auto >= start && auto + 2 * PAGE - 1 <= last && auto % alignment == 0,
        "{auto:#x} inside [{start:#x}, {last:#x}], aligned to {alignment:#x}"
    );
    f.check_mapped(auto, 2 * PAGE, BUF);
    let below = MOCK_APERTURE_START - 0x10_0000;
    let above = MOCK_APERTURE_LAST + 1;
    // (iova): where a fixed map of one page goes.
    let ioas = f.ioas;
    let fixed = |h: &mut Harness, iova| cmd::ioas_map_fixed(h, ioas, BUF, PAGE, iova);
    if f.domains.is_empty() {
        test_table(
            &mut f.h,
            &[
                ("below the aperture", below, Ok(below)),
                ("above the aperture", above, Ok(above)),
            ],
            fixed,
        );
        f.check_mapped(below, PAGE, BUF);
        f.check_mapped(above, PAGE, BUF);
    } else {
        test_err(
            &mut f.h,
            &[
                ("below the aperture", below, Errno::EINVAL),
                ("above the aperture", above, Errno::EINVAL),
            ],
            fixed,
        );
        f.check_unmapped(below, PAGE);
        f.check_unmapped(above, PAGE);
    }
}

/// Unmapping part of an area is refused and leaves the area whole, and a
/// second map over it is refused: what was mapped stays reachable.
fn an_area_stays_whole(mut f: IoasFixture) {
    f.fill(BUF, 8 * PAGE, 7);
    cmd::ioas_map_fixed(&mut f.h, f.ioas, BUF, 8 * PAGE, IOVA).unwrap();
    let ioas = f.ioas;
    // (iova, length)
    test_err(
        &mut f.h,
        &[
            ("its first half", (IOVA, 4 * PAGE), Errno::ENOENT),
            ("a page inside", (IOVA + 2 * PAGE, PAGE), Errno::ENOENT),
            ("past its end", (IOVA + 4 * PAGE, 8 * PAGE), Errno::ENOENT),
        ],
        |h, (iova, len)| cmd::ioas_unmap(h, ioas, iova, len),
    );
    assert_eq!(
        cmd::ioas_map_fixed(&mut f.h, f.ioas, BUF + 0x10_0000, PAGE, IOVA + PAGE),
        Err(Errno::EEXIST),
        "a fixed map over it"
    );
    f.check_mapped(IOVA, 8 * PAGE, BUF);
    f.check_pinned(BUF, 8 * PAGE, "mapped");
    assert_eq!(
        cmd::check_refs(&mut f.h, BUF + 0x10_0000, PAGE, 0),
        Ok(()),
        "the refused map pinned nothing"
    );
}

/// One module per variant `name: mock_domains`, each running every
/// scenario on a fresh fixture (like `FIXTURE_VARIANT_ADD`).
macro_rules! ioas_fixture {
    ($($variant:ident: $mock_domains:expr),* $(,)?) => {$(
        mod $variant {
            use super::IoasFixture;

            #[test]
            fn map_then_unmap() {
                super::map_then_unmap(IoasFixture::new($mock_domains));
            }
            #[test]
            fn copy_shares_the_pages() {
                super::copy_shares_the_pages(IoasFixture::new($mock_domains));
            }
            #[test]
            fn unmap_all_releases_everything() {
                super::unmap_all_releases_everything(IoasFixture::new($mock_domains));
            }
            #[test]
            fn iova_ranges_follow_the_domains() {
                super::iova_ranges_follow_the_domains(IoasFixture::new($mock_domains));
            }
            #[test]
            fn an_area_stays_whole() {
                super::an_area_stays_whole(IoasFixture::new($mock_domains));
            }
        }
    )*};
}

ioas_fixture!(no_domain: 0, one_domain: 1, two_domains: 2);
