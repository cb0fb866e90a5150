//! The emulated I/OAT channel and DSA driven from this process through the
//! library face: a 1 MiB copy through an AMD v1 domain beside a plain
//! memcpy of the same size in the same run, the doorbell-to-completion
//! time of a 64-byte copy, and the CPU the device's runner thread burns
//! while the channel is idle (printed, measured over two seconds).
//!
//! Run: `cargo bench -p softiommu-engine --bench ioat`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softiommu_engine::api::{Engine, VfioDevice};
use softiommu_engine::devices::ioat::status;
use softiommu_engine::Prot;
use softiommu_iommu::{DriverInfo, Topology};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BDF: &str = "0000:00:04.0";
const PAGE: usize = 4096;
const MIB: usize = 1 << 20;
const DESC_IOVA: u64 = 0x100_0000;
const SRC_IOVA: u64 = 0x200_0000;
const DST_IOVA: u64 = 0x400_0000;
const CHANCTRL: u64 = 0x80;
const CHANCMD: u64 = 0x84;
const DMACOUNT: u64 = 0x86;
const CHANSTS: u64 = 0x88;
const CHAINADDR: u64 = 0x90;

/// A machine of one function, `bdf` with device model `model`, alone
/// behind an AMD v1 IOMMU.
fn alone_behind_amd_v1(bdf: &str, model: &str) -> Topology {
    Topology::builder()
        .iommu("amd0", DriverInfo::amd_v1())
        .group("amd0", &[bdf])
        .unwrap()
        .model(bdf, model)
        .unwrap()
        .build()
}

fn aligned(memory: &mut [u8], len: usize) -> &mut [u8] {
    let at = memory.as_ptr().align_offset(PAGE);
    &mut memory[at..at + len]
}

struct Channel {
    dev: VfioDevice,
    desc: Vec<u8>,
    // The buffers the IOAS maps; kept alive for the device.
    _src: Vec<u8>,
    _dst: Vec<u8>,
}

impl Channel {
    /// The I/OAT function alone behind an AMD v1 IOMMU, with 1 MiB source
    /// and destination buffers mapped.
    fn amd_v1() -> Channel {
        let engine = Engine::with_topology(alone_behind_amd_v1(BDF, "ioat"));
        let mut dev = engine.open_device(BDF).unwrap();
        let ioas = dev.alloc_ioas().unwrap();
        let mut desc = vec![0u8; 2 * PAGE];
        let mut src = vec![b'x'; MIB + PAGE];
        let mut dst = vec![0u8; MIB + PAGE];
        let rw = Prot {
            read: true,
            write: true,
        };
        dev.map(ioas, aligned(&mut desc, PAGE), DESC_IOVA, rw)
            .unwrap();
        dev.map(ioas, aligned(&mut src, MIB), SRC_IOVA, rw).unwrap();
        dev.map(ioas, aligned(&mut dst, MIB), DST_IOVA, rw).unwrap();
        dev.attach(ioas).unwrap();
        dev.enable_bus_master().unwrap();
        dev.write_bar(0, CHANCMD, &[0x20]).unwrap();
        Channel {
            dev,
            desc,
            _src: src,
            _dst: dst,
        }
    }

    /// A copy descriptor of `len` bytes, chained to itself.
    fn descriptor(&mut self, len: usize) {
        let d = aligned(&mut self.desc, PAGE);
        d[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        d[8..16].copy_from_slice(&SRC_IOVA.to_le_bytes());
        d[16..24].copy_from_slice(&DST_IOVA.to_le_bytes());
        d[24..32].copy_from_slice(&DESC_IOVA.to_le_bytes());
    }

    /// `count` runs of the descriptor as the VFIO selftests' driver does
    /// it: chain address, rearm, doorbell, wait for DONE, suspend. While
    /// the channel works through a longer chain, the driver looks at
    /// CHANSTS every 20 µs rather than contending for the device.
    fn copy(&mut self, count: u16) {
        let dev = &mut self.dev;
        dev.write_bar(0, CHAINADDR, &DESC_IOVA.to_le_bytes())
            .unwrap();
        dev.write_bar(0, CHANCTRL, &1u16.to_le_bytes()).unwrap();
        dev.write_bar(0, DMACOUNT, &count.to_le_bytes()).unwrap();
        let mut sts = [0u8; 8];
        loop {
            dev.read_bar(0, CHANSTS, &mut sts).unwrap();
            match u64::from_le_bytes(sts) & 7 {
                status::DONE => break,
                status::ACTIVE if count > 1 => std::thread::sleep(Duration::from_micros(20)),
                status::ACTIVE => std::hint::spin_loop(),
                other => panic!("channel state {other}"),
            }
        }
        dev.write_bar(0, CHANCMD, &[0x04]).unwrap();
    }
}

/// CPU time (user + system) of this process's thread named `name`.
fn thread_cpu(name: &str) -> Option<Duration> {
    let tick = 100u64; // USER_HZ on Linux
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 1000 / tick));
    }
    None
}

