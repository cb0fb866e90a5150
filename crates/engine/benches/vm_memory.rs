//! Translating one 4 KiB access through the rust-vmm face (`DeviceIommu`,
//! a page-table walk per call) beside vm-memory's own `Iotlb` (a range-map
//! lookup), with 1k, 10k, 100k and 1M mappings of 4 KiB.
//!
//! Run: `cargo bench -p softiommu-engine --features vm-memory --bench vm_memory`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use softiommu_engine::api::{DeviceIommu, Engine};
use softiommu_engine::Prot;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, Iommu, Iotlb, Permissions};

const GPA: u64 = 0x8000_0000;
const PAGE: u64 = 4096;

/// The IOVA of mapping `i`: every other page, so no two mappings touch,
/// from 4 GiB up (clear of the MSI window VT-d reserves below it).
fn iova(i: u64) -> u64 {
    (1 << 32) + 2 * PAGE * i
}

/// Mapping indexes to look up, spread over `n`.
fn picks(n: u64) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate_4k");
    g.sample_size(20);
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let guest = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(GPA), 1 << 20)]).unwrap();
        let host = guest.get_host_address(GuestAddress(GPA)).unwrap() as u64;
        let engine = Engine::new();
        let mut fd = engine.open();
        let (dev, _) = fd.bind_device("0000:02:00.0").unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        fd.attach(dev, ioas).unwrap();
        let rw = Prot {
            read: true,
            write: true,
        };
        let mut tlb = Iotlb::new();
        for i in 0..n {
            // Each mapping shows one of the region's 256 pages.
            let page = (i % 256) * PAGE;
            fd.map_user(ioas, host + page, PAGE, Some(iova(i)), rw)
                .unwrap();
            tlb.set_mapping(
                GuestAddress(iova(i)),
                GuestAddress(GPA + page),
                PAGE as usize,
                Permissions::ReadWrite,
            )
            .unwrap();
        }
        let iommu = DeviceIommu::new(&fd, dev, guest.clone()).unwrap();
        let picks = picks(n);
        let mut k = 0;
        g.bench_with_input(BenchmarkId::new("softiommu_device_iommu", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % picks.len();
                let mut it = iommu
                    .translate(
                        GuestAddress(iova(picks[k])),
                        PAGE as usize,
                        Permissions::Read,
                    )
                    .unwrap();
                it.next().unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("vm_memory_iotlb", n), &n, |b, _| {
            b.iter(|| {
                k = (k + 1) % picks.len();
                let mut it = Iotlb::lookup(
                    &tlb,
                    GuestAddress(iova(picks[k])),
                    PAGE as usize,
                    Permissions::Read,
                )
                .unwrap();
                it.next().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
