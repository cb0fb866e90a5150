//! The softiommu shim, loaded with `LD_PRELOAD` by `softiommu run`.
//!
//! It replaces `open`/`openat` (and their `64` and `_2` fortify forms),
//! `ioctl`, `mmap`/`mmap64`, `close`, `read` (for vEVENTQ files),
//! `pread`/`pwrite` (and their `64` forms, for VFIO device regions),
//! `fopen`/`fopen64` (for `/proc/<pid>/status`, whose `VmPin`/`VmLck` show
//! the engine's pins as Linux's would), and the path lookups `opendir`,
//! `readlink`, `stat`, `lstat` and `access` (for the sysfs and debugfs
//! entries of the machine's PCI functions, which the server writes in the
//! session directory). Opening `/dev/iommu`, `/dev/vfio/vfio`,
//! `/dev/vfio/<group>` or `/dev/vfio/devices/vfioN` connects to the server
//! and returns that socket: a real descriptor, so `dup`, `fork`, `exec` and
//! fd passing share the file as they share a kernel file. `ioctl` on such a
//! descriptor is sent to the server on this thread's call channel; the
//! server reads and writes the program's memory itself, so a bad pointer is
//! `EFAULT`, never a crash. Every other path and descriptor goes to the C
//! library untouched, errno preserved.
//!
//! This crate is the project's FFI boundary: all of its `unsafe` lives in
//! its `sys` module (with `sys::trap`, the register-store trap).

mod attributes;
mod fail_nth;
mod fd_cache;
mod kvm;
mod paths;
#[allow(unsafe_code)]
mod sys;

use softiommu_proto::*;
use std::cell::RefCell;
use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use zerocopy::IntoBytes;

const DEV_IOMMU: &[u8] = b"/dev/iommu";
/// The VFIO container: an iommufd context here (see docs/design.md).
const DEV_VFIO_CONTAINER: &[u8] = b"/dev/vfio/vfio";

fn socket_path() -> Option<String> {
    std::env::var(SOCKET_ENV).ok().filter(|p| !p.is_empty())
}

/// This thread's call channel, and the process it was made in. With a shared
/// page, calls travel through it; the socket then carries only descriptors.
struct Channel {
    pid: i32,
    stream: UnixStream,
    page: Option<sys::SharedPage>,
    /// Whether the thread touched its fail-nth counter, which the server
    /// keeps with the channel: such a channel is not handed to another
    /// thread, which must start with its own counter at 0.
    fail_nth_used: bool,
    /// The thread the channel serves now (calls carry it for the trace).
    tid: i32,
}

/// A thread's channel. When the thread exits its channel goes to the
/// process's pool for the next thread, so a program that starts threads
/// over and over does not connect (and make the server start a thread) for
/// each.
struct ChannelSlot(RefCell<Option<Channel>>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        if let Some(chan) = self.0.get_mut().take() {
            if chan.fail_nth_used {
                drop(chan);
            } else if chan.pid == sys::current_pid() {
                POOL.lock().unwrap_or_else(|e| e.into_inner()).push(chan);
            } else {
                sys::forget_stream(chan.stream);
            }
        }
    }
}

/// Channels of threads that have exited, for the next threads to take.
static POOL: std::sync::Mutex<Vec<Channel>> = std::sync::Mutex::new(Vec::new());

/// A pooled channel of this process, if any (a forked child's pool holds
/// its parent's channels, which it must not use).
fn pooled_channel(pid: i32) -> Option<Channel> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(chan) = pool.pop() {
        if chan.pid == pid {
            return Some(chan);
        }
        sys::forget_stream(chan.stream);
        if let Some(page) = chan.page {
            page.forget_in_child();
        }
    }
    None
}

thread_local! {
    static CHANNEL: ChannelSlot = const { ChannelSlot(RefCell::new(None)) };
}

/// What a socket inode is to this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    NotOurs,
    /// A context: `/dev/iommu` or the legacy VFIO container.
    Context,
    /// A VFIO device or group file the server serves.
    Vfio,
    /// A file the server gave the program (an access, a fault queue, a
    /// vEVENTQ).
    Side,
}

fn exchange<T: IntoBytes + zerocopy::Immutable>(stream: &mut UnixStream, msg: &T) -> Option<Reply> {
    stream.write_all(msg.as_bytes()).ok()?;
    let mut reply = Reply::default();
    let fd = sys::recv_with_fd(stream.as_raw_fd(), reply.as_mut_bytes())?;
    Some(take_descriptor(reply, fd))
}

