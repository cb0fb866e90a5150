//! Page-table, IOTLB and DMA benchmarks, per format, beside the baselines
//! (a plain memcpy and vm-memory's `Iotlb`) measured in the same run.
//!
//! Map / unmap figures keep the tables on the path alive with an anchor
//! mapping, so they measure PTE work rather than table allocation. Single
//! pages are timed in batches of 255 calls (each walking from the root), so
//! the clock is read rarely; runs are one call each.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softiommu_pt::formats::{AmdV1, ArmS2, Mock, MockKind, VtdSecondStage, X86_64};
use softiommu_pt::{Access, Dma, FaultLog, Format, Iotlb, PageTable, Prot, TableConfig, VecMemory};
use vm_memory::{GuestAddress, Permissions};

const KIB4: u64 = 4096;
const MIB: u64 = 1 << 20;
const MIB2: u64 = 2 * MIB;
const GIB: u64 = 1 << 30;
/// Output addresses used by the benches; 4 KiB but not 8 KiB aligned, so the
/// 4 KiB runs cannot use larger leaves in any format.
const PA_4K: u64 = 64 * GIB + KIB4;
/// 2 MiB but not 4 MiB aligned, for the same reason.
const PA_2M: u64 = 64 * GIB + MIB2;
const DMA_SIZES: [(usize, &str); 2] = [(64 * 1024, "64K"), (1 << 20, "1M")];

/// Offset into `bytes` of its first 64-byte-aligned byte. Every buffer a
/// copy touches (DMA memory, DMA buffers, memcpy source and destination) is
/// aligned alike, so the DMA and memcpy figures compare the same copy.
fn align_offset(bytes: &[u8]) -> usize {
    (64 - (bytes.as_ptr() as usize) % 64) % 64
}

/// A zeroed, 64-byte-aligned buffer of `len` bytes inside `storage`.
fn aligned(storage: &mut Vec<u8>, len: usize, fill: u8) -> &mut [u8] {
    *storage = vec![fill; len + 64];
    let offset = align_offset(storage);
    &mut storage[offset..offset + len]
}

fn flush<F: Format>(table: &mut PageTable<F>, iova: u64, len: u64) {
    let (_, gather) = table.unmap(iova, len).unwrap();
    let _ = gather.into_range();
}

/// Time `op(i)` for `iters` values of `i`, in batches of up to 255, with
/// `undo(i)` run untimed after each batch.
fn batched(
    iters: u64,
    mut op: impl FnMut(u64),
    mut undo: impl FnMut(u64),
    mut redo_before: impl FnMut(u64),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(255);
        for i in 1..=n {
            redo_before(i);
        }
        let start = Instant::now();
        for i in 1..=n {
            op(i);
        }
        total += start.elapsed();
        for i in 1..=n {
            undo(i);
        }
        done += n;
    }
    total
}

