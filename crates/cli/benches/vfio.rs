//! VFIO through the shim: a config-space dword `pread` beside an
//! `IOMMU_IOAS_IOVA_RANGES` round trip (the bar: at most twice), and
//! device initialisation (open, bind, attach, region and IRQ info, close)
//! of 1 and of 8 functions in parallel threads, as
//! `vfio_pci_device_init_perf_test` measures it. A C program under
//! `softiommu run` times the operations; criterion collects its timings.
//!
//! Run: `cargo bench -p softiommu --bench vfio`

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn build_timer() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/c/vfio_ops.c");
    let exe = std::env::temp_dir().join(format!("softiommu-bench-vfio-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {}", src.display());
    exe
}

/// Runs the timer under `softiommu run` on the eight-function machine.
fn timed(timer: &Path, args: &[String]) -> Duration {
    let topology = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/vfio8.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_softiommu"))
        .arg("run")
        .arg("--topology")
        .arg(topology)
        .arg("--")
        .arg(timer)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    Duration::from_nanos(ns)
}

fn vfio(c: &mut Criterion) {
    let timer = build_timer();
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
