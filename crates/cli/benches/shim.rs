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
    shared_memory_floor(&mut g);
    g.finish();
    let _ = std::fs::remove_file(&timer);
}

/// The shared-memory floor: two round trips of a cache line between two
/// threads, each polling the line the other writes, as the program and
/// the server poll the call page. A pair of ioctls through the shim cannot
/// cost less. The figure also tells the machine's mode: on the shared
/// development machine it is about 0.2 µs when the host keeps the two
/// vCPUs close and about 0.8 µs when it does not (BENCHMARKS.md).
fn shared_memory_floor(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    /// One word on a line pair of its own, so that the two words never
    /// share what the CPU moves (or prefetches) together.
    #[repr(align(128))]
    #[derive(Default)]
    struct Line(AtomicU64);
    const STOP: u64 = u64::MAX;
    let (ping, pong) = (Arc::new(Line::default()), Arc::new(Line::default()));
    let echo = {
        let (ping, pong) = (ping.clone(), pong.clone());
        std::thread::spawn(move || {
            let mut last = 0;
            loop {
                let now = ping.0.load(Ordering::Acquire);
                if now == STOP {
                    break;
                }
                if now != last {
                    last = now;
                    pong.0.store(now, Ordering::Release);
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let mut n = 0u64;
    g.bench_function("two_cache_line_round_trips_baseline", |bench| {
        bench.iter(|| {
            for _ in 0..2 {
                n += 1;
                ping.0.store(n, Ordering::Release);
                while pong.0.load(Ordering::Acquire) != n {
                    std::hint::spin_loop();
                }
            }
        })
    });
    ping.0.store(STOP, Ordering::Release);
    let _ = echo.join();
}

criterion_group!(benches, shim_round_trip);
criterion_main!(benches);