/// An ioctl's argument struct, copied from the program at `user` into
/// `bytes` (and kept as `original`) to travel in the call page: the server
/// then never reads the program's memory for it, and only what the call
/// changed is written back.
struct Staging<'a> {
    user: u64,
    original: &'a [u8],
    bytes: &'a mut [u8],
}

impl Staging<'_> {
    /// Writes back each run of bytes the call changed; false if the
    /// program's struct cannot be written (`EFAULT`, as a failed
    /// `copy_to_user`).
    fn copy_back(&self) -> bool {
        let mut at = 0;
        let n = self.bytes.len();
        while at < n {
            if self.bytes[at] == self.original[at] {
                at += 1;
                continue;
            }
            let start = at;
            while at < n && self.bytes[at] != self.original[at] {
                at += 1;
            }
            if !sys::write_program(self.user + start as u64, &self.bytes[start..at]) {
                return false;
            }
        }
        true
    }
}

/// A call through the shared page (see `SharedCall` for the protocol), with
/// its argument struct staged in the page when there is one.
fn shared_exchange(
    stream: &UnixStream,
    page: &SharedCall,
    call: &Call,
    staging: Option<&mut Staging<'_>>,
) -> Option<Reply> {
    let mut call = *call;
    if let Some(st) = staging.as_deref() {
        page.store_payload(st.bytes);
        call.len = st.bytes.len() as u64;
    }
    let seq = page.publish_call(&call);
    let mut reply = page.wait_for_reply(seq, || !sys::peer_gone(stream.as_raw_fd()))?;
    if let Some(st) = staging {
        page.load_payload(st.bytes);
        if !st.copy_back() && reply.errno == 0 {
            // As Linux when the response cannot be copied out: EFAULT, and
            // a descriptor the call made is not installed.
            reply.result = -1;
            reply.errno = libc::EFAULT;
            reply.fd_addr = 0;
        }
    }
    let fd = if reply.reserved & REPLY_FD_FOLLOWS != 0 {
        let mut carrier = Reply::default();
        sys::recv_with_fd(stream.as_raw_fd(), carrier.as_mut_bytes())?
    } else {
        None
    };
    Some(take_descriptor(reply, fd))
}

/// Takes the descriptor that came with a reply: writes its number where the
/// reply says, or makes it the result.
fn take_descriptor(mut reply: Reply, fd: Option<i32>) -> Reply {
    if let Some(fd) = fd {
        if reply.fd_addr == u64::MAX {
            // The descriptor is the ioctl's return value: a dma-buf (a side
            // file), or a VFIO device file that the server serves.
            let kind = if reply.reserved & REPLY_FD_SERVED != 0 {
                Kind::Vfio
            } else {
                Kind::Side
            };
            if let Some(ino) = sys::side_inode(fd) {
                sys::remember(ino, kind);
            }
            if reply.reserved & REPLY_FD_KEEP_ON_EXEC != 0 {
                sys::clear_cloexec(fd);
            }
            fd_cache::renew(fd);
            reply.result = i64::from(fd);
        } else if reply.fd_addr != 0 {
            if let Some(ino) = sys::side_inode(fd) {
                sys::remember(ino, Kind::Side);
            }
            if sys::is_fifo(fd) {
                // Only vEVENTQs are pipes: their reads keep Linux's rules.
                sys::track_eventq_fd(fd);
            }
            sys::store_fd(reply.fd_addr, fd);
        } else {
            sys::close_fd(fd);
        }
    }
    reply
}

/// Connects a call channel, with a shared page when one can be made.
fn connect_channel(pid: i32) -> Option<Channel> {
    let mut stream = UnixStream::connect(socket_path()?).ok()?;
    sys::set_cloexec(stream.as_raw_fd());
    if let Some((page, memory)) = sys::SharedPage::create() {
        let hello = Hello {
            magic: MAGIC,
            kind: HELLO_CALL_SHARED,
            ino: 0,
            ..Default::default()
        };
        if sys::send_with_fd(stream.as_raw_fd(), hello.as_bytes(), memory.as_raw_fd()) {
            return Some(Channel {
                pid,
                stream,
                page: Some(page),
                fail_nth_used: false,
                tid: 0,
            });
        }
        return None;
    }
    let hello = Hello {
        magic: MAGIC,
        kind: HELLO_CALL,
        ino: 0,
        ..Default::default()
    };
    stream.write_all(hello.as_bytes()).ok()?;
    Some(Channel {
        pid,
        stream,
        page: None,
        fail_nth_used: false,
        tid: 0,
    })
}