fn ioat(c: &mut Criterion) {
    let mut channel = Channel::amd_v1();
    let mut g = c.benchmark_group("ioat");
    g.throughput(Throughput::Bytes(MIB as u64));
    let src = vec![b'x'; MIB];
    let mut dst = vec![0u8; MIB];
    g.bench_function(BenchmarkId::new("memcpy", "1M"), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    channel.descriptor(MIB);
    g.bench_function(BenchmarkId::new("copy_amd_v1", "1M"), |b| {
        b.iter(|| channel.copy(1))
    });
    // The channel's own rate: a chain of 16 descriptors of 1 MiB per
    // doorbell, so the driver's register accesses weigh 1/16.
    g.throughput(Throughput::Bytes(16 * MIB as u64));
    g.bench_function(BenchmarkId::new("chain_amd_v1", "16x1M"), |b| {
        b.iter(|| channel.copy(16))
    });
    g.throughput(Throughput::Elements(1));
    channel.descriptor(64);
    g.bench_function(BenchmarkId::new("doorbell_to_done", "64B"), |b| {
        b.iter(|| channel.copy(1))
    });
    g.finish();

    // The runner thread while nothing happens: after its spin window it
    // sleeps in growing steps.
    std::thread::sleep(Duration::from_millis(50));
    let before = thread_cpu("softiommu-devic");
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let after = thread_cpu("softiommu-devic");
    if let (Some(b), Some(a)) = (before, after) {
        let share = (a - b).as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
        println!("ioat/idle_runner_cpu: {share:.2} % of one CPU over 2 s");
    } else {
        println!("ioat/idle_runner_cpu: runner thread not found");
    }
}

/// The DSA alone behind an AMD v1 IOMMU, its WQ configured and enabled,
/// with a completion record and 1 MiB buffers mapped.
struct Dsa {
    dev: VfioDevice,
    memory: Vec<u8>,
    _src: Vec<u8>,
    _dst: Vec<u8>,
}

const DSA_BDF: &str = "0000:6a:01.0";
const CR_IOVA: u64 = DESC_IOVA;

impl Dsa {
    fn amd_v1() -> Dsa {
        let engine = Engine::with_topology(alone_behind_amd_v1(DSA_BDF, "dsa"));
        let mut dev = engine.open_device(DSA_BDF).unwrap();
        let ioas = dev.alloc_ioas().unwrap();
        let mut memory = vec![0u8; 2 * PAGE];
        let mut src = vec![b'x'; MIB + PAGE];
        let mut dst = vec![0u8; MIB + PAGE];
        let rw = Prot {
            read: true,
            write: true,
        };
        dev.map(ioas, aligned(&mut memory, PAGE), CR_IOVA, rw)
            .unwrap();
        dev.map(ioas, aligned(&mut src, MIB), SRC_IOVA, rw).unwrap();
        dev.map(ioas, aligned(&mut dst, MIB), DST_IOVA, rw).unwrap();
        dev.attach(ioas).unwrap();
        dev.enable_bus_master().unwrap();
        let cmd = |dev: &mut VfioDevice, c: u32| {
            dev.write_bar(0, 0xa0, &(c << 20).to_le_bytes()).unwrap()
        };
        cmd(&mut dev, 5);
        let mut wqcfg = [0u8; 64];
        wqcfg[0..2].copy_from_slice(&32u16.to_le_bytes());
        wqcfg[8..12].copy_from_slice(&1u32.to_le_bytes());
        wqcfg[12..16].copy_from_slice(&(21u32 | 10 << 5).to_le_bytes());
        wqcfg[32..40].copy_from_slice(&(1u64 << 3 | 1 << 1).to_le_bytes());
        for (i, w) in wqcfg.chunks(4).enumerate() {
            dev.write_bar(0, 0x500 + 4 * i as u64, w).unwrap();
        }
        dev.write_bar(0, 0x400, &1u64.to_le_bytes()).unwrap();
        dev.write_bar(0, 0x420, &1u64.to_le_bytes()).unwrap();
        cmd(&mut dev, 1);
        cmd(&mut dev, 6);
        Dsa {
            dev,
            memory,
            _src: src,
            _dst: dst,
        }
    }

    /// One memmove of `len` bytes with a completion record, submitted to the
    /// portal; its completion status.
    fn copy(&mut self, len: u32) -> u8 {
        aligned(&mut self.memory, PAGE)[..32].fill(0);
        let mut d = [0u8; 64];
        d[4..8].copy_from_slice(&(0x0c | 3u32 << 24).to_le_bytes());
        d[8..16].copy_from_slice(&CR_IOVA.to_le_bytes());
        d[16..24].copy_from_slice(&SRC_IOVA.to_le_bytes());
        d[24..32].copy_from_slice(&DST_IOVA.to_le_bytes());
        d[32..36].copy_from_slice(&len.to_le_bytes());
        self.dev.write_bar(2, 0, &d).unwrap();
        // A lone descriptor is done before the portal write returns.
        aligned(&mut self.memory, PAGE)[0]
    }
}

fn dsa(c: &mut Criterion) {
    let mut dsa = Dsa::amd_v1();
    assert_eq!(dsa.copy(MIB as u32), 1, "the copy completes");
    let mut g = c.benchmark_group("dsa");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function(BenchmarkId::new("memmove_amd_v1", "1M"), |b| {
        b.iter(|| black_box(dsa.copy(MIB as u32)))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("portal_to_completion", "64B"), |b| {
        b.iter(|| black_box(dsa.copy(64)))
    });
    g.finish();
}

criterion_group!(benches, ioat, dsa);
criterion_main!(benches);
