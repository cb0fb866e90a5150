//! The call trace (`softiommu run --trace`): one line per call the server
//! answers on a program's `/dev/iommu`, VFIO container, group or device
//! file, as text (strace-like) or JSON lines.
//!
//! The serving thread fills a [`Record`] (the argument struct's bytes
//! before and after the call, the result, the devices whose DMA moved)
//! and, once its reply is on its way, formats the line and appends it to a
//! shared buffer: the program is then busy with the reply and its next
//! call, and the server thread would only wait for it. A thread of the
//! trace's own writes the buffer out every 20 ms; a traced call
//! waits for no file. (Formatting on that thread instead took a third of
//! the CPU a traced pair of calls costs, away from the program and the
//! server on a two-core machine.) With the trace off, a call pays one
//! branch.

pub mod describe;

use describe::{FileKind, Value};
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
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
// The struct bytes stay inline (a traced call allocates nothing); the
// smaller variants are rare.
#[allow(clippy::large_enum_variant)]
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
        before: Option<StructBytes>,
        /// The struct's bytes after the call.
        after: Option<StructBytes>,
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

/// The front of an argument struct, kept in the record itself: a traced
/// call allocates nothing for it. Every field the trace shows lies in the
/// first [`STRUCT_KEPT`] bytes.
#[derive(Clone, Copy)]
pub struct StructBytes {
    len: u8,
    data: [u8; STRUCT_KEPT],
}

/// How many bytes of a struct a record keeps.
pub const STRUCT_KEPT: usize = 128;

impl StructBytes {
    /// The first [`STRUCT_KEPT`] bytes of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let len = bytes.len().min(STRUCT_KEPT);
        let mut data = [0u8; STRUCT_KEPT];
        data[..len].copy_from_slice(&bytes[..len]);
        StructBytes {
            len: len as u8,
            data,
        }
    }

    /// The bytes kept.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for StructBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StructBytes({:02x?})", self.as_slice())
    }
}

impl PartialEq for StructBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}
impl Eq for StructBytes {}

/// One call, as the serving thread saw it.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the call was answered.
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
    queue: Arc<Queue>,
    format: Format,
    /// Times count from here.
    start: Instant,
}

/// Lines waiting for the writer. Serving threads only append (no wake-up
/// per call: waking a thread costs more than the call); the writer takes
/// the lot every [`BATCH_PERIOD`], or at once when asked to sync or when
/// the queue is full.
#[derive(Debug, Default)]
struct Queue {
    /// Records made whose line is not queued yet ([`Tracer::begin`]); a
    /// sync waits for them.
    in_flight: std::sync::atomic::AtomicU64,
    state: Mutex<QueueState>,
    /// The writer waits here for its period, a sync or a full queue.
    writer: Condvar,
    /// Serving threads wait here while the queue is full; syncs wait here
    /// for their turn to be written.
    drained: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Whole lines, each ending in a newline.
    lines: Vec<u8>,
    /// Syncs asked for: the writer writes and flushes, then counts them done.
    syncs_asked: u64,
    syncs_done: u64,
}

/// How often the writer takes what is queued.
const BATCH_PERIOD: Duration = Duration::from_millis(20);

/// Bytes queued before a traced call waits for the writer: a trace keeps
/// every call, so a full queue slows the program rather than losing lines.
const QUEUE_BYTES: usize = 8 << 20;

