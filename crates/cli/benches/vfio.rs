//! VFIO through the shim: a config-space dword `pread` beside an
//! `IOMMU_IOAS_IOVA_RANGES` round trip (the bar: at most twice), and
//! device initialisation (open, bind, attach, region and IRQ info, close)
//! of 1 and of 8 functions in parallel threads, as
//! `vfio_pci_device_init_perf_test` measures it. A C program under
//! `softiommu run` times the operations; criterion collects its timings.
//!
//! Run: `cargo bench -p softiommu --bench vfio`

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::time::Duration;

/// Runs the timer under `softiommu run` on the eight-function machine.
fn timed(timer: &Path, args: &[String]) -> Duration {
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/vfio8.toml");
    common::timed(timer, Some(&topology), args)
}

fn vfio(c: &mut Criterion) {
    let timer = common::build_timer("vfio_ops");
    let mut g = c.benchmark_group("vfio");
    g.sample_size(20);
    g.bench_function("config_dword_pread", |b| {
        b.iter_custom(|iters| timed(&timer, &["pread".into(), iters.to_string()]))
    });
    g.bench_function("iova_ranges_round_trip", |b| {
        b.iter_custom(|iters| timed(&timer, &["ranges".into(), iters.to_string()]))
    });
    g.sample_size(10);
    for devices in [1, 8] {
        g.bench_function(format!("init_{devices}_devices_in_parallel"), |b| {
            b.iter_custom(|iters| {
                timed(
                    &timer,
                    &["init".into(), iters.to_string(), devices.to_string()],
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, vfio);
criterion_main!(benches);