fn bench_format<F: Format>(c: &mut Criterion, config: TableConfig, base: u64) {
    let mut group = c.benchmark_group(F::NAME);
    let mut table = PageTable::<F>::new(config.clone()).unwrap();
    let rw = Prot::READ_WRITE;

    // Single 4 KiB pages: anchor at `base` keeps the leaf table alive.
    table.map(base, PA_4K, KIB4, rw).unwrap();
    group.bench_function("map_1x4K", |b| {
        b.iter_custom(|iters| {
            let mut t = PageTable::<F>::new(config.clone()).unwrap();
            t.map(base, PA_4K, KIB4, rw).unwrap();
            let t = std::cell::RefCell::new(t);
            batched(
                iters,
                |i| {
                    black_box(
                        t.borrow_mut()
                            .map(base + i * KIB4, PA_4K + i * KIB4, KIB4, rw),
                    )
                    .unwrap()
                },
                |i| flush(&mut t.borrow_mut(), base + i * KIB4, KIB4),
                |_| {},
            )
        })
    });
    group.bench_function("unmap_1x4K", |b| {
        b.iter_custom(|iters| {
            let mut t = PageTable::<F>::new(config.clone()).unwrap();
            t.map(base, PA_4K, KIB4, rw).unwrap();
            let t = std::cell::RefCell::new(t);
            batched(
                iters,
                |i| {
                    let (bytes, gather) = t.borrow_mut().unmap(base + i * KIB4, KIB4).unwrap();
                    black_box(bytes);
                    let _ = gather.into_range();
                },
                |_| {},
                |i| {
                    t.borrow_mut()
                        .map(base + i * KIB4, PA_4K + i * KIB4, KIB4, rw)
                        .unwrap()
                },
            )
        })
    });

    // Runs of 256 leaves; the anchor sits at the far end of the same table
    // where the table has room (not for the mock, whose runs fill a table).
    for (name, size, pa) in [("256x4K", KIB4, PA_4K), ("256x2M", MIB2, PA_2M)] {
        let len = 256 * size;
        let mut t = PageTable::<F>::new(config.clone()).unwrap();
        let anchor = base + 511 * size;
        if F::GRANULE_LG2 == 12 {
            t.map(anchor, pa + 511 * size, size, rw).unwrap();
        }
        group.bench_function(format!("map_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(t.map(base, pa, len, rw)).unwrap();
                    total += start.elapsed();
                    flush(&mut t, base, len);
                }
                total
            })
        });
        group.bench_function(format!("unmap_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    t.map(base, pa, len, rw).unwrap();
                    let start = Instant::now();
                    let (bytes, gather) = t.unmap(base, len).unwrap();
                    total += start.elapsed();
                    black_box(bytes);
                    let _ = gather.into_range();
                }
                total
            })
        });
    }

    // Translation over 256 mapped 4 KiB pages.
    table
        .map(base + KIB4, PA_4K + KIB4, 255 * KIB4, rw)
        .unwrap();
    // 256 lookups per iteration, so the harness overhead is shared out.
    group.throughput(Throughput::Elements(256));
    group.bench_function("iova_to_phys_hot_x256", |b| {
        b.iter(|| {
            for i in 0..256 {
                black_box(table.iova_to_phys(black_box(base + i * KIB4 + 8)));
            }
        })
    });
    let mut iotlb = Iotlb::for_format::<F>();
    for i in 0..256 {
        iotlb
            .translate(&mut table, base + i * KIB4, Access::Read)
            .unwrap();
    }
    group.bench_function("iotlb_hit_x256", |b| {
        b.iter(|| {
            for i in 0..256 {
                let iova = black_box(base + i * KIB4 + 8);
                black_box(iotlb.translate(&mut table, iova, Access::Read)).unwrap();
            }
        })
    });

    // DMA through a domain mapped with 4 KiB leaves.
    let mut dma_table = PageTable::<F>::new(config.clone()).unwrap();
    let mut scattered_table = PageTable::<F>::new(config.clone()).unwrap();
    let mut memory = VecMemory::new(0, (8 * MIB) as usize);
    // PA `base + k` lives at `bytes[k]`: choose `base` so page-aligned PAs
    // are 64-byte-aligned in memory.
    memory.base = (64 - align_offset(&memory.bytes) as u64) % 64;
    for page in 0..256 {
        let iova = base + page * KIB4;
        dma_table.map(iova, KIB4 + page * KIB4, KIB4, rw).unwrap();
        // Reversed order: no two neighbours are contiguous in PA.
        scattered_table
            .map(iova, MIB2 + (255 - page) * KIB4 * 2 + KIB4, KIB4, rw)
            .unwrap();
    }
    let mut iotlb = Iotlb::for_format::<F>();
    let mut faults = FaultLog::default();
    for (bytes, label) in DMA_SIZES {
        group.throughput(Throughput::Bytes(bytes as u64));
        let mut storage = Vec::new();
        let buf = aligned(&mut storage, bytes, 0x5a);
        group.bench_function(BenchmarkId::new("dma_read", label), |b| {
            b.iter(|| {
                Dma {
                    table: &mut dma_table,
                    iotlb: &mut iotlb,
                    faults: &mut faults,
                    memory: &mut memory,
                }
                .read(base, black_box(&mut *buf))
                .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("dma_write", label), |b| {
            b.iter(|| {
                Dma {
                    table: &mut dma_table,
                    iotlb: &mut iotlb,
                    faults: &mut faults,
                    memory: &mut memory,
                }
                .write(base, black_box(&*buf))
                .unwrap()
            })
        });
        iotlb.invalidate_all();
        group.bench_function(BenchmarkId::new("dma_read_scattered", label), |b| {
            b.iter(|| {
                Dma {
                    table: &mut scattered_table,
                    iotlb: &mut iotlb,
                    faults: &mut faults,
                    memory: &mut memory,
                }
                .read(base, black_box(&mut *buf))
                .unwrap()
            })
        });
        iotlb.invalidate_all();
    }
    group.finish();
}

fn formats(c: &mut Criterion) {
    bench_format::<AmdV1>(c, AmdV1::config(3), 4 * GIB);
    bench_format::<VtdSecondStage>(c, VtdSecondStage::config(48, true, true), 4 * GIB);
    bench_format::<X86_64>(c, X86_64::config(false), 4 * GIB);
    bench_format::<ArmS2>(c, ArmS2::config(48), 4 * GIB);
    bench_format::<Mock>(c, Mock::config(MockKind::Default), GIB);
}

/// The baselines: memcpy of the DMA sizes, and vm-memory's IOTLB looking up
/// the same 256 × 4 KiB mappings the `iotlb_hit` benches use.
fn baselines(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline");
    for (bytes, label) in DMA_SIZES {
        group.throughput(Throughput::Bytes(bytes as u64));
        let (mut src_storage, mut dst_storage) = (Vec::new(), Vec::new());
        let src = aligned(&mut src_storage, bytes, 0x5a);
        let dst = aligned(&mut dst_storage, bytes, 0);
        group.bench_function(BenchmarkId::new("memcpy", label), |b| {
            b.iter(|| dst.copy_from_slice(black_box(&*src)))
        });
    }
    group.throughput(Throughput::Elements(256));
    let base = 4 * GIB;
    let mut vm_iotlb = vm_memory::Iotlb::new();
    for page in 0..256u64 {
        vm_iotlb
            .set_mapping(
                GuestAddress(base + page * KIB4),
                GuestAddress(PA_4K + page * KIB4),
                KIB4 as usize,
                Permissions::ReadWrite,
            )
            .unwrap();
    }
    group.bench_function("vm_memory_iotlb_lookup_x256", |b| {
        b.iter(|| {
            for i in 0..256 {
                let mut ranges = vm_memory::Iotlb::lookup(
                    &vm_iotlb,
                    GuestAddress(black_box(base + i * KIB4 + 8)),
                    1,
                    Permissions::Read,
                )
                .unwrap();
                black_box(ranges.next());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, baselines, formats);
criterion_main!(benches);
