//! `IOMMU_IOAS_MAP` and `IOMMU_IOAS_UNMAP` of 1 GiB of populated anonymous
//! memory through the shim, into an IOAS with one or two mock domains, in
//! 4 KiB pages and in 2 MiB transparent huge pages: what a VMM pays to map
//! guest RAM at start. A C program (`benches/c/map_big.c`) populates the
//! buffer once and times the phase asked for; criterion collects its
//! timings (`iter_custom`, one iteration = one map or unmap of 1 GiB).
//!
//! Run: `cargo bench -p softiommu --bench map_big`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
mod common;

fn map_big(c: &mut Criterion) {
    let timer = common::build_timer("map_big");
    let mut g = c.benchmark_group("map_1g");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(1 << 30));
    for (domains, pages) in [(1, "4k"), (2, "4k"), (1, "huge")] {
        for phase in ["map", "unmap"] {
            let name = format!("{phase}_{pages}_{domains}_domain");
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let args = [
                        "1024",
                        &domains.to_string(),
                        pages,
                        &iters.to_string(),
                        phase,
                    ]
                    .map(String::from);
                    common::timed(&timer, None, &args)
                })
            });
        }
    }
    g.finish();
    let _ = std::fs::remove_file(&timer);
}

criterion_group!(benches, map_big);
criterion_main!(benches);
