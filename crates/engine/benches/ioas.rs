//! IOAS benchmarks: a map+unmap pair beside 1k, 100k and 1M mapped areas
//! (in a table mapped only at fixed IOVAs, and in one that keeps its hole
//! index after an automatic map), and automatic IOVA allocation in a
//! fragmented space of 1k … 1M areas.
//!
//! Run: `cargo bench -p softiommu-engine --bench ioas`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use softiommu_engine::memory::{AddressSpace, NoFiles, SimMemory, PAGE_SIZE};
use softiommu_engine::pages::EngineState;
use softiommu_engine::{Caller, Context, Credentials, MapArgs, Prot};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const RW: Prot = Prot {
    read: true,
    write: true,
};
const VA: u64 = 0x7000_0000;

/// A caller whose memory is `mem`.
fn caller_of(mem: &Arc<dyn AddressSpace>) -> Caller<'_> {
    Caller {
        mem,
        files: &NoFiles,
        creds: Credentials::default(),
    }
}

/// One page at `iova` (or an automatic one).
fn one_page_at(iova: Option<u64>) -> MapArgs {
    MapArgs {
        iova,
        length: PAGE_SIZE,
        prot: RW,
    }
}

/// A context whose IOAS holds `n` 4 KiB areas with a 4 KiB hole after each,
/// starting at `PAGE_SIZE`: every hole is too small for an 8 KiB map.
fn fragmented(n: u64) -> (Context, u32, Arc<dyn AddressSpace>) {
    let mem: Arc<dyn AddressSpace> = Arc::new(SimMemory::new());
    let mut ctx = Context::new(Arc::new(EngineState::default()));
    let ioas = ctx.ioas_alloc().unwrap();
    let caller = caller_of(&mem);
    for i in 0..n {
        let iova = PAGE_SIZE + i * 2 * PAGE_SIZE;
        ctx.ioas_map(&caller, ioas, VA, one_page_at(Some(iova)))
            .unwrap();
    }
    (ctx, ioas, mem)
}

/// Maps and unmaps one 2 MiB area at an automatic IOVA, so that the table
/// keeps its hole index from then on.
fn build_hole_index(ctx: &mut Context, caller: &Caller<'_>, ioas: u32) {
    let args = MapArgs {
        iova: None,
        length: 512 * PAGE_SIZE,
        prot: RW,
    };
    let got = ctx.ioas_map(caller, ioas, VA, args).unwrap();
    ctx.ioas_unmap(ioas, got, args.length).unwrap();
}

fn map_unmap_pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("ioas");
    // Without and with the hole index: a table mapped only at fixed IOVAs
    // never builds it; one automatic map makes the table keep it.
    for (group, holes) in [
        ("map_unmap_4k_with_areas", false),
        ("map_unmap_4k_with_areas_and_holes", true),
    ] {
        pairs_beside_areas(&mut g, group, holes);
    }
    g.finish();
}

fn pairs_beside_areas(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    holes: bool,
) {
    for n in [1_000u64, 100_000, 1_000_000] {
        let (mut ctx, ioas, mem) = fragmented(n);
        let caller = caller_of(&mem);
        if holes {
            build_hole_index(&mut ctx, &caller, ioas);
        }
        // A hole in the middle of the mapped range.
        let iova = PAGE_SIZE + n / 2 * 2 * PAGE_SIZE + PAGE_SIZE;
        let name = BenchmarkId::new(group, n);
        g.bench_function(name, |b| {
            b.iter(|| {
                let got = ctx
                    .ioas_map(&caller, ioas, VA, one_page_at(Some(iova)))
                    .unwrap();
                black_box(ctx.ioas_unmap(ioas, got, PAGE_SIZE).unwrap());
            })
        });
    }
}

fn auto_alloc(c: &mut Criterion) {
    let mut g = c.benchmark_group("auto_iova_fragmented");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let (mut ctx, ioas, mem) = fragmented(n);
        let caller = caller_of(&mem);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let got = ctx
                    .ioas_map(
                        &caller,
                        ioas,
                        VA,
                        MapArgs {
                            iova: None,
                            length: 2 * PAGE_SIZE,
                            prot: RW,
                        },
                    )
                    .unwrap();
                black_box(ctx.ioas_unmap(ioas, got, 2 * PAGE_SIZE).unwrap());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, map_unmap_pair, auto_alloc);
criterion_main!(benches);