fn locked(m: &Mutex<QueueState>) -> std::sync::MutexGuard<'_, QueueState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tracer {
    /// Starts a trace written to `out` in `format`; times count from now.
    /// The writer thread lives as long as the process.
    pub fn start(out: Box<dyn Write + Send>, format: Format) -> std::io::Result<Tracer> {
        let queue = Arc::new(Queue::default());
        let start = Instant::now();
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("softiommu-trace".into())
            .spawn(move || write_lines(&writer_queue, out))?;
        softiommu_iommu::watch::record_dma_changes(true);
        Ok(Tracer {
            queue,
            format,
            start,
        })
    }

    /// When the trace started: times count from here.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// A serving thread is making a record, which [`record`](Self::record)
    /// will queue: a [`sync`](Self::sync) meanwhile waits for it.
    pub fn begin(&self) {
        self.queue
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Formats `record` and queues its line for writing (ending what
    /// [`begin`](Self::begin) started, if it was called).
    pub fn record(&self, record: &Record) {
        thread_local! {
            /// The line being formatted: kept, so a line allocates nothing.
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            match self.format {
                Format::Text => text_line_into(line, record, self.start),
                Format::Json => json_line_into(line, record, self.start),
            }
            line.push('\n');
            let mut state = locked(&self.queue.state);
            while state.lines.len() >= QUEUE_BYTES {
                self.queue.writer.notify_one();
                state = self
                    .queue
                    .drained
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            state.lines.extend_from_slice(line.as_bytes());
        });
        // Saturating: a record made without `begin` (a test's) counts nothing.
        let _ = self.queue.in_flight.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
    }

    /// Waits (at most `timeout`) until everything queued so far is written
    /// and flushed: what a server does before it exits.
    pub fn sync(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        // Calls answered whose line a serving thread has yet to queue.
        while self
            .queue
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut state = locked(&self.queue.state);
        state.syncs_asked += 1;
        let mine = state.syncs_asked;
        self.queue.writer.notify_one();
        while state.syncs_done < mine {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .queue
                .drained
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn write_lines(queue: &Queue, mut out: Box<dyn Write + Send>) {
    // The batch written last, emptied: swapped in for the next one, so
    // the queue keeps its capacity and serving threads rarely allocate.
    let mut spare: Vec<u8> = Vec::new();
    loop {
        let (mut lines, syncs) = {
            let mut state = locked(&queue.state);
            if state.lines.is_empty() && state.syncs_asked == state.syncs_done {
                state = queue
                    .writer
                    .wait_timeout(state, BATCH_PERIOD)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let lines = std::mem::replace(&mut state.lines, std::mem::take(&mut spare));
            queue.drained.notify_all();
            (lines, state.syncs_asked)
        };
        // A trace that cannot be written stops being written; the program
        // goes on.
        let _ = out.write_all(&lines);
        let _ = out.flush();
        lines.clear();
        spare = lines;
        let mut state = locked(&queue.state);
        if state.syncs_done < syncs {
            state.syncs_done = syncs;
            queue.drained.notify_all();
        }
    }
}

/// Appends the seconds from `start` to `at`, with six decimals (a JSON
/// number too).
fn push_time(line: &mut String, at: Instant, start: Instant) {
    let since = at.checked_duration_since(start).unwrap_or(Duration::ZERO);
    describe::push_dec(line, since.as_secs());
    line.push('.');
    let micros = since.subsec_micros();
    for unit in [100_000, 10_000, 1_000, 100, 10, 1] {
        line.push((b'0' + (micros / unit % 10) as u8) as char);
    }
}

/// Appends `v` in decimal, with its sign.
fn push_signed(line: &mut String, v: i64) {
    if v < 0 {
        line.push('-');
    }
    describe::push_dec(line, v.unsigned_abs());
}

/// Appends `text` as a JSON string.
fn push_json_str(line: &mut String, text: &str) {
    line.push('"');
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                line.push_str("\\u00");
                line.push(char::from_digit(c as u32 >> 4, 16).unwrap_or('0'));
                line.push(char::from_digit(c as u32 & 0xf, 16).unwrap_or('0'));
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

fn errno_name(errno: i32) -> &'static str {
    softiommu_uapi::Errno(errno).name()
}

/// A call as shown: its system call, the ioctl's name, the fields as
/// passed, and those the call changed with their new values. Fields are
/// read from the kept structs as they are written out: nothing is
/// allocated per line.
struct Shown<'r> {
    call: &'static str,
    name: Option<describe::Name>,
    fields: Fields<'r>,
}

/// The fields a line shows.
enum Fields<'r> {
    /// An ioctl's struct as passed, and as the call left it when the call
    /// changed its bytes.
    Struct {
        layout: describe::Layout,
        passed: &'r [u8],
        after: Option<&'r [u8]>,
    },
    /// Two plain values (an mmap's or an access's).
    Pair([(&'static str, Value); 2]),
    /// None (an ioctl whose struct was not kept, or that names nothing).
    None,
}

impl Fields<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Fields::Struct { layout, .. } => !layout.has_fields(),
            Fields::Pair(_) => false,
            Fields::None => true,
        }
    }

    fn each(&self, mut f: impl FnMut(&'static str, Value)) {
        match self {
            Fields::Struct { layout, passed, .. } => layout.each(passed, f),
            Fields::Pair(pair) => pair.iter().for_each(|&(n, v)| f(n, v)),
            Fields::None => {}
        }
    }

    fn each_changed(&self, f: impl FnMut(&'static str, Value)) {
        if let Fields::Struct {
            layout,
            passed,
            after: Some(after),
        } = self
        {
            layout.each_changed(passed, after, f);
        }
    }

    fn any_changed(&self) -> bool {
        let mut any = false;
        self.each_changed(|_, _| any = true);
        any
    }
}

fn shown(r: &Record) -> Shown<'_> {
    match &r.op {
        Op::Ioctl {
            request,
            before,
            after,
            ..
        } => {
            let before = before.as_ref().map(StructBytes::as_slice);
            let after = after.as_ref().map(StructBytes::as_slice);
            let passed = before.or(after);
            let layout = describe::Layout::of(r.kind, *request);
            let name = match layout {
                Some(layout) => layout.name(passed),
                None => describe::Name::Unknown(*request),
            };
            let fields = match (layout, passed) {
                (Some(layout), Some(passed)) => Fields::Struct {
                    layout,
                    passed,
                    // Most calls change nothing in their struct.
                    after: match (before, after) {
                        (Some(b), Some(a)) if a != b => Some(a),
                        _ => None,
                    },
                },
                _ => Fields::None,
            };
            Shown {
                call: "ioctl",
                name: Some(name),
                fields,
            }
        }
        Op::Mmap { offset, len } => Shown {
            call: "mmap",
            name: None,
            fields: Fields::Pair([
                ("offset", Value::hex(*offset)),
                ("length", Value::hex(*len)),
            ]),
        },
        Op::Access { write, offset, len } => Shown {
            call: if *write { "pwrite" } else { "pread" },
            name: None,
            fields: Fields::Pair([
                ("offset", Value::hex(*offset)),
                ("count", Value::number(*len)),
            ]),
        },
    }
}

/// Appends `{a=1, b=0x2}` with the fields `each` gives.
fn braces_into(line: &mut String, each: impl FnOnce(&mut dyn FnMut(&'static str, Value))) {
    line.push('{');
    let mut first = true;
    each(&mut |n, v| {
        if !first {
            line.push_str(", ");
        }
        first = false;
        line.push_str(n);
        line.push('=');
        v.push_to(line);
    });
    line.push('}');
}

/// Appends the fields `each` gives as a JSON object: numbers where the
/// value is one, strings (hex, flag and enum names) otherwise.
fn json_fields_into(line: &mut String, each: impl FnOnce(&mut dyn FnMut(&'static str, Value))) {
    line.push('{');
    let mut first = true;
    each(&mut |n, v| {
        if !first {
            line.push(',');
        }
        first = false;
        push_json_str(line, n);
        line.push(':');
        if v.is_number() {
            describe::push_dec(line, v.raw);
        } else {
            // Hex digits and names from the decoder's tables: nothing in
            // them needs escaping.
            line.push('"');
            v.push_to(line);
            line.push('"');
        }
    });
    line.push('}');
}

/// `0.001234 [pid/tid] ioctl(3<iommufd>, IOMMU_IOAS_ALLOC, {flags=0x0,
/// out_ioas_id=0} => {out_ioas_id=1}) = 0`: the fields as passed, then
/// (after `=>`) those the call changed.
pub fn text_line(r: &Record, start: Instant) -> String {
    let mut line = String::new();
    text_line_into(&mut line, r, start);
    line
}

/// [`text_line`], appended to `line`.
fn text_line_into(line: &mut String, r: &Record, start: Instant) {
    use describe::{push_dec, push_hex};
    let s = shown(r);
    push_time(line, r.at, start);
    line.push_str(" [");
    push_dec(line, r.pid as u64);
    line.push('/');
    push_dec(line, r.tid as u64);
    line.push_str("] ");
    line.push_str(s.call);
    line.push('(');
    if r.fd < 0 {
        line.push_str("-1");
    } else {
        push_dec(line, r.fd as u64);
    }
    line.push('<');
    line.push_str(r.kind.name());
    line.push('>');
    if let Some(name) = s.name {
        line.push_str(", ");
        match name {
            describe::Name::Known(n) => line.push_str(n),
            other => line.push_str(&other.to_string()),
        }
    }
    if !s.fields.is_empty() {
        line.push_str(", ");
        braces_into(line, |f| s.fields.each(f));
        if s.fields.any_changed() {
            line.push_str(" => ");
            braces_into(line, |f| s.fields.each_changed(f));
        }
    } else if let Op::Ioctl { arg, .. } = &r.op {
        line.push_str(", ");
        push_hex(line, *arg);
    }
    line.push(')');
    match r.result {
        Ok(v) => {
            line.push_str(" = ");
            push_signed(line, v);
        }
        Err(e) => {
            line.push_str(" = -1 ");
            line.push_str(errno_name(e));
        }
    }
    if !r.devices.is_empty() {
        line.push_str(" (DMA moved: ");
        line.push_str(&r.devices.join(" "));
        line.push(')');
    }
}

/// One JSON object (docs/trace.md).
pub fn json_line(r: &Record, start: Instant) -> String {
    let mut line = String::new();
    json_line_into(&mut line, r, start);
    line
}

/// [`json_line`], appended to `line`.
fn json_line_into(line: &mut String, r: &Record, start: Instant) {
    use describe::push_hex;
    let s = shown(r);
    line.push_str("{\"time\":");
    push_time(line, r.at, start);
    line.push_str(",\"pid\":");
    push_signed(line, r.pid.into());
    line.push_str(",\"tid\":");
    push_signed(line, r.tid.into());
    line.push_str(",\"fd\":");
    push_signed(line, r.fd.into());
    line.push_str(",\"file\":");
    push_json_str(line, r.kind.name());
    line.push_str(",\"call\":");
    push_json_str(line, s.call);
    if let Some(name) = s.name {
        line.push_str(",\"name\":");
        match name {
            describe::Name::Known(n) => push_json_str(line, n),
            other => push_json_str(line, &other.to_string()),
        }
    }
    if let Op::Ioctl { request, arg, .. } = &r.op {
        line.push_str(",\"request\":\"");
        push_hex(line, u64::from(*request));
        line.push_str("\",\"arg\":\"");
        push_hex(line, *arg);
        line.push('"');
    }
    line.push_str(",\"args\":");
    json_fields_into(line, |f| s.fields.each(f));
    line.push_str(",\"out\":");
    json_fields_into(line, |f| s.fields.each_changed(f));
    line.push_str(",\"result\":");
    match r.result {
        Ok(v) => push_signed(line, v),
        Err(e) => {
            line.push_str("-1,\"errno\":");
            push_json_str(line, errno_name(e));
        }
    }
    line.push_str(",\"devices\":[");
    for (i, d) in r.devices.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_json_str(line, d);
    }
    line.push_str("]}");
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
                before: Some(StructBytes::new(unmap.as_bytes())),
                after: Some(StructBytes::new(unmap.as_bytes())),
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

    #[test]
    fn a_json_line_escapes_device_names_and_keeps_signs() {
        // Device names come from the user's topology file.
        let (mut r, start) = unmap_record(Ok(-3));
        r.devices = vec!["a \"quoted\\ name\n".into()];
        let v: serde_json::Value = serde_json::from_str(&json_line(&r, start)).unwrap();
        assert_eq!(v["devices"][0], "a \"quoted\\ name\n");
        assert_eq!(v["result"], -3);
        assert_eq!(v["time"], 0.0015);
        assert_eq!(v["request"], format!("{IOMMU_IOAS_UNMAP:#x}"));
    }
}
