//! Two-stage translation against single-stage: a device reads 4 KiB pages
//! through an x86-64 stage 1 kept in guest memory and a stage-2 table, with
//! the stage-1 IOTLB hot (translations cached) and cold (every access walks
//! the guest's four levels, each entry's GPA itself translated by stage 2),
//! beside the same reads through the stage-2 table alone.
//!
//! Run: `cargo bench -p softiommu-pt --bench nested -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use softiommu_pt::nested::{NestedDma, Stage1, Stage1Format, Stage1Tlb};
use softiommu_pt::table::TableConfig;
use softiommu_pt::{AnyPageTable, DmaMemory, FaultLog, FormatKind, Prot, VecMemory};

/// Host memory behind the guest: 8 MiB at PA 1 GiB.
const HOST_PA: u64 = 1 << 30;
const GUEST_BYTES: u64 = 8 << 20;
/// 1024 stage-1 pages at IOVA 1 GiB → GPA 4 MiB.
const IOVA: u64 = 1 << 30;
const DATA_GPA: u64 = 4 << 20;
const PAGES: u64 = 1024;

fn setup() -> (AnyPageTable, VecMemory, Stage1) {
    let mut s2 = AnyPageTable::new(
        FormatKind::VtdSecondStage,
        TableConfig::new(3, 48, u64::MAX),
    )
    .expect("a 4-level table");
    s2.map(0, HOST_PA, GUEST_BYTES, Prot::READ_WRITE).unwrap();
    let mut mem = VecMemory::new(HOST_PA, GUEST_BYTES as usize);
    let mut put = |gpa: u64, value: u64| {
        mem.write_phys(HOST_PA + gpa, &value.to_le_bytes()).unwrap();
    };
    // Tables: L3 at GPA 0, L2 at 4K, L1 at 8K, two L0 tables at 12K and 16K.
    put(8 * ((IOVA >> 39) & 511), 0x1000 | 0x7);
    put(0x1000 + 8 * ((IOVA >> 30) & 511), 0x2000 | 0x7);
    for l0 in 0..2u64 {
        let at = IOVA + l0 * (2 << 20);
        put(
            0x2000 + 8 * ((at >> 21) & 511),
            (0x3000 + l0 * 0x1000) | 0x7,
        );
    }
    for page in 0..PAGES {
        let at = IOVA + page * 4096;
        let l0 = 0x3000 + (page / 512) * 0x1000;
        put(l0 + 8 * ((at >> 12) & 511), (DATA_GPA + page * 4096) | 0x7);
    }
    let s1 = Stage1 {
        format: Stage1Format::X86_64,
        root_gpa: 0,
        top_level: 3,
    };
    (s2, mem, s1)
}

fn nested(c: &mut Criterion) {
    let (mut s2, mut mem, s1) = setup();
    let mut s2_iotlb = s2.new_iotlb();
    let mut faults = FaultLog::new(1);
    let mut buf = vec![0u8; 4096];
    let mut g = c.benchmark_group("nested_4K_read");

    let mut page = 0u64;
    g.bench_function("single_stage", |b| {
        b.iter(|| {
            page = (page + 1) % PAGES;
            s2.dma_read(
                &mut s2_iotlb,
                &mut faults,
                &mut mem,
                DATA_GPA + page * 4096,
                &mut buf,
            )
            .unwrap();
        })
    });

    let mut tlb = Stage1Tlb::default();
    g.bench_function("two_stage_stage1_tlb_hot", |b| {
        b.iter(|| {
            page = (page + 1) % PAGES;
            NestedDma {
                stage1: s1,
                tlb: &mut tlb,
                stage2: &mut s2,
                stage2_iotlb: &mut s2_iotlb,
                faults: &mut faults,
                memory: &mut mem,
            }
            .read(IOVA + page * 4096, &mut buf)
            .unwrap();
        })
    });

    g.bench_function("two_stage_full_walk", |b| {
        b.iter(|| {
            page = (page + 1) % PAGES;
            tlb.invalidate_all();
            NestedDma {
                stage1: s1,
                tlb: &mut tlb,
                stage2: &mut s2,
                stage2_iotlb: &mut s2_iotlb,
                faults: &mut faults,
                memory: &mut mem,
            }
            .read(IOVA + page * 4096, &mut buf)
            .unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, nested);
criterion_main!(benches);
