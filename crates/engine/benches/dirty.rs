//! `IOMMU_HWPT_GET_DIRTY_BITMAP` over 1 GiB mapped with 4 KiB pages, 1 % of
//! them dirty, through the engine's typed operations.
//!
//! Run: `cargo bench -p softiommu-engine --bench dirty`

use criterion::{criterion_group, criterion_main, Criterion};
use softiommu_engine::memory::{AddressSpace, NoFiles, SimMemory, PAGE_SIZE};
use softiommu_engine::ops::hwpt::HwptSpec;
use softiommu_engine::pages::EngineState;
use softiommu_engine::{Caller, Context, Credentials, MapArgs, Prot, Result};
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::{DeviceId, DriverInfo, Topology};
use std::sync::Arc;
use std::time::Duration;

const GIB: u64 = 1 << 30;
const VA: u64 = 0x1_0000_0000;

/// Memory that is always there and reads as zeros: the benchmark measures
/// the page tables, not a gigabyte of buffer.
#[derive(Debug)]
struct Zeros(SimMemory);

impl AddressSpace for Zeros {
    fn id(&self) -> u64 {
        self.0.id()
    }
    fn read(&self, _addr: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write(&self, _addr: u64, _buf: &[u8]) -> Result<()> {
        Ok(())
    }
    fn probe(&self, _addr: u64, _len: u64, _write: bool) -> Result<()> {
        Ok(())
    }
}

fn get_dirty_bitmap(c: &mut Criterion) {
    let topo = Topology::builder()
        .iommu("amd", DriverInfo::amd_v1())
        .group("amd", &["dev"])
        .unwrap()
        .build();
    let shared = Arc::new(EngineState::with_topology(topo));
    let mut ctx = Context::new(shared);
    let mem: Arc<dyn AddressSpace> = Arc::new(Zeros(SimMemory::new()));
    // The bitmap lives in a small simulated region of its own.
    let bitmap_mem = Arc::new(SimMemory::new());
    bitmap_mem.map(0x1000, (GIB / PAGE_SIZE / 8) + 0x1000, true);
    let bitmap_space: Arc<dyn AddressSpace> = bitmap_mem;
    let caller = Caller {
        mem: &mem,
        files: &NoFiles,
        creds: Credentials {
            cap_ipc_lock: true,
            ..Credentials::default()
        },
    };
    let ioas = ctx.ioas_alloc().unwrap();
    // 4 KiB leaves: large pages off.
    ctx.ioas_mut(ioas).unwrap().disable_large_pages().unwrap();
    let (dev, _) = ctx.device_bind(DeviceId(0)).unwrap();
    let hwpt = ctx
        .hwpt_alloc(
            dev,
            HwptSpec::Paging {
                ioas,
                flags: PagingFlags {
                    dirty_tracking: true,
                    nest_parent: false,
                },
                pgsize_bitmap: None,
            },
        )
        .unwrap();
    ctx.device_attach(dev, hwpt).unwrap();
    let iova = 0x4000_0000;
    ctx.ioas_map(
        &caller,
        ioas,
        VA,
        MapArgs {
            iova: Some(iova),
            length: GIB,
            prot: Prot {
                read: true,
                write: true,
            },
        },
    )
    .unwrap();
    ctx.hwpt_set_dirty_tracking(hwpt, true).unwrap();
    // 1 % of the pages: every 100th.
    let pages = GIB / PAGE_SIZE;
    for p in (0..pages).step_by(100) {
        ctx.device_dma(dev, iova + p * PAGE_SIZE, &mut [1u8], true)
            .unwrap();
    }
    let bcaller = Caller {
        mem: &bitmap_space,
        files: &NoFiles,
        creds: Credentials::default(),
    };
    ctx.hwpt_get_dirty_bitmap(&bcaller, hwpt, iova, GIB, PAGE_SIZE, 0x1000, true)
        .unwrap();
    let mut bits = vec![0u8; (pages / 8) as usize];
    bitmap_space.read(0x1000, &mut bits).unwrap();
    let dirty: u32 = bits.iter().map(|b| b.count_ones()).sum();
    assert_eq!(
        u64::from(dirty),
        pages.div_ceil(100),
        "1 % of the pages read back dirty"
    );
    let mut g = c.benchmark_group("get_dirty_bitmap");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    g.bench_function("1GiB_4K_pages_1pct_dirty_no_clear", |b| {
        b.iter(|| {
            ctx.hwpt_get_dirty_bitmap(&bcaller, hwpt, iova, GIB, PAGE_SIZE, 0x1000, true)
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, get_dirty_bitmap);
criterion_main!(benches);
