//! One conformance suite, run against every format.
//!
//! A brute-force reference model (a map of leaves, built by trying every
//! page size from the largest down) is driven with the same seeded random
//! operations as the real table; after each step the leaves must match
//! exactly and, periodically, every page of the window is translated.

use std::collections::BTreeMap;

use softiommu_pt::formats::{AmdV1, ArmS2, Mock, MockKind, VtdSecondStage, X86_64};
use softiommu_pt::{
    Access, DirtyBitmap, Dma, FaultLog, FaultReason, Format, Iotlb, IovaRange, MapErrorKind,
    PageTable, Prot, TableConfig, UnmapError, VecMemory,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Where a format's tests run.
struct Setup {
    config: TableConfig,
    /// First IOVA of the test window (aligned to `big * 4`).
    window: u64,
    /// Bytes in the window.
    window_len: u64,
    /// A mid-size page for aligned mappings (2 MiB, or 1 MiB for the mock).
    big: u64,
}

/// Deterministic random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RefLeaf {
    size: u64,
    pa: u64,
    prot: Prot,
}

/// The reference: leaves by first IOVA.
struct Reference {
    pgsize_bitmap: u64,
    leaves: BTreeMap<u64, RefLeaf>,
}

impl Reference {
    fn new(pgsize_bitmap: u64) -> Self {
        Self {
            pgsize_bitmap,
            leaves: BTreeMap::new(),
        }
    }

    /// The leaves a map must use: at each step try every allowed size from
    /// the largest down and take the first that fits.
    fn plan(&self, mut iova: u64, mut pa: u64, mut len: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        while len > 0 {
            let size = (0..64)
                .rev()
                .map(|bit| 1u64 << bit)
                .filter(|size| self.pgsize_bitmap & size != 0)
                .find(|&size| iova % size == 0 && pa % size == 0 && size <= len)
                .expect("a page size fits");
            out.push((iova, pa, size));
            iova += size;
            pa += size;
            len -= size;
        }
        out
    }

    fn overlapping(&self, start: u64, last: u64) -> Vec<u64> {
        self.leaves
            .iter()
            .filter(|(&s, leaf)| s <= last && start <= s + (leaf.size - 1))
            .map(|(&s, _)| s)
            .collect()
    }

    /// Map like the table must: stop at the first planned leaf that overlaps.
    fn map(&mut self, iova: u64, pa: u64, len: u64, prot: Prot) -> Result<(), u64> {
        let mut mapped = 0;
        for (leaf_iova, leaf_pa, size) in self.plan(iova, pa, len) {
            if !self
                .overlapping(leaf_iova, leaf_iova + (size - 1))
                .is_empty()
            {
                return Err(mapped);
            }
            self.leaves.insert(
                leaf_iova,
                RefLeaf {
                    size,
                    pa: leaf_pa,
                    prot,
                },
            );
            mapped += size;
        }
        Ok(())
    }

    fn containing(&self, iova: u64) -> Option<(u64, RefLeaf)> {
        let (&start, leaf) = self.leaves.range(..=iova).next_back()?;
        (iova - start < leaf.size).then_some((start, *leaf))
    }

    fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, UnmapError> {
        if let Some((start, _)) = self.containing(iova) {
            if start != iova {
                return Err(UnmapError::InsideLeaf);
            }
        }
        let mut bytes = 0;
        for start in self.overlapping(iova, iova + (len - 1)) {
            bytes += self.leaves.remove(&start).unwrap().size;
        }
        Ok(bytes)
    }

    fn translate(&self, iova: u64) -> Option<(u64, Prot)> {
        self.containing(iova)
            .map(|(start, leaf)| (leaf.pa + (iova - start), leaf.prot))
    }
}

fn assert_same_leaves<F: Format>(table: &PageTable<F>, reference: &Reference, context: &str) {
    let actual: Vec<(u64, u64, u64, Prot)> = table
        .leaves()
        .iter()
        .map(|(range, leaf)| (range.start, 1u64 << leaf.size_lg2, leaf.pa, leaf.prot))
        .collect();
    let expected: Vec<(u64, u64, u64, Prot)> = reference
        .leaves
        .iter()
        .map(|(&start, leaf)| (start, leaf.size, leaf.pa, leaf.prot))
        .collect();
    assert_eq!(
        actual,
        expected,
        "{} leaves differ after {context}",
        F::NAME
    );
}