/// Sends `call` on this thread's channel, making one if needed (after `fork`
/// the inherited channel belongs to the parent and is left alone).
fn call(call: Call) -> Option<Reply> {
    call_staged(call, None)
}

/// [`call`], with an argument struct to stage in the call page (used only
/// where the channel has one; otherwise the server reads the program's
/// memory as for any call).
fn call_staged(call: Call, mut staging: Option<&mut Staging<'_>>) -> Option<Reply> {
    let pid = sys::current_pid();
    let on_thread_channel = CHANNEL.try_with(|cell| {
        let mut slot = cell.0.borrow_mut();
        if slot.as_ref().is_none_or(|c| c.pid != pid) {
            if let Some(old) = slot.take() {
                // The parent's channel: drop this process's copies of its
                // socket and page; the parent's stay as they are.
                sys::forget_stream(old.stream);
                if let Some(page) = old.page {
                    page.forget_in_child();
                }
            }
            let mut chan = match pooled_channel(pid) {
                Some(chan) => chan,
                None => connect_channel(pid)?,
            };
            chan.tid = rustix::thread::gettid().as_raw_nonzero().get();
            *slot = Some(chan);
        }
        let chan = slot.as_mut()?;
        let call = Call {
            tid: chan.tid,
            ..call
        };
        chan.fail_nth_used |= call.op == CALL_FAIL_NTH;
        let reply = match &chan.page {
            Some(page) => shared_exchange(&chan.stream, page.get(), &call, staging.as_deref_mut()),
            None => exchange(&mut chan.stream, &call),
        };
        if reply.is_none() {
            *slot = None;
        }
        reply
    });
    match on_thread_channel {
        Ok(reply) => reply,
        // The thread's channel is gone (its thread-local storage was torn
        // down, as in an `atexit` handler): one channel for this call.
        Err(_) => {
            let mut chan = connect_channel(pid)?;
            let reply = match &chan.page {
                Some(page) => shared_exchange(&chan.stream, page.get(), &call, staging),
                None => exchange(&mut chan.stream, &call),
            };
            sys::forget_stream(chan.stream);
            reply
        }
    }
}

/// What a path under `/dev/vfio` opens: a device file (by minor) or a
/// group file (by number), as the hello names them.
fn vfio_path(path: &CStr) -> Option<(u32, u32)> {
    let path = path.to_str().ok()?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    if let Some(minor) = path.strip_prefix("/dev/vfio/devices/vfio") {
        return Some((HELLO_VFIO_DEVICE, number(minor)?));
    }
    Some((HELLO_VFIO_GROUP, number(path.strip_prefix("/dev/vfio/")?)?))
}

/// The session's copy of a sysfs path (see [`paths`]).
fn sysfs_redirect(path: &CStr) -> Option<std::ffi::CString> {
    let text = path.to_str().ok()?;
    if !text.starts_with("/sys/") {
        return None;
    }
    let socket = socket_path()?;
    let session = std::path::Path::new(&socket).parent()?;
    let shadow = std::ffi::CString::new(paths::redirect(text, session)?).ok()?;
    // A function's config space and the IOMMU driver's debugfs files show
    // the state at each open: the server writes them anew first.
    if text.starts_with("/sys/kernel/debug/iommu/") || text.ends_with("/config") {
        let _ = call(Call {
            op: CALL_REFRESH_VIEW,
            arg: text.as_ptr() as u64,
            len: text.len() as u64,
            ..Default::default()
        });
    }
    Some(shadow)
}

/// A `write` of `data` to the sysfs attribute at `path`: the count taken,
/// or a negative errno (`EIO` when no server answers).
fn attribute_write(path: &str, data: &[u8]) -> i64 {
    let mut message = Vec::with_capacity(path.len() + 1 + data.len());
    message.extend_from_slice(path.as_bytes());
    message.push(0);
    message.extend_from_slice(data);
    match call(Call {
        op: CALL_ATTRIBUTE_WRITE,
        arg: message.as_ptr() as u64,
        len: message.len() as u64,
        ..Default::default()
    }) {
        Some(r) if r.errno == 0 => r.result,
        Some(r) => -i64::from(r.errno),
        None => -i64::from(libc::EIO),
    }
}

