//! What a trace line costs: formatting one `IOMMU_IOAS_MAP` record as
//! text and as JSON, and what a serving thread pays once its reply is
//! published: formatting the line and queueing it for the writer.
//!
//! Run: `cargo bench -p softiommu-server --bench trace`

use criterion::{criterion_group, criterion_main, Criterion};
use softiommu_server::trace::describe::FileKind;
use softiommu_server::trace::{json_line, text_line, Format, Op, Record, StructBytes, Tracer};
use softiommu_uapi::ioctl::IOMMU_IOAS_MAP;
use softiommu_uapi::iommufd::*;
use std::time::Instant;
use zerocopy::IntoBytes;

fn map_record(start: Instant) -> Record {
    let map = IommuIoasMap {
        size: 40,
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: 1,
        user_va: 0x7f4a_9936_2000,
        length: 0x1000,
        iova: 0x100_0000,
        ..Default::default()
    };
    Record {
        at: start,
        pid: 14507,
        tid: 14507,
        fd: 3,
        kind: FileKind::Iommufd,
        op: Op::Ioctl {
            request: IOMMU_IOAS_MAP,
            arg: 0x7fff_5547_a5f0,
            before: Some(StructBytes::new(map.as_bytes())),
            after: Some(StructBytes::new(map.as_bytes())),
        },
        result: Ok(0),
        devices: Vec::new(),
    }
}

fn trace(c: &mut Criterion) {
    let start = Instant::now();
    let record = map_record(start);
    let mut g = c.benchmark_group("trace_ioas_map");
    g.bench_function("format_text", |b| b.iter(|| text_line(&record, start)));
    g.bench_function("format_json", |b| b.iter(|| json_line(&record, start)));
    for (name, format) in [("record_text", Format::Text), ("record_json", Format::Json)] {
        let tracer = Tracer::start(Box::new(std::io::sink()), format).unwrap();
        g.bench_function(name, |b| b.iter(|| tracer.record(&record)));
    }
    g.finish();
}

criterion_group!(benches, trace);
criterion_main!(benches);
