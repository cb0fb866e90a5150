//! What one area costs in memory: maps N one-page areas (of one 4 KiB
//! buffer, at separate IOVAs) into an IOAS with no domain and prints the
//! process's resident-set growth per area, for N = 1k, 10k, 100k and 1M,
//! and the time per map.
//!
//! Run: `cargo run --release -p softiommu-engine --example area_memory`

use softiommu_engine::api::Engine;
use softiommu_engine::Prot;
use std::time::Instant;

/// Resident set size in bytes (`VmRSS` of /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn main() {
    let buffer = vec![0u8; 2 * 4096];
    let page = (buffer.as_ptr() as u64).next_multiple_of(4096);
    let prot = Prot {
        read: true,
        write: true,
    };
    println!("| areas | bytes per area | ns per map |");
    println!("|---|---|---|");
    for n in [1_000u64, 10_000, 100_000, 1_000_000] {
        let engine = Engine::new();
        let mut fd = engine.open();
        let ioas = fd.alloc_ioas().unwrap();
        let before = rss();
        let start = Instant::now();
        for i in 0..n {
            // Every other page, so that no two areas touch.
            fd.map_user(ioas, page, 4096, Some((1 << 32) + 2 * 4096 * i), prot)
                .unwrap();
        }
        let took = start.elapsed();
        let grown = rss().saturating_sub(before);
        println!(
            "| {n} | {} | {} |",
            grown / n,
            took.as_nanos() / u128::from(n)
        );
    }
}