/// A `pread` (`write` false) or `pwrite` of a VFIO device file: the count,
/// or a negative errno.
fn vfio_rw(ino: u64, buf: u64, len: u64, offset: u64, write: bool) -> i64 {
    match call(Call {
        op: if write { CALL_PWRITE } else { CALL_PREAD },
        ino,
        arg: buf,
        len,
        offset,
        ..Default::default()
    }) {
        Some(r) if r.errno == 0 => r.result,
        Some(r) => -i64::from(r.errno),
        None => -i64::from(libc::EIO),
    }
}

/// Opens a file the server serves: a context (`HELLO_CONTEXT`, or
/// `HELLO_VFIO_CONTAINER` for `/dev/vfio/vfio`) or a VFIO device or group
/// file (`HELLO_VFIO_DEVICE` / `HELLO_VFIO_GROUP` with its `index`). Returns
/// the descriptor, or a negative errno (the server says whether the file
/// exists and is free).
fn open_served(path: String, kind: u32, index: u32, flags: i32) -> i32 {
    let Ok(mut stream) = UnixStream::connect(path) else {
        return -libc::ENODEV;
    };
    if flags & libc::O_CLOEXEC != 0 {
        sys::set_cloexec(stream.as_raw_fd());
    } else {
        sys::clear_cloexec(stream.as_raw_fd());
    }
    let Some(ino) = sys::socket_inode(stream.as_raw_fd()) else {
        return -libc::EIO;
    };
    let hello = Hello {
        magic: MAGIC,
        kind,
        ino,
        index,
        reserved: 0,
    };
    // The socket goes with the hello: the server names the file by its
    // inode only once it has seen that this process holds it.
    if !sys::send_with_fd(stream.as_raw_fd(), hello.as_bytes(), stream.as_raw_fd()) {
        return -libc::EIO;
    }
    let mut ack = Reply::default();
    if stream.read_exact(ack.as_mut_bytes()).is_err() {
        return -libc::EIO;
    }
    if ack.errno != 0 {
        return -ack.errno;
    }
    let served = if kind == HELLO_VFIO_DEVICE || kind == HELLO_VFIO_GROUP {
        Kind::Vfio
    } else {
        Kind::Context
    };
    sys::remember(ino, served);
    sys::into_raw(stream)
}

/// Whether a path opens an iommufd context: `/dev/iommu`, or the VFIO
/// container.
fn is_dev_iommu(path: &CStr) -> bool {
    path.to_bytes() == DEV_IOMMU || path.to_bytes() == DEV_VFIO_CONTAINER
}

/// The hello a context path sends.
fn context_kind(path: &CStr) -> u32 {
    if path.to_bytes() == DEV_VFIO_CONTAINER {
        HELLO_VFIO_CONTAINER
    } else {
        HELLO_CONTEXT
    }
}

/// The inode behind `fd` and what it is, if `fd` is a file the server
/// serves (a context or a VFIO file): from the descriptor cache when it
/// knows the number, otherwise asked of the kernel (and the server) and
/// written down there.
fn served_file(fd: i32) -> Option<(u64, Kind)> {
    use fd_cache::Known;
    let miss = match fd_cache::look_up(fd) {
        Ok(Known::Context(ino)) => return Some((ino.into(), Kind::Context)),
        Ok(Known::Vfio(ino)) => return Some((ino.into(), Kind::Vfio)),
        Ok(Known::NotServed) => return None,
        Err(miss) => miss,
    };
    // Only answers that stay true while the number holds this file are
    // written down: not a number that holds nothing (`fstat` fails), nor
    // a server that could not be asked.
    let (mode, ino) = sys::mode_and_inode(fd)?;
    if mode != libc::S_IFSOCK {
        fd_cache::learn(miss, Known::NotServed);
        return None;
    }
    let kind = match sys::known(ino) {
        Some(k) => k,
        None => {
            let reply = call(Call {
                op: CALL_IS_CONTEXT,
                request: 0,
                ino,
                arg: 0,
                ..Default::default()
            })?;
            let k = match (reply.errno, reply.result) {
                (0, 1) => Kind::Context,
                (0, 2) => Kind::Vfio,
                _ => Kind::NotOurs,
            };
            sys::remember(ino, k);
            k
        }
    };
    let known = match (kind, u32::try_from(ino)) {
        (Kind::Context, Ok(small)) => Some(Known::Context(small)),
        (Kind::Vfio, Ok(small)) => Some(Known::Vfio(small)),
        (Kind::Context | Kind::Vfio, Err(_)) => None,
        (Kind::NotOurs | Kind::Side, _) => Some(Known::NotServed),
    };
    if let Some(known) = known {
        fd_cache::learn(miss, known);
    }
    matches!(kind, Kind::Context | Kind::Vfio).then_some((ino, kind))
}

