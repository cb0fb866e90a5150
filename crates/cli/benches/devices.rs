//! The I/OAT model as a user-space driver sees it under `softiommu run`:
//! a C program rings the doorbell with plain stores to the mapped BAR
//! (trapped by the shim and sent to the device) and polls CHANSTS, for a
//! 64-byte copy (doorbell to completion, with the chain address, rearm and
//! suspend stores the VFIO selftests' driver makes around it) and for a
//! 1 MiB copy.
//!
//! Run: `cargo bench -p softiommu --bench devices`

mod common;

use common::{build_timer, timed};
use criterion::{criterion_group, criterion_main, Criterion};

fn devices(c: &mut Criterion) {
    let timer = build_timer("device_ops");
    let mut g = c.benchmark_group("devices");
    g.sample_size(20);
    g.bench_function("ioat_doorbell_to_done_64B_through_the_shim", |b| {
        b.iter_custom(|iters| timed(&timer, None, &["doorbell".into(), iters.to_string()]))
    });
    g.bench_function("ioat_copy_1M_through_the_shim", |b| {
        b.iter_custom(|iters| timed(&timer, None, &["copy1m".into(), iters.to_string()]))
    });
    g.finish();
}

criterion_group!(benches, devices);
criterion_main!(benches);