fn assert_every_page<F: Format>(table: &PageTable<F>, reference: &Reference, setup: &Setup) {
    let step = table.min_page_size();
    let mut iova = setup.window;
    while iova < setup.window + setup.window_len {
        // Check both ends of each page.
        for probe in [iova, iova + step - 1] {
            assert_eq!(
                table.iova_to_phys(probe),
                reference.translate(probe),
                "{} iova {probe:#x}",
                F::NAME
            );
        }
        iova += step;
    }
}

/// A random map or unmap inside the window; mapping sizes mix single pages
/// with runs aligned to `big` so that every leaf level gets used.
fn random_step<F: Format>(
    rng: &mut Rng,
    table: &mut PageTable<F>,
    reference: &mut Reference,
    setup: &Setup,
) -> String {
    let page = table.min_page_size();
    let pages_in_window = setup.window_len / page;
    let prot = if rng.below(3) == 0 {
        Prot::READ
    } else {
        Prot::READ_WRITE
    };
    match rng.below(10) {
        0..=3 => {
            let len = (1 + rng.below(24)) * page;
            let iova = setup.window + rng.below(pages_in_window - 24) * page;
            let pa = rng.below(1 << 20) * page;
            check_map(table, reference, iova, pa, len, prot)
        }
        4..=6 => {
            let bigs = setup.window_len / setup.big;
            let iova = setup.window + rng.below(bigs - 4) * setup.big;
            let extra = rng.below(3) * page;
            let len = (1 + rng.below(3)) * setup.big + extra;
            // Same alignment as the IOVA half the time, shifted by a page otherwise.
            let pa = rng.below(1 << 10) * setup.big + if rng.below(2) == 0 { 0 } else { page };
            check_map(table, reference, iova, pa, len, prot)
        }
        _ => {
            let len = (1 + rng.below(64)) * page * if rng.below(4) == 0 { 256 } else { 1 };
            let iova = setup.window + rng.below(pages_in_window) * page;
            let len = len.min(setup.window + setup.window_len - iova);
            check_unmap(table, reference, iova, len)
        }
    }
}

fn check_map<F: Format>(
    table: &mut PageTable<F>,
    reference: &mut Reference,
    iova: u64,
    pa: u64,
    len: u64,
    prot: Prot,
) -> String {
    let context = format!("map {iova:#x} -> {pa:#x} + {len:#x}");
    let expected = reference.map(iova, pa, len, prot);
    match (table.map(iova, pa, len, prot), expected) {
        (Ok(()), Ok(())) => {}
        (Err(err), Err(mapped)) => {
            assert_eq!(err.kind, MapErrorKind::AddressInUse, "{context}");
            assert_eq!(err.mapped, mapped, "{context}");
        }
        (got, want) => panic!("{}: {context}: got {got:?}, want {want:?}", F::NAME),
    }
    context
}

fn check_unmap<F: Format>(
    table: &mut PageTable<F>,
    reference: &mut Reference,
    iova: u64,
    len: u64,
) -> String {
    let context = format!("unmap {iova:#x} + {len:#x}");
    let expected = reference.unmap(iova, len);
    match table.unmap(iova, len) {
        Ok((bytes, gather)) => {
            let _ = gather.into_range();
            assert_eq!(Ok(bytes), expected, "{}: {context}", F::NAME);
        }
        Err(err) => assert_eq!(Err(err), expected, "{}: {context}", F::NAME),
    }
    context
}

fn random_map_unmap_matches_reference<F: Format>(setup: Setup) {
    for seed in 1..=3u64 {
        let mut rng = Rng(seed * 0x1234_5678);
        let mut table = PageTable::<F>::new(setup.config.clone()).unwrap();
        let start_pages = table.table_pages();
        let mut reference = Reference::new(table.pgsize_bitmap());
        for step in 0..120 {
            let context = random_step(&mut rng, &mut table, &mut reference, &setup);
            assert_same_leaves(&table, &reference, &context);
            if step % 30 == 29 {
                assert_every_page(&table, &reference, &setup);
            }
        }
        assert_every_page(&table, &reference, &setup);
        // Unmapping everything gives every table page back.
        check_unmap(&mut table, &mut reference, setup.window, setup.window_len);
        assert!(table.leaves().is_empty());
        assert_eq!(
            table.table_pages(),
            start_pages,
            "{} table pages leaked",
            F::NAME
        );
    }
}