/// The inode behind `fd`, if `fd` is a file the server serves.
fn context_of(fd: i32) -> Option<u64> {
    served_file(fd).map(|(ino, _)| ino)
}

/// Whether `fd` is a VFIO device or group file the server serves.
fn is_vfio_file(fd: i32) -> bool {
    let Some(ino) = context_of(fd) else {
        return false;
    };
    call(Call {
        op: CALL_IS_CONTEXT,
        ino,
        ..Default::default()
    })
    .is_some_and(|r| r.errno == 0 && r.result == 2)
}

/// The size of the argument struct of `request` at `arg` (its first
/// `u32`: an iommufd command's `size`, a VFIO struct's `argsz`), when it
/// can be staged in the call page: iommufd's commands (`_IO(';', 0x80 +
/// n)`) and the VFIO type1 container ioctls a context also serves
/// (`GET_INFO`, `MAP_DMA`, `UNMAP_DMA`), on a context only: on a VFIO
/// device file the same numbers name other ioctls.
fn stageable_size(request: u64, arg: u64, file: Kind) -> Option<usize> {
    let on_type = request >> 16 == 0 && (request >> 8) & 0xff == 0x3b;
    let nr = request & 0xff;
    // What a context serves: iommufd's commands, and VFIO type1's with
    // the size below which Linux answers EINVAL (not staged: the server
    // reads them itself and says so).
    let least = match (file, nr) {
        (Kind::Context, 0x80..) => 8,
        (Kind::Context, 0x70) => 16,
        (Kind::Context, 0x71) => 32,
        (Kind::Context, 0x72) => 24,
        _ => return None,
    };
    if !on_type || arg == 0 {
        return None;
    }
    let mut size = [0u8; 4];
    if !sys::read_program(&mut size, arg) {
        return None;
    }
    let size = u32::from_le_bytes(size) as usize;
    (least..=STAGE_MAX).contains(&size).then_some(size)
}

/// The largest struct the shim stages: every iommufd command's fits, and
/// its buffers stay small enough that clearing them costs nothing. (The
/// page takes up to `PAYLOAD_MAX`.)
const STAGE_MAX: usize = 256;

/// Runs an ioctl on a context: the return value, or a negative errno.
fn context_ioctl(fd: i32, (ino, file): (u64, Kind), request: u64, arg: u64) -> i64 {
    let call_ = Call {
        op: CALL_IOCTL,
        request: request as u32,
        ino,
        arg,
        fd,
        ..Default::default()
    };
    // The struct travels in the call page when it can be read and written
    // here (written with its own bytes: the server's response must not be
    // the first write to learn it is read-only, after the call took
    // effect). Otherwise the server reads and writes it itself and
    // answers as Linux would (EFAULT, the call undone).
    let mut original = [0u8; STAGE_MAX];
    let mut bytes = [0u8; STAGE_MAX];
    let staged = stageable_size(request, arg, file)
        .filter(|&n| {
            sys::read_program(&mut original[..n], arg) && sys::write_program(arg, &original[..n])
        })
        .inspect(|&n| bytes[..n].copy_from_slice(&original[..n]));
    let reply = match staged {
        Some(n) => call_staged(
            call_,
            Some(&mut Staging {
                user: arg,
                original: &original[..n],
                bytes: &mut bytes[..n],
            }),
        ),
        None => call(call_),
    };
    match reply {
        Some(r) if r.errno == 0 => r.result,
        Some(r) => -i64::from(r.errno),
        None => -i64::from(libc::EIO),
    }
}

/// Asks for the memory behind the region at `offset` of a context or a
/// VFIO device file: its descriptor and the offset in it to map at, or a
/// positive errno.
/// A mapping's memory: the descriptor, the offset in it, and the part of
/// the mapping whose stores trap (`(offset, length)` from its start).
type MappedRegion = (i32, u64, (u32, u32));

