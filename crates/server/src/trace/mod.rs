//! The call trace (`softiommu run --trace`): one line per call the server
//! answers on a program's `/dev/iommu`, VFIO container, group or device
//! file, as text (strace-like) or JSON lines.
//!
//! The serving thread only fills a [`Record`] (the argument struct's bytes
//! after the call, the result, the devices whose DMA moved) and queues it;
//! a thread of the trace's own decodes, formats and writes, so a traced
//! call waits for no formatting and no file. With the trace off, a call
//! pays one branch.

pub mod describe;

use describe::{describe, FileKind, Value};
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One strace-like line per call.
    Text,
    /// One JSON object per line (see docs/trace.md for the schema).
    Json,
}

/// What a call was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// An ioctl: its request number, the argument (a pointer or an
    /// integer) and the argument struct before and after the call, when
    /// kept.
    Ioctl {
        /// The request number.
        request: u32,
        /// The raw argument.
        arg: u64,
        /// The struct's bytes as the program passed them.
        before: Option<Vec<u8>>,
        /// The struct's bytes after the call.
        after: Option<Vec<u8>>,
    },
    /// An `mmap` of the file: offset and length.
    Mmap {
        /// File offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// A `pread` (`write` false) or `pwrite` of a VFIO device file.
    Access {
        /// Whether it wrote.
        write: bool,
        /// File offset (region index in the top bits).
        offset: u64,
        /// Byte count.
        len: u64,
    },
}

/// One call, as the serving thread saw it.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the call arrived.
    pub at: Instant,
    /// The calling process and thread.
    pub pid: i32,
    /// The calling thread (0 when unknown).
    pub tid: i32,
    /// The program's descriptor (ioctls; -1 when unknown).
    pub fd: i32,
    /// What kind of file.
    pub kind: FileKind,
    /// What the call was.
    pub op: Op,
    /// Its result: the return value, or a positive errno.
    pub result: Result<i64, i32>,
    /// Names of the devices whose DMA the call moved.
    pub devices: Vec<String>,
}

/// A running trace: a handle on its queue (clones share it).
#[derive(Clone, Debug)]
pub struct Tracer {
    queue: SyncSender<Message>,
}

/// What the writer thread is sent.
enum Message {
    Record(Box<Record>),
    /// Write everything before this, flush, and answer.
    Sync(SyncSender<()>),
}

/// Records queued before a traced call waits for the writer: a trace keeps
/// every call, so a full queue slows the program rather than losing lines.
const QUEUE: usize = 1 << 16;

impl Tracer {
    /// Starts a trace written to `out` in `format`; times count from now.
    /// The writer thread lives as long as a handle does.
    pub fn start(out: Box<dyn Write + Send>, format: Format) -> std::io::Result<Tracer> {
        let (queue, messages) = sync_channel(QUEUE);
        let start = Instant::now();
        std::thread::Builder::new()
            .name("softiommu-trace".into())
            .spawn(move || write_records(messages, out, format, start))?;
        softiommu_iommu::watch::record_dma_changes(true);
        Ok(Tracer { queue })
    }

    /// Queues `record` for writing.
    pub fn record(&self, record: Record) {
        let _ = self.queue.send(Message::Record(Box::new(record)));
    }

