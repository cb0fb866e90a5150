//! The I/OAT model as a user-space driver sees it under `softiommu run`:
//! a C program rings the doorbell with plain stores to the mapped BAR
//! (trapped by the shim and sent to the device) and polls CHANSTS, for a
//! 64-byte copy (doorbell to completion, with the chain address, rearm and
//! suspend stores the VFIO selftests' driver makes around it) and for a
//! 1 MiB copy.
//!
//! Run: `cargo bench -p softiommu --bench devices`

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn build_timer() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/c/device_ops.c");
    let exe = std::env::temp_dir().join(format!("softiommu-bench-devices-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc runs");
    assert!(status.success(), "compiling {}", src.display());
    exe
}

fn timed(timer: &Path, what: &str, iters: u64) -> Duration {
    let out = Command::new(env!("CARGO_BIN_EXE_softiommu"))
        .arg("run")
        .arg("--")
        .arg(timer)
        .arg(what)
        .arg(iters.to_string())
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

fn devices(c: &mut Criterion) {
    let timer = build_timer();
    let mut g = c.benchmark_group("devices");
    g.sample_size(20);
    g.bench_function("ioat_doorbell_to_done_64B_through_the_shim", |b| {
        b.iter_custom(|iters| timed(&timer, "doorbell", iters))
    });
    g.bench_function("ioat_copy_1M_through_the_shim", |b| {
        b.iter_custom(|iters| timed(&timer, "copy1m", iters))
    });
    g.finish();
}

criterion_group!(benches, devices);
criterion_main!(benches);