fn context_mmap(
    ino: u64,
    offset: u64,
    len: u64,
    prot: i32,
    flags: i32,
) -> Result<MappedRegion, i32> {
    match call(Call {
        op: CALL_MMAP,
        request: 0,
        ino,
        arg: offset,
        len,
        prot: prot as u32,
        flags: flags as u32,
        ..Default::default()
    }) {
        Some(r) if r.errno == 0 => Ok((r.result as i32, r.extra, (r.trap_start, r.trap_len))),
        Some(r) => Err(r.errno),
        None => Err(libc::EIO),
    }
}

/// The process whose status file `path` names (`/proc/self/status`,
/// `/proc/thread-self/status`, `/proc/<pid>/status`): 0 for the caller
/// itself, which the server knows by its own handle on it (its pid in
/// this process's pid namespace may mean another process to the server).
fn status_pid(path: &[u8]) -> Option<i32> {
    let name = path.strip_prefix(b"/proc/")?.strip_suffix(b"/status")?;
    match name {
        b"self" | b"thread-self" => Some(0),
        digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
            let pid: i32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some(if pid == std::process::id() as i32 {
                0
            } else {
                pid
            })
        }
        _ => None,
    }
}

/// A copy of the status file at `path` whose `VmPin` and `VmLck` include the
/// pages the engine pinned for that process, as Linux's would (iommufd
/// charges `pinned_vm` and, in `Mm` accounting, `locked_vm`). `None` when
/// the engine holds nothing for it: the real file is opened then.
fn status_with_pins(path: &CStr, cloexec: bool) -> Option<i32> {
    let pid = status_pid(path.to_bytes())?;
    let reply = call(Call {
        op: CALL_PROC_STATUS,
        arg: pid as u64,
        ..Default::default()
    })?;
    let (pinned, locked) = (reply.result.max(0) as u64, reply.extra);
    if reply.errno != 0 || (pinned == 0 && locked == 0) {
        return None;
    }
    let text = std::fs::read_to_string(std::path::Path::new(std::ffi::OsStr::from_bytes(
        path.to_bytes(),
    )))
    .ok()?;
    let page_kb = 4096 / 1024;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let add = if line.starts_with("VmPin:") {
            pinned
        } else if line.starts_with("VmLck:") {
            locked
        } else {
            0
        };
        match (
            add,
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok()),
        ) {
            (n, Some(kb)) if n > 0 => {
                let name = line.split(':').next().unwrap_or_default();
                out.push_str(&format!("{name}:\t{:8} kB\n", kb + n * page_kb));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let flags = if cloexec {
        rustix::fs::MemfdFlags::CLOEXEC
    } else {
        rustix::fs::MemfdFlags::empty()
    };
    let memory = rustix::fs::memfd_create("status", flags).ok()?;
    rustix::io::write(&memory, out.as_bytes()).ok()?;
    rustix::fs::seek(&memory, rustix::fs::SeekFrom::Start(0)).ok()?;
    Some(std::os::fd::IntoRawFd::into_raw_fd(memory))
}

/// How many bytes a `read` of `count` bytes from vEVENTQ file `ino` may
/// take (whole records), or a positive errno.
fn eventq_read_plan(ino: u64, count: u64) -> Result<u64, i32> {
    match call(Call {
        op: CALL_EVENTQ_READ,
        ino,
        len: count,
        ..Default::default()
    }) {
        Some(r) if r.errno == 0 => Ok(r.result.max(0) as u64),
        Some(r) => Err(r.errno),
        None => Err(libc::EIO),
    }
}

/// After a context descriptor was closed: let the server release the context
/// now if that was the last reference, so a reopen sees every pin gone.
fn context_closed(ino: u64) {
    let _ = call(Call {
        op: CALL_CLOSED,
        request: 0,
        ino,
        arg: 0,
        ..Default::default()
    });
}

/// Reads (`None`) this thread's fail-nth counter, which the server keeps
/// (see the `fail_nth` module), or writes the text given to it; its value
/// after.
fn fail_nth_call(write: Option<&[u8]>) -> Result<u64, libc::c_int> {
    match call(Call {
        op: CALL_FAIL_NTH,
        arg: write.map_or(0, |text| text.as_ptr() as u64),
        len: write.map_or(0, |text| text.len() as u64),
        flags: u32::from(write.is_some()),
        ..Default::default()
    }) {
        Some(r) if r.errno == 0 => Ok(r.result.max(0) as u64),
        Some(r) => Err(r.errno),
        None => Err(libc::EIO),
    }
}
