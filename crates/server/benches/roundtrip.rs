//! An ioctl round trip through the server — the path a shimmed program's ioctl
//! takes — beside the same IOAS_MAP + IOAS_UNMAP pair through the library.
//!
//! The client side here speaks the shim's protocol directly (the shim adds one
//! `fstat` and a cache lookup per ioctl on top). The server reads and writes the
//! argument structs in this process with `process_vm_readv`/`writev`, as it does
//! for a shimmed program.
//!
//! Run: `cargo bench -p softiommu-server --bench roundtrip`

use criterion::{criterion_group, criterion_main, Criterion};
use softiommu_engine::api::Engine;
use softiommu_engine::Prot;
use softiommu_proto::*;
use softiommu_server::Server;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use zerocopy::IntoBytes;

fn exchange<T: IntoBytes + zerocopy::Immutable>(s: &mut UnixStream, msg: &T) -> Reply {
    s.write_all(msg.as_bytes()).unwrap();
    let mut r = Reply::default();
    s.read_exact(r.as_mut_bytes()).unwrap();
    r
}

fn ino_of(s: &UnixStream) -> u64 {
    // The inode of our end, as the shim takes it with fstat.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(s));
    std::fs::metadata(path).unwrap().ino()
}

fn roundtrip(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("softiommu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s");
    let _ = std::fs::remove_file(&sock);
    let server = Server::bind(&sock).unwrap();
    std::thread::spawn(move || server.serve());

    let mut ctx = UnixStream::connect(&sock).unwrap();
    let ino = ino_of(&ctx);
    exchange(
        &mut ctx,
        &Hello {
            magic: MAGIC,
            kind: HELLO_CONTEXT,
            ino,
            ..Default::default()
        },
    );
    let mut chan = UnixStream::connect(&sock).unwrap();
    chan.write_all(
        Hello {
            magic: MAGIC,
            kind: HELLO_CALL,
            ino: 0,
            ..Default::default()
        }
        .as_bytes(),
    )
    .unwrap();

    let mut alloc = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    let r = exchange(
        &mut chan,
        &Call {
            op: CALL_IOCTL,
            request: IOMMU_IOAS_ALLOC,
            ino,
            arg: &mut alloc as *mut _ as u64,
            ..Default::default()
        },
    );
    assert_eq!(r.errno, 0);
    let buffer = vec![0u8; 4096 * 2];
    let va = (buffer.as_ptr() as u64 + 4095) & !4095;
    let mut map = IommuIoasMap {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id: alloc.out_ioas_id,
        reserved: 0,
        user_va: va,
        length: 4096,
        iova: 0x10_0000,
    };
    let mut unmap = IommuIoasUnmap {
        size: 24,
        ioas_id: alloc.out_ioas_id,
        iova: 0x10_0000,
        length: 4096,
    };
    let map_call = Call {
        op: CALL_IOCTL,
        request: IOMMU_IOAS_MAP,
        ino,
        arg: &mut map as *mut _ as u64,
        ..Default::default()
    };
    let unmap_call = Call {
        op: CALL_IOCTL,
        request: IOMMU_IOAS_UNMAP,
        ino,
        arg: &mut unmap as *mut _ as u64,
        ..Default::default()
    };

    let mut g = c.benchmark_group("map_unmap_4k_pair");
    g.bench_function("through_the_server", |b| {
        b.iter(|| {
            assert_eq!(exchange(&mut chan, &map_call).errno, 0);
            assert_eq!(exchange(&mut chan, &unmap_call).errno, 0);
        })
    });

    let engine = Engine::new();
    let mut fd = engine.open();
    let ioas = fd.alloc_ioas().unwrap();
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
    let mut map2 = map;
    map2.ioas_id = ioas.0;
    let mut unmap2 = unmap;
    unmap2.ioas_id = ioas.0;
    g.bench_function("library_raw_ioctl", |b| {
        b.iter(|| {
            fd.ioctl(
                IOMMU_IOAS_MAP,
                softiommu_engine::Arg::Bytes(map2.as_mut_bytes()),
            )
            .unwrap();
            fd.ioctl(
                IOMMU_IOAS_UNMAP,
                softiommu_engine::Arg::Bytes(unmap2.as_mut_bytes()),
            )
            .unwrap();
        })
    });
    g.finish();
    drop(ctx);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