fn overlapping_maps_rejected<F: Format>(setup: Setup) {
    let mut table = PageTable::<F>::new(setup.config.clone()).unwrap();
    let page = table.min_page_size();
    let base = setup.window + setup.big;
    // An existing mapping of 8 pages at base + 4 pages, and one big page.
    table.map(base + 4 * page, 0, 8 * page, Prot::READ).unwrap();
    table
        .map(base + setup.big, setup.big, setup.big, Prot::READ_WRITE)
        .unwrap();
    let mut reference = Reference::new(table.pgsize_bitmap());
    reference
        .map(base + 4 * page, 0, 8 * page, Prot::READ)
        .unwrap();
    reference
        .map(base + setup.big, setup.big, setup.big, Prot::READ_WRITE)
        .unwrap();
    let before = table.leaves();
    let attempts = [
        (base + 4 * page, 8 * page),         // identical
        (base + 6 * page, page),             // inside
        (base + 2 * page, 4 * page),         // overlaps the start
        (base + 11 * page, 4 * page),        // overlaps the end
        (base, 16 * page),                   // contains it
        (base + setup.big + page, page),     // inside the big page
        (base + setup.big - page, 2 * page), // runs into the big page
    ];
    for (iova, len) in attempts {
        let err = table.map(iova, iova, len, Prot::READ).unwrap_err();
        assert_eq!(
            err.kind,
            MapErrorKind::AddressInUse,
            "{} map {iova:#x}",
            F::NAME
        );
        // Partial progress is what the brute-force reference maps first.
        let partial = reference.map(iova, iova, len, Prot::READ).unwrap_err();
        assert_eq!(
            err.mapped,
            partial,
            "{} partial progress at {iova:#x}",
            F::NAME
        );
        if partial > 0 {
            check_unmap(&mut table, &mut reference, iova, partial);
        }
        assert_eq!(
            table.leaves(),
            before,
            "{} existing mapping changed",
            F::NAME
        );
    }
    // Unmap starting inside a leaf is refused and changes nothing.
    assert_eq!(
        table.unmap(base + setup.big + page, page).unwrap_err(),
        UnmapError::InsideLeaf
    );
    assert_eq!(table.leaves(), before);
}

fn largest_leaf_choice_matches_reference<F: Format>(setup: Setup) {
    let probe = PageTable::<F>::new(setup.config.clone()).unwrap();
    let page = probe.min_page_size();
    let big = setup.big;
    let offsets = [
        0,
        page,
        2 * page,
        16 * page,
        big - page,
        big,
        big + 4 * page,
    ];
    let lens = [
        page,
        3 * page,
        17 * page,
        big,
        big + 3 * page,
        4 * big + page,
    ];
    let mut rng = Rng(99);
    for iova_offset in offsets {
        for pa_offset in offsets {
            for len in lens {
                let iova = setup.window + 4 * big + iova_offset;
                let pa = 64 * big + pa_offset + rng.below(4) * 16 * big;
                let mut table = PageTable::<F>::new(setup.config.clone()).unwrap();
                let start_pages = table.table_pages();
                let mut reference = Reference::new(table.pgsize_bitmap());
                let context = check_map(&mut table, &mut reference, iova, pa, len, Prot::READ);
                assert_same_leaves(&table, &reference, &context);
                check_unmap(&mut table, &mut reference, iova, len);
                assert_eq!(table.table_pages(), start_pages);
            }
        }
    }
    // The largest sizes: a run over the window's biggest aligned block.
    let mut table = PageTable::<F>::new(setup.config.clone()).unwrap();
    let mut reference = Reference::new(table.pgsize_bitmap());
    let len = setup.window_len;
    let context = check_map(
        &mut table,
        &mut reference,
        setup.window,
        setup.window,
        len,
        Prot::READ,
    );
    assert_same_leaves(&table, &reference, &context);
    let context = check_map(
        &mut table,
        &mut reference,
        setup.window + len,
        setup.window + page,
        len,
        Prot::READ,
    );
    assert_same_leaves(&table, &reference, &context);
}

/// A table, its IOTLB and memory for the DMA tests.
struct Device<F: Format> {
    table: PageTable<F>,
    iotlb: Iotlb,
    faults: FaultLog,
    memory: VecMemory,
}

impl<F: Format> Device<F> {
    fn write(&mut self, iova: u64, data: &[u8]) -> Result<(), softiommu_pt::Fault> {
        Dma {
            table: &mut self.table,
            iotlb: &mut self.iotlb,
            faults: &mut self.faults,
            memory: &mut self.memory,
        }
        .write(iova, data)
    }
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), softiommu_pt::Fault> {
        Dma {
            table: &mut self.table,
            iotlb: &mut self.iotlb,
            faults: &mut self.faults,
            memory: &mut self.memory,
        }
        .read(iova, buf)
    }
    fn dirty_pages(&mut self, bitmap: &mut DirtyBitmap, clear: bool) -> Vec<u64> {
        bitmap.clear();
        let range = bitmap.range();
        let gather = self
            .table
            .read_and_clear_dirty(range.start, range.size().unwrap(), bitmap, clear)
            .unwrap();
        self.iotlb.flush(gather);
        bitmap.iter_set().collect()
    }
}

