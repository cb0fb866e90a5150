//! An ioctl round trip through the `/dev/iommu` shim: a C program under
//! `softiommu run` times IOAS_MAP + IOAS_UNMAP pairs of a 4 KiB page; criterion
//! collects its timings (`iter_custom`), with the trace off and on. Beside
//! it, the same pair through the library API.
//!
//! Run: `cargo bench -p softiommu --bench shim`

use criterion::{criterion_group, criterion_main, Criterion};
use softiommu_engine::api::Engine;
use softiommu_engine::Prot;
mod common;

fn shim_round_trip(c: &mut Criterion) {
    let timer = common::build_timer("map_unmap");
    let mut g = c.benchmark_group("map_unmap_4k_pair");
    g.sample_size(20);
    g.bench_function("through_the_shim", |b| {
        b.iter_custom(|iters| common::timed(&timer, None, &[iters.to_string()]))
    });
    // The same with the trace on: every call decoded, formatted and
    // written (to /dev/null, so that the disk does not time it).
    let traced = ["--trace=/dev/null".into()];
    g.bench_function("through_the_shim_traced", |b| {
        b.iter_custom(|iters| common::timed_with(&timer, &traced, &[iters.to_string()]))
    });
    let engine = Engine::new();
    let mut fd = engine.open();
    let ioas = fd.alloc_ioas().unwrap();
    let buf = vec![0u8; 8192];
    let va = (buf.as_ptr() as u64).next_multiple_of(4096);
    g.bench_function("library_typed_api", |b| {
        b.iter(|| {
            fd.map_user(
                ioas,
                va,
                4096,
                Some(0x10_0000),
                Prot {
                    read: true,
                    write: true,
                },
            )
            .unwrap();
            fd.unmap(ioas, 0x10_0000, 4096).unwrap();
        })
    });
    // The floor on this machine: two blocking round trips between threads over
    // a Unix socket, which is what the two ioctls of a pair cost before any work.
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut buf = [0u8; 24];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    g.bench_function("two_socket_round_trips_baseline", |bench| {
        use std::io::{Read, Write};
        let mut buf = [0u8; 24];
        bench.iter(|| {
            for _ in 0..2 {
                a.write_all(&buf).unwrap();
                a.read_exact(&mut buf).unwrap();
            }
        })
    });
    drop(a);
    let _ = echo.join();
    g.finish();
    let _ = std::fs::remove_file(&timer);
}

criterion_group!(benches, shim_round_trip);
criterion_main!(benches);