    /// Waits (at most `timeout`) until everything queued so far is written
    /// and flushed: what a server does before it exits.
    pub fn sync(&self, timeout: Duration) {
        let (done, wait) = sync_channel(1);
        if self.queue.send(Message::Sync(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

fn write_records(
    messages: Receiver<Message>,
    out: Box<dyn Write + Send>,
    format: Format,
    start: Instant,
) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = messages.recv() {
        let mut next = Some(first);
        // Write what is queued, then flush once: a trace that is read
        // while the program runs is never behind by more than a batch.
        while let Some(m) = next {
            match m {
                Message::Record(r) => {
                    let line = match format {
                        Format::Text => text_line(&r, start),
                        Format::Json => json_line(&r, start),
                    };
                    // A trace that cannot be written stops being written;
                    // the program goes on.
                    let _ = writeln!(out, "{line}");
                }
                Message::Sync(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = messages.try_recv().ok();
        }
        let _ = out.flush();
    }
}

fn seconds(at: Instant, start: Instant) -> f64 {
    at.checked_duration_since(start)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

fn errno_name(errno: i32) -> String {
    softiommu_uapi::Errno(errno).name().to_owned()
}

/// A call as shown: its system call, the ioctl's name, the fields as
/// passed, and those the call changed with their new values.
struct Shown {
    call: &'static str,
    name: String,
    fields: Vec<(&'static str, Value)>,
    changed: Vec<(&'static str, Value)>,
}

fn shown(r: &Record) -> Shown {
    match &r.op {
        Op::Ioctl {
            request,
            before,
            after,
            ..
        } => {
            let passed = describe(r.kind, *request, before.as_deref().or(after.as_deref()));
            let changed = match (before, after) {
                (Some(_), Some(after)) => describe(r.kind, *request, Some(after))
                    .fields
                    .into_iter()
                    .zip(&passed.fields)
                    .filter(|((_, new), (_, old))| new != old)
                    .map(|(field, _)| field)
                    .collect(),
                _ => Vec::new(),
            };
            Shown {
                call: "ioctl",
                name: passed.name,
                fields: passed.fields,
                changed,
            }
        }
        Op::Mmap { offset, len } => Shown {
            call: "mmap",
            name: String::new(),
            fields: vec![
                ("offset", Value::Text(format!("{offset:#x}"))),
                ("length", Value::Text(format!("{len:#x}"))),
            ],
            changed: Vec::new(),
        },
        Op::Access { write, offset, len } => Shown {
            call: if *write { "pwrite" } else { "pread" },
            name: String::new(),
            fields: vec![
                ("offset", Value::Text(format!("{offset:#x}"))),
                ("count", Value::Number(*len)),
            ],
            changed: Vec::new(),
        },
    }
}

fn braces(fields: &[(&'static str, Value)]) -> String {
    let shown: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{{{}}}", shown.join(", "))
}

fn json_fields(fields: Vec<(&'static str, Value)>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (n, v) in fields {
        let v = match v {
            Value::Number(n) => serde_json::Value::from(n),
            Value::Text(t) => serde_json::Value::from(t),
        };
        map.insert(n.to_owned(), v);
    }
    map.into()
}

/// `0.001234 [pid/tid] ioctl(3<iommufd>, IOMMU_IOAS_ALLOC, {flags=0x0,
/// out_ioas_id=0} => {out_ioas_id=1}) = 0`: the fields as passed, then
/// (after `=>`) those the call changed.
pub fn text_line(r: &Record, start: Instant) -> String {
    let s = shown(r);
    let mut line = format!(
        "{:.6} [{}/{}] {}({}<{}>",
        seconds(r.at, start),
        r.pid,
        r.tid,
        s.call,
        r.fd,
        r.kind.name()
    );
    if !s.name.is_empty() {
        line.push_str(", ");
        line.push_str(&s.name);
    }
    if !s.fields.is_empty() {
        line.push_str(", ");
        line.push_str(&braces(&s.fields));
        if !s.changed.is_empty() {
            line.push_str(" => ");
            line.push_str(&braces(&s.changed));
        }
    } else if let Op::Ioctl { arg, .. } = &r.op {
        line.push_str(&format!(", {arg:#x}"));
    }
    line.push(')');
    match r.result {
        Ok(v) => line.push_str(&format!(" = {v}")),
        Err(e) => line.push_str(&format!(" = -1 {}", errno_name(e))),
    }
    if !r.devices.is_empty() {
        line.push_str(&format!(" (DMA moved: {})", r.devices.join(" ")));
    }
    line
}

/// One JSON object (docs/trace.md).
pub fn json_line(r: &Record, start: Instant) -> String {
    let s = shown(r);
    let mut o = serde_json::Map::new();
    o.insert("time".into(), seconds(r.at, start).into());
    o.insert("pid".into(), r.pid.into());
    o.insert("tid".into(), r.tid.into());
    o.insert("fd".into(), r.fd.into());
    o.insert("file".into(), r.kind.name().into());
    o.insert("call".into(), s.call.into());
    if !s.name.is_empty() {
        o.insert("name".into(), s.name.into());
    }
    if let Op::Ioctl { request, arg, .. } = &r.op {
        o.insert("request".into(), format!("{request:#x}").into());
        o.insert("arg".into(), format!("{arg:#x}").into());
    }
    o.insert("args".into(), json_fields(s.fields));
    o.insert("out".into(), json_fields(s.changed));
    match r.result {
        Ok(v) => {
            o.insert("result".into(), v.into());
        }
        Err(e) => {
            o.insert("result".into(), (-1).into());
            o.insert("errno".into(), errno_name(e).into());
        }
    }
    o.insert("devices".into(), r.devices.clone().into());
    serde_json::Value::Object(o).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use softiommu_uapi::ioctl::*;
    use softiommu_uapi::iommufd::IommuIoasUnmap;
    use zerocopy::IntoBytes;

    fn unmap_record(result: Result<i64, i32>) -> (Record, Instant) {
        let start = Instant::now();
        let unmap = IommuIoasUnmap {
            size: 24,
            ioas_id: 7,
            iova: 0x10_0000,
            length: 0x2000,
        };
        let r = Record {
            at: start + Duration::from_micros(1500),
            pid: 10,
            tid: 11,
            fd: 3,
            kind: FileKind::Iommufd,
            op: Op::Ioctl {
                request: IOMMU_IOAS_UNMAP,
                arg: 0x1000,
                before: Some(unmap.as_bytes().to_vec()),
                after: Some(unmap.as_bytes().to_vec()),
            },
            result,
            devices: vec!["0000:00:04.0".into()],
        };
        (r, start)
    }

    #[test]
    fn a_text_line_reads_like_strace() {
        let (r, start) = unmap_record(Err(2));
        assert_eq!(
            text_line(&r, start),
            "0.001500 [10/11] ioctl(3<iommufd>, IOMMU_IOAS_UNMAP, \
             {ioas_id=7, iova=0x100000, length=0x2000}) = -1 ENOENT \
             (DMA moved: 0000:00:04.0)"
        );
    }

    #[test]
    fn a_json_line_has_every_field() {
        let (r, start) = unmap_record(Ok(0));
        let v: serde_json::Value = serde_json::from_str(&json_line(&r, start)).unwrap();
        assert_eq!(v["name"], "IOMMU_IOAS_UNMAP");
        assert_eq!(v["args"]["ioas_id"], 7);
        assert_eq!(v["args"]["length"], "0x2000");
        assert_eq!(v["result"], 0);
        assert!(v.get("errno").is_none());
        assert_eq!(v["devices"][0], "0000:00:04.0");
        assert_eq!(v["file"], "iommufd");
    }
}