fn dirty_bits_follow_dma_writes<F: Format>(setup: Setup) {
    let table = PageTable::<F>::new(setup.config.clone()).unwrap();
    let page = table.min_page_size();
    let big = setup.big;
    let mut device = Device {
        iotlb: Iotlb::for_format::<F>(),
        table,
        faults: FaultLog::new(8),
        memory: VecMemory::new(0, (8 * big) as usize),
    };
    let mut reference = Reference::new(device.table.pgsize_bitmap());
    // Mixed leaves: big aligned pages, then small pages with shifted PAs.
    let base = setup.window;
    check_map(
        &mut device.table,
        &mut reference,
        base,
        0,
        2 * big,
        Prot::READ_WRITE,
    );
    check_map(
        &mut device.table,
        &mut reference,
        base + 2 * big,
        2 * big + page,
        64 * page,
        Prot::READ_WRITE,
    );
    check_map(
        &mut device.table,
        &mut reference,
        base + 3 * big,
        4 * big,
        8 * page,
        Prot::READ,
    );
    let mut bitmap = DirtyBitmap::new(base, page, 4 * big / page).unwrap();

    device.table.set_dirty_tracking(true);
    // Start clean (formats that write leaves already dirty report them here).
    device.dirty_pages(&mut bitmap, true);
    assert!(
        device.dirty_pages(&mut bitmap, false).is_empty(),
        "{} not clean",
        F::NAME
    );

    let writes = [
        base + 5,
        base + big + 3 * page,
        base + 2 * big + 7 * page + 9,
    ];
    let mut expected = Vec::new();
    for (i, &iova) in writes.iter().enumerate() {
        device.write(iova, &[i as u8 + 1; 4]).unwrap();
        let (pa, _) = reference.translate(iova).unwrap();
        assert_eq!(
            device.memory.bytes[pa as usize],
            i as u8 + 1,
            "{} data",
            F::NAME
        );
        let (start, leaf) = reference.containing(iova).unwrap();
        expected.extend((start - base) / page..(start - base + leaf.size) / page);
    }
    expected.sort_unstable();
    expected.dedup();
    // Reading does not dirty; a read-only page refuses the write.
    device.read(base + 3 * big, &mut [0; 16]).unwrap();
    let fault = device.write(base + 3 * big, &[1]).unwrap_err();
    assert_eq!(fault.reason, FaultReason::Permission);
    assert_eq!(fault.access, Access::Write);

    assert_eq!(
        device.dirty_pages(&mut bitmap, false),
        expected,
        "{} read",
        F::NAME
    );
    assert_eq!(
        device.dirty_pages(&mut bitmap, true),
        expected,
        "{} read+clear",
        F::NAME
    );
    assert!(
        device.dirty_pages(&mut bitmap, false).is_empty(),
        "{} cleared",
        F::NAME
    );

    // After the flush a new write is seen again.
    device.write(writes[0], &[9]).unwrap();
    assert!(!device.dirty_pages(&mut bitmap, true).is_empty());

    // Clearing without flushing the IOTLB loses the next write, as on hardware.
    device.write(writes[0], &[9]).unwrap();
    let range = bitmap.range();
    let stale = device
        .table
        .read_and_clear_dirty(range.start, range.size().unwrap(), &mut bitmap, true)
        .unwrap();
    device.write(writes[0], &[9]).unwrap();
    assert!(
        device.dirty_pages(&mut bitmap, false).is_empty(),
        "{} stale IOTLB",
        F::NAME
    );
    device.iotlb.flush(stale);
    device.write(writes[0], &[9]).unwrap();
    assert!(!device.dirty_pages(&mut bitmap, false).is_empty());

    // With tracking off, writes leave no mark.
    device.dirty_pages(&mut bitmap, true);
    device.table.set_dirty_tracking(false);
    device.write(writes[1], &[1]).unwrap();
    assert!(device.dirty_pages(&mut bitmap, false).is_empty());
}

fn dma_faults_on_unmapped_and_stale_until_flush<F: Format>(setup: Setup) {
    let table = PageTable::<F>::new(setup.config.clone()).unwrap();
    let page = table.min_page_size();
    let mut device = Device {
        iotlb: Iotlb::for_format::<F>(),
        table,
        faults: FaultLog::new(2),
        memory: VecMemory::new(0, (64 * page) as usize),
    };
    let base = setup.window;
    device
        .table
        .map(base, 0, 4 * page, Prot::READ_WRITE)
        .unwrap();
    let data: Vec<u8> = (0..4 * page).map(|i| (i % 251) as u8).collect();
    device.write(base, &data).unwrap();
    let mut back = vec![0; data.len()];
    device.read(base, &mut back).unwrap();
    assert_eq!(back, data);
    // Crossing into an unmapped page faults and copies nothing.
    let err = device
        .write(base + 3 * page, &vec![0xee; 2 * page as usize])
        .unwrap_err();
    assert_eq!(err.reason, FaultReason::NotPresent);
    assert_eq!(err.iova, base + 4 * page);
    assert_eq!(&device.memory.bytes[..data.len()], &data[..]);
    // Unmapped but not yet invalidated: the IOTLB still translates.
    let (_, gather) = device.table.unmap(base, 4 * page).unwrap();
    device.read(base, &mut back[..8]).unwrap();
    device.iotlb.flush(gather);
    assert_eq!(
        device.read(base, &mut back[..8]).unwrap_err().reason,
        FaultReason::NotPresent
    );
    // The fault log is bounded.
    for _ in 0..5 {
        let _ = device.read(base, &mut back[..1]);
    }
    assert_eq!(device.faults.len(), 2);
    assert!(device.faults.lost() >= 5);
}

macro_rules! conformance {
    ($module:ident, $format:ty, $setup:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn random_map_unmap_matches_reference() {
                super::random_map_unmap_matches_reference::<$format>($setup);
            }
            #[test]
            fn overlapping_maps_rejected() {
                super::overlapping_maps_rejected::<$format>($setup);
            }
            #[test]
            fn largest_leaf_choice_matches_reference() {
                super::largest_leaf_choice_matches_reference::<$format>($setup);
            }
            #[test]
            fn dirty_bits_follow_dma_writes() {
                super::dirty_bits_follow_dma_writes::<$format>($setup);
            }
            #[test]
            fn dma_faults_on_unmapped_and_stale_until_flush() {
                super::dma_faults_on_unmapped_and_stale_until_flush::<$format>($setup);
            }
        }
    };
}

conformance!(
    amdv1,
    AmdV1,
    Setup {
        config: AmdV1::config(3),
        window: 4 * GIB,
        window_len: 32 * MIB,
        big: 2 * MIB,
    }
);
conformance!(
    vtd_second_stage,
    VtdSecondStage,
    Setup {
        config: VtdSecondStage::config(48, true, true),
        window: 4 * GIB,
        window_len: 32 * MIB,
        big: 2 * MIB,
    }
);
conformance!(
    x86_64,
    X86_64,
    Setup {
        config: X86_64::config(false),
        window: 4 * GIB,
        window_len: 32 * MIB,
        big: 2 * MIB,
    }
);
conformance!(
    arm_s2,
    ArmS2,
    Setup {
        config: ArmS2::config(40),
        window: 4 * GIB,
        window_len: 32 * MIB,
        big: 2 * MIB,
    }
);
conformance!(
    mock,
    Mock,
    Setup {
        config: Mock::config(MockKind::Default),
        window: 32 * MIB,
        window_len: 16 * MIB,
        big: MIB,
    }
);
conformance!(
    mock_huge,
    Mock,
    Setup {
        config: Mock::config(MockKind::Huge),
        window: 32 * MIB,
        window_len: 16 * MIB,
        big: MIB,
    }
);

#[test]
fn gigabyte_leaves_are_used_when_aligned() {
    let mut table =
        PageTable::<VtdSecondStage>::new(VtdSecondStage::config(48, true, true)).unwrap();
    let mut reference = Reference::new(table.pgsize_bitmap());
    let context = check_map(
        &mut table,
        &mut reference,
        GIB - 2 * MIB,
        3 * GIB - 2 * MIB,
        GIB + 4 * MIB + 4096,
        Prot::READ,
    );
    assert_same_leaves(&table, &reference, &context);
    let sizes: Vec<u32> = table.leaves().iter().map(|(_, l)| l.size_lg2).collect();
    assert_eq!(sizes, vec![21, 30, 21, 12]);
    let range = IovaRange::new(GIB - 2 * MIB, 2 * GIB + 2 * MIB + 4095).unwrap();
    let (bytes, gather) = table.unmap(range.start, range.size().unwrap()).unwrap();
    let _ = gather.into_range();
    assert_eq!(bytes, GIB + 4 * MIB + 4096);
}
