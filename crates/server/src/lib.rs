//! The softiommu server: the engine in one process, serving every program that
//! runs with the shim (see `softiommu-proto` for the vocabulary).
//!
//! Threads: one accepts connections; each context socket has a thread that
//! waits for its end-of-file (the program's last close); each call channel has a
//! thread that runs its ioctls; one thread (`hangup`) watches every call
//! channel for its program's exit. Lock order: the context table, then one
//! context; never two contexts at once.

use softiommu_engine::api::Engine;
use softiommu_engine::dispatch::user_buffers;
use softiommu_engine::memory::{
    AddressSpace, CallerFiles, FileBacking, PrefetchedMemory, ProcFiles, ProcessHandle,
    ProcessMemory,
};
use softiommu_engine::{Arg, Caller, Context, Credentials, Errno};
use softiommu_proto::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use zerocopy::IntoBytes;

mod hangup;
pub mod inspect;
mod sys;
pub mod sysfs;
pub mod trace;
mod vfio;

/// One context and the socket whose end-of-file releases it.
///
/// Two threads may release it: the context's reader at end-of-file, and the
/// call thread answering the shim's `CALL_CLOSED`, whose reply lets the
/// program's `close()` return. The entry stays in the context table until
/// the release has finished, so the second one finds it and waits on
/// `context`'s lock for the first (closing a context twice changes nothing).
#[derive(Debug)]
struct Hosted {
    /// Shared with the VFIO device files bound to it.
    context: Arc<Mutex<Context>>,
    socket: UnixStream,
    /// Opened as `/dev/vfio/vfio` (for the trace's names).
    container: bool,
    /// The process that opened it (shown by inspect, trusted for nothing).
    pid: Option<i32>,
}

/// The server's end of a side file.
#[derive(Debug)]
enum ServerEnd {
    /// Both ways (accesses, dma-bufs, fault queues): end-of-file is the
    /// program's last close.
    Socket(UnixStream),
    /// The write end of a pipe the program only reads (vEVENTQs), so that
    /// its unread bytes can be counted; the program's last close shows as
    /// an error on this end.
    Pipe(std::os::fd::OwnedFd),
}

/// A file given to a program (an access, a fault queue, a vEVENTQ): the
/// server keeps the other end, passes what the program writes to the engine,
/// writes what the engine queues for the program, and releases the object
/// when the program has closed it.
#[derive(Debug)]
struct SideFile {
    hosted: Arc<Hosted>,
    end: ServerEnd,
    /// Held by whoever reads the socket, so that bytes reach the engine in order.
    reader: Mutex<()>,
    /// Bytes for a pipe that did not fit yet, written as the program reads.
    backlog: Mutex<Vec<u8>>,
}

impl SideFile {
    /// Passes what the program has written so far to the engine; true once
    /// the program has closed its end (or the file broke).
    fn drain(&self, inode: u64) -> bool {
        let socket = match &self.end {
            ServerEnd::Socket(s) => s,
            ServerEnd::Pipe(fd) => {
                self.flush_backlog();
                return pipe_reader_gone(fd);
            }
        };
        let _reading = lock(&self.reader);
        let mut buf = [0u8; 4096];
        loop {
            let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            match nix::sys::socket::recv(socket.as_raw_fd(), &mut buf, flags) {
                Ok(0) => return true,
                Ok(n) => lock(&self.hosted.context).side_file_input(inode, &buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return true,
            }
        }
    }

    /// Writes engine output for the program. On a socket, a reader that lets
    /// its queue fill loses what does not fit rather than stalling the
    /// server; a pipe keeps the rest until the program reads.
    fn deliver(&self, bytes: &[u8]) {
        match &self.end {
            ServerEnd::Socket(socket) => {
                let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT;
                let _ = nix::sys::socket::send(socket.as_raw_fd(), bytes, flags);
            }
            ServerEnd::Pipe(_) => {
                lock(&self.backlog).extend_from_slice(bytes);
                self.flush_backlog();
            }
        }
    }

    fn flush_backlog(&self) {
        let ServerEnd::Pipe(fd) = &self.end else {
            return;
        };
        let mut backlog = lock(&self.backlog);
        while !backlog.is_empty() {
            match rustix::io::write(fd, &backlog) {
                Ok(n) => {
                    backlog.drain(..n);
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// Bytes written for the program that it has not read.
    fn unread(&self) -> Option<u64> {
        let ServerEnd::Pipe(fd) = &self.end else {
            return None;
        };
        let in_pipe = rustix::io::ioctl_fionread(fd).ok()?;
        Some(in_pipe + lock(&self.backlog).len() as u64)
    }
}

/// Whether every reader of the pipe whose write end is `fd` has closed it.
fn pipe_reader_gone(fd: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        Err(_) => false,
    }
}

/// The server state shared by its threads.
#[derive(Debug)]
struct State {
    engine: Engine,
    /// Contexts by the inode of the program's end of their socket.
    contexts: Mutex<HashMap<u64, Arc<Hosted>>>,
    /// How many contexts have left `contexts`: a channel's remembered
    /// context is good while this has not moved (see `Channel::recent`).
    contexts_removed: std::sync::atomic::AtomicU64,
    /// Side files by the inode of the program's end.
    side_files: Mutex<HashMap<u64, Arc<SideFile>>>,
    /// One address space per process, so pins of one process's pages are counted
    /// together across its contexts.
    /// Entries of processes that have exited are dropped when a channel is
    /// made: their pids may be handed to other processes.
    spaces: Mutex<HashMap<i32, Arc<ProcessMemory>>>,
    /// The memory behind regions mapped through a context's descriptor, by
    /// the engine's region id, with the context's inode. Made at the first
    /// mapping; dropped with the context (a mapping keeps its own reference).
    regions: Mutex<HashMap<u64, (u64, std::os::fd::OwnedFd)>>,
    /// VFIO device and group files by the inode of the program's end.
    vfio_files: Mutex<HashMap<u64, Arc<vfio::HostedVfio>>>,
    /// The session directory (beside the socket), where the sysfs and
    /// debugfs views live.
    session: Option<PathBuf>,
    /// Connections being served (at most `limits.max_connections`).
    connections: std::sync::atomic::AtomicUsize,
    /// Connections being served per connecting process (by its pid at
    /// connect time; entries leave at zero). A leaf lock.
    connections_by_process: Mutex<HashMap<i32, usize>>,
    limits: Limits,
    /// The call trace, when one was asked for (set before serving).
    trace: std::sync::OnceLock<trace::Tracer>,
}

/// How long a new connection may take to send its hello.
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most connections (contexts, VFIO files and call channels, each
/// served by a thread) the server keeps at once.
pub const MAX_CONNECTIONS: usize = 4096;

/// The most connections one process keeps at once (its contexts, VFIO
/// files and call channels; a program's descriptor limit is 1024 by
/// default), so that one runaway program cannot take them all.
pub const MAX_CONNECTIONS_PER_PROCESS: usize = 1024;

/// The most side files (accesses, fault queues, vEVENTQs, dma-bufs) the
/// server keeps at once, each a descriptor and a watching thread; past it
/// a call that would make one fails with `EMFILE`.
pub const MAX_SIDE_FILES: usize = 8192;

/// What the server bounds (see docs/design.md, "Trust"). The defaults are
/// the constants above; `SOFTIOMMU_HELLO_TIMEOUT_MS`,
/// `SOFTIOMMU_MAX_CONNECTIONS`, `SOFTIOMMU_MAX_CONNECTIONS_PER_PROCESS`,
/// `SOFTIOMMU_MAX_SIDE_FILES`, `SOFTIOMMU_MAX_OBJECTS_PER_CONTEXT` and
/// `SOFTIOMMU_MAX_RANGES_PER_CONTEXT` in the server's environment lower or
/// raise them (tests use small ones).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a new connection may take to send its hello.
    pub hello_timeout: std::time::Duration,
    /// The most connections served at once.
    pub max_connections: usize,
    /// The most connections of one process served at once.
    pub max_connections_per_process: usize,
    /// The most side files kept at once.
    pub max_side_files: usize,
    /// What one context may hold (the engine's defaults unless set).
    pub context: softiommu_engine::limits::ContextLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hello_timeout: HELLO_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_process: MAX_CONNECTIONS_PER_PROCESS,
            max_side_files: MAX_SIDE_FILES,
            context: softiommu_engine::limits::ContextLimits::default(),
        }
    }
}

impl Limits {
    /// The defaults, with what the environment sets.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok()?.parse::<u64>().ok();
        let mut limits = Limits::default();
        if let Some(ms) = var("SOFTIOMMU_HELLO_TIMEOUT_MS").filter(|&ms| ms > 0) {
            limits.hello_timeout = std::time::Duration::from_millis(ms);
        }
        if let Some(n) = var("SOFTIOMMU_MAX_CONNECTIONS") {
            limits.max_connections = n as usize;
        }
        if let Some(n) = var("SOFTIOMMU_MAX_CONNECTIONS_PER_PROCESS") {
            limits.max_connections_per_process = n as usize;
        }
        if let Some(n) = var("SOFTIOMMU_MAX_SIDE_FILES") {
            limits.max_side_files = n as usize;
        }
        if let Some(n) = var("SOFTIOMMU_MAX_OBJECTS_PER_CONTEXT") {
            limits.context.objects = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = var("SOFTIOMMU_MAX_RANGES_PER_CONTEXT") {
            limits.context.ranges = n;
        }
        limits
    }
}

/// The name of region memory, which `/proc/<pid>/maps` shows.
const REGION_NAME: &str = "softiommu-region";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes `table[ino]` if it is still `entry`: a concurrent releaser may
/// have removed it already.
fn remove_entry<T>(table: &Mutex<HashMap<u64, Arc<T>>>, ino: u64, entry: &Arc<T>) {
    let mut table = lock(table);
    if table.get(&ino).is_some_and(|e| Arc::ptr_eq(e, entry)) {
        table.remove(&ino);
    }
}

impl State {
    /// The address space of `process`, shared by all its channels. An entry
    /// under its pid whose process is still alive is its own: two live
    /// processes never share a pid.
    fn space(&self, process: &Arc<ProcessHandle>) -> Arc<ProcessMemory> {
        let mut spaces = lock(&self.spaces);
        spaces.retain(|_, space| !space.process().exited());
        spaces
            .entry(process.pid().as_raw())
            .or_insert_with(|| Arc::new(ProcessMemory::of(process.clone())))
            .clone()
    }

    /// Releases a context or a side file whose socket has reached
    /// end-of-file; returns once it is released, also when another thread
    /// began the release (the shim's `close()` waits for this).
    /// The server's state as inspect's JSON document: the machine's
    /// devices and every context, by inode. Each context is locked in
    /// turn, so a context in the middle of a call is shown after it.
    fn inspect(&self) -> serde_json::Value {
        let mut hosted: Vec<(u64, Arc<Hosted>)> = lock(&self.contexts)
            .iter()
            .map(|(&ino, h)| (ino, h.clone()))
            .collect();
        hosted.sort_by_key(|&(ino, _)| ino);
        let views: Vec<inspect::ContextView> = hosted
            .iter()
            .map(|(ino, h)| inspect::ContextView {
                id: *ino,
                pid: h.pid,
                file: if h.container {
                    "vfio-container"
                } else {
                    "iommufd"
                },
                report: softiommu_engine::inspect::report(&lock(&h.context)),
            })
            .collect();
        let devices = match views.first() {
            Some(v) => v.report.devices.clone(),
            None => {
                softiommu_engine::inspect::report(&Context::new(self.engine.shared().clone()))
                    .devices
            }
        };
        inspect::snapshot(&devices, &views)
    }

    fn release_if_closed(&self, ino: u64) {
        let at_eof = |socket: &UnixStream| {
            let mut byte = [0u8; 1];
            let flags =
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            matches!(
                nix::sys::socket::recv(socket.as_raw_fd(), &mut byte, flags),
                Ok(0)
            )
        };
        let hosted = lock(&self.contexts).get(&ino).cloned();
        if let Some(h) = hosted {
            if at_eof(&h.socket) {
                self.release(ino);
            }
            return;
        }
        let vfio = lock(&self.vfio_files).get(&ino).cloned();
        if let Some(h) = vfio {
            if at_eof(&h.socket) {
                self.release_vfio(ino);
            }
            return;
        }
        let side = lock(&self.side_files).get(&ino).cloned();
        if side.is_some_and(|f| f.drain(ino)) {
            self.release_side_file(ino);
        }
    }

    /// Releases a side file's object. As for contexts, the entry leaves the
    /// table only once its object is released: a concurrent releaser that
    /// finds it waits on the context's lock.
    fn release_side_file(&self, ino: u64) {
        let Some(f) = lock(&self.side_files).get(&ino).cloned() else {
            return;
        };
        lock(&f.hosted.context).side_file_closed(ino);
        remove_entry(&self.side_files, ino, &f);
    }

    /// Releases a context: closes it and drops its regions, and only then
    /// removes it from the table (see [`Hosted`]), so that no releaser can
    /// return while another is still closing it.
    fn release(&self, ino: u64) {
        let Some(h) = lock(&self.contexts).get(&ino).cloned() else {
            return;
        };
        lock(&h.context).close();
        lock(&self.regions).retain(|_, (owner, _)| *owner != ino);
        remove_entry(&self.contexts, ino, &h);
        self.contexts_removed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Counts a new connection against its process's share; `None` (and
    /// nothing counted) when the process has its share already or cannot
    /// be told.
    fn admit_process(&self, stream: &UnixStream) -> Option<i32> {
        let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .ok()?;
        let mut counts = lock(&self.connections_by_process);
        let count = counts.entry(peer.pid()).or_insert(0);
        if *count >= self.limits.max_connections_per_process {
            return None;
        }
        *count += 1;
        Some(peer.pid())
    }

    fn release_process(&self, pid: i32) {
        let mut counts = lock(&self.connections_by_process);
        if let Some(count) = counts.get_mut(&pid) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&pid);
            }
        }
    }

    /// Whether a context or VFIO file is served under `ino`.
    fn serves(&self, ino: u64) -> bool {
        lock(&self.contexts).contains_key(&ino) || lock(&self.vfio_files).contains_key(&ino)
    }

    /// A descriptor of the memory behind a context's region, made and filled
    /// with its first contents on first use.
    fn region_memory(
        &self,
        ino: u64,
        region: &softiommu_engine::object::MmapRegion,
    ) -> Result<std::os::fd::OwnedFd, Errno> {
        use rustix::fs::MemfdFlags;
        let mut regions = lock(&self.regions);
        if let Some((_, fd)) = regions.get(&region.region_id) {
            return fd.try_clone().map_err(|_| Errno::ENOMEM);
        }
        let fd = rustix::fs::memfd_create(REGION_NAME, MemfdFlags::CLOEXEC)
            .map_err(|_| Errno::ENOMEM)?;
        rustix::fs::ftruncate(&fd, region.length).map_err(|_| Errno::ENOMEM)?;
        let mut written = 0;
        while written < region.contents.len() {
            written += rustix::io::pwrite(&fd, &region.contents[written..], written as u64)
                .map_err(|_| Errno::ENOMEM)?;
        }
        let copy = fd.try_clone().map_err(|_| Errno::ENOMEM)?;
        regions.insert(region.region_id, (ino, fd));
        Ok(copy)
    }
}

/// Whether `process` maps the memory file `fd`.
fn process_maps(process: &ProcessHandle, fd: &std::os::fd::OwnedFd) -> bool {
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return false;
    };
    let inode = stat.st_ino.to_string();
    let maps = process.read_to_string("maps").unwrap_or_default();
    maps.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(4) == Some(inode.as_str()) && line.contains(REGION_NAME)
    })
}

/// A running server.
pub struct Server {
    state: Arc<State>,
    listener: UnixListener,
    path: PathBuf,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

impl Server {
    /// Listens at `path`, serving the built-in machine.
    pub fn bind(path: &Path) -> std::io::Result<Server> {
        Self::bind_with(path, Engine::new())
    }

    /// Listens at `path`, serving `engine`'s machine.
    pub fn bind_with(path: &Path, engine: Engine) -> std::io::Result<Server> {
        let listener = UnixListener::bind(path)?;
        // Every connection hands the receiver its sender's credentials, so
        // a call channel can tell its owner from a forked child.
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(std::io::Error::from)?;
        let limits = Limits::from_env();
        *engine
            .shared()
            .context_limits
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = limits.context;
        let state = Arc::new(State {
            engine,
            contexts: Mutex::new(HashMap::new()),
            contexts_removed: std::sync::atomic::AtomicU64::new(0),
            side_files: Mutex::new(HashMap::new()),
            spaces: Mutex::new(HashMap::new()),
            regions: Mutex::new(HashMap::new()),
            vfio_files: Mutex::new(HashMap::new()),
            session: path.parent().map(Path::to_owned),
            connections: std::sync::atomic::AtomicUsize::new(0),
            connections_by_process: Mutex::new(HashMap::new()),
            limits,
            trace: std::sync::OnceLock::new(),
        });
        // What programs read in sysfs about the machine's PCI functions,
        // beside the socket (the shim finds it there).
        if let Some(dir) = &state.session {
            sysfs::write(dir, state.engine.shared(), state.engine.vfio())?;
        }
        Ok(Server {
            state,
            listener,
            path: path.to_owned(),
        })
    }

    /// Traces every call from now on (see [`trace`]); at most one trace.
    pub fn set_trace(&self, tracer: trace::Tracer) {
        let _ = self.state.trace.set(tracer);
    }

    /// The engine behind the server (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Accepts and serves connections until the listener fails.
    ///
    /// SIGPIPE is blocked on this thread and so on every thread it starts:
    /// a program that closes its end while the server writes costs that
    /// write an `EPIPE`, never the process (which may be a host that did
    /// not ignore SIGPIPE, as Rust's `main` does).
    pub fn serve(self) {
        let mut pipe = nix::sys::signal::SigSet::empty();
        pipe.add(nix::sys::signal::Signal::SIGPIPE);
        let _ = pipe.thread_block();
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { break };
            // Past the limit a connection is closed at once: the program
            // sees EIO rather than the server running out of threads.
            let max = self.state.limits.max_connections;
            if self.state.connections.fetch_add(1, Ordering::Relaxed) >= max {
                self.state.connections.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            // One process may not take every connection: past its share
            // its new ones are closed too, and other programs still connect.
            let Some(pid) = self.state.admit_process(&stream) else {
                self.state.connections.fetch_sub(1, Ordering::Relaxed);
                continue;
            };
            let state = self.state.clone();
            let spawned = spawn_server_thread(move || {
                serve_connection(state.clone(), stream);
                state.release_process(pid);
                state.connections.fetch_sub(1, Ordering::Relaxed);
            });
            if spawned.is_err() {
                // No thread to be had: the connection is closed (the program
                // sees EIO) and the server goes on.
                self.state.release_process(pid);
                self.state.connections.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The stack of a server thread: calls run the engine, which needs far
/// less than the default 2 MiB, and a smaller stack lets more connections
/// fit in the memory map.
const SERVER_THREAD_STACK: usize = 512 << 10;

/// Starts a server thread; an error (no memory, no room in the memory map)
/// is returned, never a panic.
pub(crate) fn spawn_server_thread(
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .stack_size(SERVER_THREAD_STACK)
        .spawn(f)
}

/// Reads one call packet, every byte of which `pid` must have sent: the
/// listener passes credentials (`SO_PASSCRED`), and a forked child writing
/// on its parent's inherited channel shows its own pid, which the kernel
/// fills in and the child cannot forge.
fn read_call(stream: &UnixStream, out: &mut Call, pid: i32) -> bool {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
    let bytes = out.as_mut_bytes();
    let mut got = 0;
    while got < bytes.len() {
        let mut control = nix::cmsg_space!(UnixCredentials);
        let mut iov = [std::io::IoSliceMut::new(&mut bytes[got..])];
        let Ok(msg) = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::empty(),
        ) else {
            return false;
        };
        if msg.bytes == 0 {
            return false;
        }
        let from_owner = msg.cmsgs().is_ok_and(|mut c| {
            c.any(|c| matches!(c, ControlMessageOwned::ScmCredentials(cred) if cred.pid() == pid))
        });
        if !from_owner {
            return false;
        }
        got += msg.bytes;
    }
    true
}

fn serve_connection(state: Arc<State>, stream: UnixStream) {
    // A connection that says nothing is closed: the shim sends its hello
    // right after connecting.
    if stream
        .set_read_timeout(Some(state.limits.hello_timeout))
        .is_err()
    {
        return;
    }
    let Some((hello, fd)) = sys::read_hello(&stream) else {
        return;
    };
    if stream.set_read_timeout(None).is_err() {
        return;
    }
    if hello.magic != MAGIC {
        return;
    }
    let mut hello = hello;
    match (hello.kind, fd) {
        (
            HELLO_CONTEXT | HELLO_VFIO_CONTAINER | HELLO_VFIO_DEVICE | HELLO_VFIO_GROUP,
            Some(end),
        ) => {
            // The file is named by the inode of the program's end, which the
            // program proves it holds by sending it.
            let Some(ino) = program_end_inode(&stream, end) else {
                return;
            };
            if hello.ino != ino || state.serves(ino) {
                return;
            }
            hello.ino = ino;
            match hello.kind {
                HELLO_CONTEXT => serve_context(state, stream, ino, false),
                HELLO_VFIO_CONTAINER => serve_context(state, stream, ino, true),
                _ => vfio::serve_vfio_open(state, stream, &hello),
            }
        }
        (HELLO_CALL, None) => serve_calls(state, stream),
        (HELLO_INSPECT, None) => {
            let doc = state.inspect().to_string();
            let mut stream = stream;
            let _ = stream.write_all(&(doc.len() as u64).to_le_bytes());
            let _ = stream.write_all(doc.as_bytes());
        }
        (HELLO_CALL_SHARED, Some(fd)) => {
            if let Some(page) = sys::SharedPage::map(&fd) {
                serve_shared_calls(state, stream, page);
            }
        }
        _ => {}
    }
}

/// The inode of `end`, the program's end of the connection `stream`, which
/// came with the hello; `None` unless `end` really is this connection's
/// other end (bytes written into it arrive here) and nothing else is queued.
fn program_end_inode(stream: &UnixStream, end: std::os::fd::OwnedFd) -> Option<u64> {
    let ino = rustix::fs::fstat(&end).ok()?.st_ino;
    let mut nonce = [0u8; 16];
    rustix::rand::getrandom(&mut nonce, rustix::rand::GetRandomFlags::empty()).ok()?;
    if rustix::io::write(&end, &nonce).ok()? != nonce.len() {
        return None;
    }
    // Our hold on the program's end must not outlive the check: the file
    // is released when the program's last descriptor of it closes.
    drop(end);
    // A write into a connected stream socket lands in its peer's queue
    // before it returns: anything but the nonce, there and then, fails.
    let mut echoed = [0u8; 16];
    let got = nix::sys::socket::recv(
        stream.as_raw_fd(),
        &mut echoed,
        nix::sys::socket::MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    (got == echoed.len() && echoed == nonce).then_some(ino)
}

fn serve_context(state: Arc<State>, stream: UnixStream, ino: u64, vfio_container: bool) {
    let Ok(mut watch) = stream.try_clone() else {
        return;
    };
    let mut context = Context::new(state.engine.shared().clone());
    if vfio_container {
        context.set_legacy_vfio_container();
    }
    let pid = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.pid());
    let hosted = Arc::new(Hosted {
        context: context.into_shared(),
        socket: stream,
        container: vfio_container,
        pid,
    });
    lock(&state.contexts).insert(ino, hosted);
    // The program's open() returns once the context exists.
    if watch.write_all(Reply::default().as_bytes()).is_err() {
        state.release(ino);
        return;
    }
    // Nothing else is sent on a context socket: a read ends at the last close.
    let mut sink = [0u8; 64];
    while let Ok(n) = watch.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    state.release(ino);
}

/// Credentials of a process, from `/proc`.
fn credentials(process: &ProcessHandle) -> Credentials {
    let status = process.read_to_string("status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let cap_eff = field("CapEff:")
        .and_then(|v| u64::from_str_radix(v, 16).ok())
        .unwrap_or(0);
    let uid = field("Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let limits = process.read_to_string("limits").unwrap_or_default();
    let memlock = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|v| {
            if v == "unlimited" {
                u64::MAX
            } else {
                v.parse().unwrap_or(0)
            }
        })
        .unwrap_or(8 << 20);
    Credentials {
        uid,
        cap_ipc_lock: cap_eff & (1 << 14) != 0,
        // Policy: root may change the accounting mode even where a container
        // took CAP_SYS_RESOURCE away (the selftest expects root to).
        cap_sys_resource: cap_eff & (1 << 24) != 0 || uid == 0,
        memlock_limit: memlock,
    }
}

/// A program's descriptors, for one call: reads its files through `/proc`, and
/// holds the side file a call creates until the reply carries it.
#[derive(Debug)]
struct CallFiles {
    process: Arc<ProcessHandle>,
    proc: ProcFiles,
    pending: Mutex<Option<PendingFile>>,
    /// For counting what the program has not read of its event files.
    state: Arc<State>,
}

/// A side file made during a call: the program's end (sent with the reply),
/// the server's end, where the number goes, and the program end's inode.
#[derive(Debug)]
struct PendingFile {
    program_end: std::os::fd::OwnedFd,
    server_end: ServerEnd,
    fd_addr: u64,
    inode: u64,
}

/// The largest pipe an unprivileged process may ask for by default
/// (`/proc/sys/fs/pipe-max-size`); bigger backlogs wait in the server.
const EVENT_PIPE_SIZE: usize = 1 << 20;

impl CallFiles {
    /// Keeps a new side file until the reply carries the program's end.
    fn hold(
        &self,
        program_end: std::os::fd::OwnedFd,
        server_end: ServerEnd,
        fd_addr: u64,
    ) -> softiommu_engine::Result<(Option<i32>, u64)> {
        // Each side file costs the server a descriptor and a thread: past
        // the limit a new one is refused as a full descriptor table is.
        if lock(&self.state.side_files).len() >= self.state.limits.max_side_files {
            return Err(Errno(libc::EMFILE));
        }
        let inode = nix::sys::stat::fstat(program_end.as_raw_fd())
            .map_err(|_| Errno::ENOMEM)?
            .st_ino;
        *lock(&self.pending) = Some(PendingFile {
            program_end,
            server_end,
            fd_addr,
            inode,
        });
        Ok((None, inode))
    }
}

impl CallerFiles for CallFiles {
    fn resolve(&self, fd: i32) -> softiommu_engine::Result<Arc<dyn FileBacking>> {
        self.proc.resolve(fd)
    }

    fn create_side_file(&self, fd_addr: u64) -> softiommu_engine::Result<(Option<i32>, u64)> {
        let (program_end, server_end) = UnixStream::pair().map_err(|_| Errno::ENOMEM)?;
        self.hold(program_end.into(), ServerEnd::Socket(server_end), fd_addr)
    }

    fn create_event_file(&self, fd_addr: u64) -> softiommu_engine::Result<(Option<i32>, u64)> {
        use rustix::fs::OFlags;
        use rustix::pipe::PipeFlags;
        let (read_end, write_end) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|_| Errno::ENOMEM)?;
        // Neither end may block: the server never waits on a reader, and a
        // read of an empty queue returns at once (EAGAIN; Linux returns 0).
        for end in [&read_end, &write_end] {
            rustix::fs::fcntl_setfl(end, OFlags::NONBLOCK).map_err(|_| Errno::ENOMEM)?;
        }
        // Best effort: a smaller pipe only means a longer backlog.
        let _ = rustix::pipe::fcntl_setpipe_size(&write_end, EVENT_PIPE_SIZE);
        self.hold(read_end, ServerEnd::Pipe(write_end), fd_addr)
    }

    fn region_mapped(&self, region_id: u64) -> bool {
        let regions = lock(&self.state.regions);
        regions
            .get(&region_id)
            .is_some_and(|(_, fd)| process_maps(&self.process, fd))
    }

    fn unread_bytes(&self, inode: u64) -> Option<u64> {
        let side = lock(&self.state.side_files).get(&inode).cloned();
        side?.unread()
    }

    fn eventfd(
        &self,
        fd: i32,
    ) -> softiommu_engine::Result<Arc<dyn softiommu_engine::memory::EventSignal>> {
        vfio::take_eventfd(&self.process, fd)
    }

    fn inode_of(&self, fd: i32) -> softiommu_engine::Result<u64> {
        if fd < 0 {
            return Err(Errno::EBADFD);
        }
        self.process
            .inode(&format!("fd/{fd}"))
            .map_err(|_| Errno::EBADFD)
    }
}

/// Sends a reply, with a descriptor when a side file came out of the call.
fn send_reply(stream: &UnixStream, reply: &Reply, fd: Option<&std::os::fd::OwnedFd>) -> bool {
    let bytes = reply.as_bytes();
    let iov = [std::io::IoSlice::new(bytes)];
    let flags = nix::sys::socket::MsgFlags::empty();
    let sent = match fd {
        Some(f) => {
            let fds = [f.as_raw_fd()];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
            nix::sys::socket::sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, flags, None)
        }
        None => nix::sys::socket::sendmsg::<()>(stream.as_raw_fd(), &iov, &[], flags, None),
    };
    match sent {
        Ok(n) if n == bytes.len() => true,
        Ok(n) => {
            let mut rest = stream;
            rest.write_all(&bytes[n..]).is_ok()
        }
        Err(_) => false,
    }
}

/// One call channel's caller: the program's process, memory, descriptors and
/// credentials.
struct Channel {
    state: Arc<State>,
    mem: Arc<dyn AddressSpace>,
    files: CallFiles,
    creds: Credentials,
    /// Inodes of files this channel's process has been seen to hold (see
    /// [`Channel::holds`]).
    held: Mutex<std::collections::HashSet<u64>>,
    /// The context the last ioctl reached: its inode, the count of removed
    /// contexts then, and the context. A program calls one context over
    /// and over; this spares each call the table's lock and two hash
    /// lookups. Good while no context has left the table since (a removed
    /// context's inode may be reused); a context found here was held by
    /// the process, and `held` never forgets.
    recent: std::cell::RefCell<Option<(u64, u64, Arc<Hosted>)>>,
}

/// A call's answer: the reply, the descriptor that goes with it, and a side
/// file to watch once the reply is out.
struct Answer {
    reply: Reply,
    attached: Option<std::os::fd::OwnedFd>,
    side: Option<(ServerEnd, u64)>,
    /// The kind of context an ioctl acted on, for the trace (known from
    /// the lookup the call made anyway).
    context: Option<trace::describe::FileKind>,
}

impl Channel {
    fn of(state: &Arc<State>, stream: &UnixStream) -> Option<Channel> {
        let peer = nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
            .ok()?;
        // The process is named by its pidfd from the connection, never by
        // pid alone (see `ProcessHandle`).
        let process = ProcessHandle::bind(peer.pid(), sys::peer_pidfd(stream)?).ok()?;
        Some(Channel {
            state: state.clone(),
            mem: state.space(&process),
            files: CallFiles {
                process: process.clone(),
                proc: ProcFiles::of(process.clone()),
                pending: Mutex::new(None),
                state: state.clone(),
            },
            creds: credentials(&process),
            held: Mutex::new(std::collections::HashSet::new()),
            recent: std::cell::RefCell::new(None),
        })
    }

    /// The context under `ino` if it is the one the last ioctl reached
    /// and no context has left the table since.
    fn recent_context(&self, ino: u64) -> Option<Arc<Hosted>> {
        let removed = self
            .state
            .contexts_removed
            .load(std::sync::atomic::Ordering::SeqCst);
        match &*self.recent.borrow() {
            Some((at, seen, h)) if *at == ino && *seen == removed => Some(h.clone()),
            _ => None,
        }
    }

    /// The context under `ino`, looked up in the table and remembered
    /// (the caller has checked that the process holds it).
    fn lookup_context(&self, ino: u64) -> Option<Arc<Hosted>> {
        let removed = self
            .state
            .contexts_removed
            .load(std::sync::atomic::Ordering::SeqCst);
        let hosted = lock(&self.state.contexts).get(&ino).cloned();
        if let Some(h) = &hosted {
            *self.recent.borrow_mut() = Some((ino, removed, h.clone()));
        }
        hosted
    }

    /// Whether the calling process holds a descriptor of the socket whose
    /// inode is `ino`: a call may act only on a context or file its caller
    /// holds, as a kernel file is reached only through a descriptor. Read
    /// from `/proc/<pid>/fd` the first time, remembered after.
    fn holds(&self, ino: u64) -> bool {
        if lock(&self.held).contains(&ino) {
            return true;
        }
        // The program's end is a socket, or a pipe for an event queue.
        let socket = format!("socket:[{ino}]");
        let pipe = format!("pipe:[{ino}]");
        let found = self
            .files
            .process
            .descriptors()
            .is_ok_and(|links| links.iter().any(|(_, l)| *l == socket || *l == pipe));
        if found {
            lock(&self.held).insert(ino);
        }
        found
    }

    /// Answers `call`. `staged` is the argument struct the program copied
    /// into its call page (see `Call::len`), which an ioctl on a context
    /// then reads and writes instead of the program's memory. When tracing,
    /// also the call's record, for [`traced`](Self::traced) once the reply
    /// is on its way.
    fn handle(&self, call: &Call, staged: Option<&mut [u8]>) -> (Answer, Option<trace::Record>) {
        match self.state.trace.get() {
            None => (self.answer(call, staged), None),
            Some(_) => self.answer_traced(call, staged),
        }
    }

    /// Writes `record` (from [`handle`](Self::handle)) to the trace, once
    /// the reply is on its way: the time, and the struct as the call left
    /// it when it was staged (`staged`, still as the call left it), are
    /// taken here, off the program's wait.
    fn traced(&self, record: Option<trace::Record>, staged: Option<&[u8]>) {
        let (Some(mut record), Some(tracer)) = (record, self.state.trace.get()) else {
            return;
        };
        record.at = std::time::Instant::now();
        if let (trace::Op::Ioctl { after, .. }, Some(bytes)) = (&mut record.op, staged) {
            if after.is_none() {
                *after = Some(trace::StructBytes::new(bytes));
            }
        }
        tracer.record(&record);
    }

    /// What kind of file `call` acts on, for the trace; `None` for calls
    /// that are no system call of the program on a served file.
    fn traced_kind(&self, call: &Call) -> Option<trace::describe::FileKind> {
        use trace::describe::FileKind;
        if !matches!(call.op, CALL_IOCTL | CALL_MMAP | CALL_PREAD | CALL_PWRITE) {
            return None;
        }
        if let Some(h) = lock(&self.state.contexts).get(&call.ino) {
            return Some(if h.container {
                FileKind::VfioContainer
            } else {
                FileKind::Iommufd
            });
        }
        self.state.vfio_file(call.ino).map(|h| match h.group {
            Some(_) => FileKind::VfioGroup,
            None => FileKind::VfioDevice,
        })
    }

    /// [`answer`](Self::answer), and a trace record of it.
    fn answer_traced(
        &self,
        call: &Call,
        mut staged: Option<&mut [u8]>,
    ) -> (Answer, Option<trace::Record>) {
        // A staged struct is a context's, whose kind the call's own lookup
        // reports; other calls look their file up here.
        let early = match staged {
            Some(_) => None,
            None => self.traced_kind(call),
        };
        // The struct as passed (the trace shows what the call changed).
        let before = match (&staged, early, call.op) {
            (Some(bytes), _, CALL_IOCTL) => Some(trace::StructBytes::new(bytes)),
            (None, Some(kind), CALL_IOCTL) => self.read_traced_struct(kind, call),
            _ => None,
        };
        // Moves noted before this call are not its own.
        let _ = softiommu_iommu::watch::take_dma_changes();
        let answer = self.answer(call, staged.as_deref_mut());
        let moved = softiommu_iommu::watch::take_dma_changes();
        let Some(kind) = answer.context.or(early) else {
            return (answer, None);
        };
        if let Some(tracer) = self.state.trace.get() {
            tracer.begin();
        }
        let op = match call.op {
            CALL_IOCTL => {
                // The struct after the call: the staged copy (taken once
                // the reply is out, see `traced`), or read back from the
                // program now, before it can reuse the struct (only what
                // the trace shows).
                let after = match staged {
                    Some(_) => None,
                    None if before.is_some() => self.read_traced_struct(kind, call),
                    None => None,
                };
                trace::Op::Ioctl {
                    request: call.request,
                    arg: call.arg,
                    before,
                    after,
                }
            }
            CALL_MMAP => trace::Op::Mmap {
                offset: call.arg,
                len: call.len,
            },
            _ => trace::Op::Access {
                write: call.op == CALL_PWRITE,
                offset: call.offset,
                len: call.len,
            },
        };
        let record = trace::Record {
            // Set once the reply is on its way (see `traced`).
            at: self
                .state
                .trace
                .get()
                .map_or_else(std::time::Instant::now, trace::Tracer::started),
            pid: self.files.process.pid().as_raw(),
            tid: call.tid,
            fd: if call.op == CALL_IOCTL { call.fd } else { -1 },
            kind,
            op,
            result: match answer.reply.errno {
                0 => Ok(answer.reply.result),
                e => Err(e),
            },
            devices: moved,
        };
        (answer, Some(record))
    }

    /// The fields of `call`'s struct the trace shows, read from the
    /// program (a struct that was not staged).
    fn read_traced_struct(
        &self,
        kind: trace::describe::FileKind,
        call: &Call,
    ) -> Option<trace::StructBytes> {
        let size = trace::describe::struct_size(kind, call.request).min(trace::STRUCT_KEPT);
        let mut buf = [0u8; trace::STRUCT_KEPT];
        (size > 0 && self.mem.read(call.arg, &mut buf[..size]).is_ok())
            .then(|| trace::StructBytes::new(&buf[..size]))
    }

    /// Answers `call` (see [`handle`](Self::handle)).
    fn answer(&self, call: &Call, staged: Option<&mut [u8]>) -> Answer {
        let state = &self.state;
        // Calls on a file act only for a process that holds it (a close
        // call comes after the close, and only ever releases a file whose
        // every holder has closed it).
        let names_a_file = matches!(
            call.op,
            CALL_IOCTL | CALL_MMAP | CALL_PREAD | CALL_PWRITE | CALL_EVENTQ_READ | CALL_IS_CONTEXT
        );
        let recent = if call.op == CALL_IOCTL {
            self.recent_context(call.ino)
        } else {
            None
        };
        if names_a_file && recent.is_none() && !self.holds(call.ino) {
            let result = if call.op == CALL_IS_CONTEXT { 0 } else { -1 };
            let errno = if call.op == CALL_IS_CONTEXT {
                0
            } else {
                Errno::EBADF.0
            };
            return Answer {
                reply: Reply {
                    result,
                    errno,
                    ..Reply::default()
                },
                attached: None,
                side: None,
                context: None,
            };
        }
        // The memory a CALL_MMAP maps, sent with the reply.
        let mut region_fd = None;
        // Whether `region_fd` is a VFIO file the server serves.
        let mut served_fd = false;
        // Whether it stays open across the program's `exec`.
        let mut keep_on_exec = false;
        let mut extra = 0;
        let mut trap = (0u32, 0u32);
        let mut context = None;
        let outcome: Result<i64, Errno> = match call.op {
            CALL_IOCTL => {
                let hosted = recent.or_else(|| self.lookup_context(call.ino));
                match hosted {
                    Some(h) => {
                        context = Some(if h.container {
                            trace::describe::FileKind::VfioContainer
                        } else {
                            trace::describe::FileKind::Iommufd
                        });
                        // The buffers the call will use are copied before
                        // the context's lock, so that a caller whose pages
                        // stall stalls only itself.
                        let prefetched = staged.as_deref().and_then(|bytes| {
                            let plan = user_buffers(call.request, bytes);
                            (!plan.is_empty()).then(|| {
                                let mut mem = PrefetchedMemory::new(self.mem.clone());
                                for b in plan {
                                    mem.fetch(b.addr, b.len, b.written);
                                }
                                Arc::new(mem)
                            })
                        });
                        let mem: Arc<dyn AddressSpace> = match &prefetched {
                            Some(p) => p.clone(),
                            None => self.mem.clone(),
                        };
                        let caller = Caller {
                            mem: &mem,
                            files: &self.files,
                            creds: self.creds,
                        };
                        let (mut result, output) = {
                            let mut ctx = lock(&h.context);
                            let arg = match staged {
                                Some(bytes) => Arg::Staged {
                                    bytes,
                                    user: call.arg,
                                },
                                None => Arg::User(call.arg),
                            };
                            let result = ctx.ioctl(&caller, call.request, arg);
                            (result, ctx.take_side_output())
                        };
                        // What the call wrote goes back after the lock; a
                        // buffer that cannot take it is EFAULT, as Linux's
                        // copy_to_user during the call would have been.
                        if let Some(Err(e)) = prefetched.map(|p| p.write_back()) {
                            result = Err(e);
                        }
                        deliver_side_output(state, output);
                        result
                    }
                    // The table's lock must not be held across the call: a
                    // group's GET_DEVICE_FD adds a file to the table.
                    None => match state.vfio_file(call.ino) {
                        Some(h) => {
                            let caller = Caller {
                                mem: &self.mem,
                                files: &self.files,
                                creds: self.creds,
                            };
                            state
                                .vfio_ioctl(&h, &caller, &self.files, call.request, call.arg)
                                .map(|(result, file)| {
                                    served_fd = file.is_some();
                                    keep_on_exec =
                                        file.as_ref().is_some_and(|(_, cloexec)| !cloexec);
                                    region_fd = file.map(|(fd, _)| fd);
                                    result
                                })
                        }
                        None => Err(Errno::EBADF),
                    },
                }
            }
            CALL_PREAD | CALL_PWRITE => match state.vfio_file(call.ino) {
                Some(h) => {
                    let caller = Caller {
                        mem: &self.mem,
                        files: &self.files,
                        creds: self.creds,
                    };
                    let write = call.op == CALL_PWRITE;
                    state.vfio_rw(&h, &caller, call.arg, call.len, call.offset, write)
                }
                None => Err(Errno::EBADF),
            },
            CALL_CLOSED => {
                state.release_if_closed(call.ino);
                Ok(0)
            }
            CALL_REFRESH_VIEW => {
                // A path of at most a page, read from the caller.
                let len = call.len.min(4096) as usize;
                let mut path = vec![0u8; len];
                self.mem
                    .read(call.arg, &mut path)
                    .and_then(|()| String::from_utf8(path).map_err(|_| Errno::EINVAL))
                    .and_then(|path| match &state.session {
                        Some(dir) => {
                            sysfs::refresh(dir, state.engine.shared(), state.engine.vfio(), &path)
                                .map_err(|_| Errno::EIO)
                        }
                        None => Ok(()),
                    })
                    .map(|()| 0)
            }
            CALL_ATTRIBUTE_WRITE => {
                // A path and a page of data at most, read from the caller.
                let len = call.len.min(2 * 4096) as usize;
                let mut message = vec![0u8; len];
                self.mem.read(call.arg, &mut message).and_then(|()| {
                    let nul = message.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
                    let path = std::str::from_utf8(&message[..nul]).map_err(|_| Errno::EINVAL)?;
                    let dir = state.session.as_ref().ok_or(Errno::EACCES)?;
                    sysfs::write_attribute(
                        dir,
                        state.engine.shared(),
                        state.engine.vfio(),
                        path,
                        &message[nul + 1..],
                    )
                    .map(|n| n as i64)
                })
            }
            CALL_IS_CONTEXT => Ok(if lock(&state.contexts).contains_key(&call.ino) {
                1
            } else if lock(&state.vfio_files).contains_key(&call.ino) {
                2
            } else {
                0
            }),
            CALL_EVENTQ_READ => {
                let side = lock(&state.side_files).get(&call.ino).cloned();
                let plan = side.and_then(|side| {
                    let unread = side.unread()?;
                    let mut ctx = lock(&side.hosted.context);
                    ctx.veventq_read_plan(call.ino, unread, call.len)
                });
                match plan {
                    Some(Ok(bytes)) => Ok(bytes as i64),
                    Some(Err(e)) => Err(e),
                    None => Err(Errno::EBADF),
                }
            }
            CALL_FAIL_NTH => {
                use softiommu_engine::fail_nth;
                // What a write of the file stores; the kernel's buffer
                // holds a page at most.
                let set = (call.flags == 1).then(|| {
                    let mut text = vec![0u8; call.len.min(4096) as usize];
                    self.mem.read(call.arg, &mut text)?;
                    softiommu_engine::text::parse_unsigned(&text, u64::from(u32::MAX))
                });
                match set.transpose() {
                    Ok(n) => {
                        if let Some(n) = n {
                            fail_nth::set_task_fail_nth(n);
                        }
                        Ok(fail_nth::task_fail_nth() as i64)
                    }
                    Err(e) => Err(e),
                }
            }
            CALL_PROC_STATUS => {
                // 0: the caller itself, by its own handle (its pid may be
                // from another pid namespace). Another pid is one of the
                // server's namespace: right for programs in the session's.
                let counters = if call.arg == 0 {
                    state.engine.shared().accounting.mm(self.mem.id())
                } else {
                    lock(&state.spaces)
                        .get(&(call.arg as i32))
                        .filter(|s| !s.process().exited())
                        .cloned()
                        .map_or_else(Default::default, |s| {
                            state.engine.shared().accounting.mm(s.id())
                        })
                };
                extra = counters.locked_vm;
                Ok(counters.pinned_vm as i64)
            }
            CALL_MMAP if state.vfio_file(call.ino).is_some() => state
                .vfio_file(call.ino)
                .ok_or(Errno::EBADF)
                .and_then(|h| state.vfio_mmap(&h, call.arg, call.len, call.flags))
                .map(|(fd, at, t)| {
                    region_fd = Some(fd);
                    extra = at;
                    trap = t;
                    0
                }),
            CALL_MMAP => {
                let hosted = lock(&state.contexts).get(&call.ino).cloned();
                let memory = hosted.ok_or(Errno::EBADF).and_then(|h| {
                    let ctx = lock(&h.context);
                    let region = ctx.mmap_check(call.arg, call.len, call.prot, call.flags)?;
                    state.region_memory(call.ino, region)
                });
                memory.map(|fd| {
                    region_fd = Some(fd);
                    0
                })
            }
            _ => Err(Errno::EINVAL),
        };
        let pending = lock(&self.files.pending).take();
        let mut reply = match outcome {
            Ok(result) => Reply {
                result,
                extra,
                trap_start: trap.0,
                trap_len: trap.1,
                ..Reply::default()
            },
            Err(e) => Reply {
                result: -1,
                errno: e.0,
                ..Reply::default()
            },
        };
        // A failed call drops its side file: closing both ends is enough.
        match pending.filter(|_| reply.errno == 0) {
            Some(p) => {
                reply.fd_addr = p.fd_addr;
                Answer {
                    reply,
                    attached: Some(p.program_end),
                    side: Some((p.server_end, p.inode)),
                    context,
                }
            }
            None => {
                if region_fd.is_some() {
                    reply.fd_addr = u64::MAX;
                    if served_fd {
                        reply.reserved |= REPLY_FD_SERVED;
                    }
                    if keep_on_exec {
                        reply.reserved |= REPLY_FD_KEEP_ON_EXEC;
                    }
                }
                Answer {
                    reply,
                    attached: region_fd,
                    side: None,
                    context,
                }
            }
        }
    }

    /// After the reply is out: the side file the call made starts being
    /// watched.
    fn finish(&self, call: &Call, side: Option<(ServerEnd, u64)>) {
        if let Some((end, inode)) = side {
            if let Some(hosted) = lock(&self.state.contexts).get(&call.ino).cloned() {
                watch_side_file(self.state.clone(), hosted, end, inode);
            }
        }
    }
}

/// Serves calls sent as packets on the channel's socket.
fn serve_calls(state: Arc<State>, stream: UnixStream) {
    let Some(channel) = Channel::of(&state, &stream) else {
        return;
    };
    let pid = channel.files.process.pid().as_raw();
    let mut call = Call::default();
    while read_call(&stream, &mut call, pid) {
        let (answer, traced) = channel.handle(&call, None);
        let sent = send_reply(&stream, &answer.reply, answer.attached.as_ref());
        // A call that ran is traced, whether its reply arrived or not.
        channel.traced(traced, None);
        if !sent {
            break;
        }
        channel.finish(&call, answer.side);
    }
}

/// Serves calls that travel through a shared page (see
/// [`softiommu_proto::SharedCall`]); the socket carries descriptors and shows
/// the program's end.
fn serve_shared_calls(state: Arc<State>, stream: UnixStream, page: sys::SharedPage) {
    let Some(channel) = Channel::of(&state, &stream) else {
        return;
    };
    let shared = page.get();
    // Without a watch the thread still notices the program's exit, at its
    // next sleep slice.
    let watched = hangup::watch(&stream);
    let hangup = watched.as_ref().map(hangup::Watched::hangup);
    // The staged struct's buffer, kept from call to call, and the struct
    // as it came, so that only what the call changed goes back.
    let mut staged: Vec<u8> = Vec::with_capacity(PAYLOAD_MAX);
    let mut as_staged: Vec<u8> = Vec::with_capacity(PAYLOAD_MAX);
    // The first call may already be waiting.
    let mut last = 0;
    while let Some((seq, call)) = shared.wait_for_call(last, hangup, || !peer_gone(&stream)) {
        last = seq;
        // The argument struct the program staged, if any: read before the
        // call (and before any lock), left in the page after it.
        let staged_len = usize::try_from(call.len)
            .ok()
            .filter(|&n| call.op == CALL_IOCTL && (1..=PAYLOAD_MAX).contains(&n));
        staged.clear();
        staged.resize(staged_len.unwrap_or(0), 0);
        if let Some(n) = staged_len {
            shared.load_payload(&mut staged[..n]);
            as_staged.clear();
            as_staged.extend_from_slice(&staged[..n]);
        }
        let (mut answer, traced) = channel.handle(&call, staged_len.map(|n| &mut staged[..n]));
        if let Some(n) = staged_len {
            shared.store_payload_changes(&staged[..n], &as_staged);
        }
        // The descriptor goes first, so that it is there when the program
        // sees the reply.
        if let Some(fd) = &answer.attached {
            if !send_reply(&stream, &Reply::default(), Some(fd)) {
                channel.traced(traced, staged_len.map(|n| &staged[..n]));
                break;
            }
            answer.reply.reserved |= REPLY_FD_FOLLOWS;
        }
        shared.publish_reply(seq, &answer.reply);
        channel.finish(&call, answer.side);
        // The program now reads its reply and makes its next call: time
        // in which this thread would only wait.
        channel.traced(traced, staged_len.map(|n| &staged[..n]));
    }
}

/// Whether the program's end of a call channel is gone.
fn peer_gone(stream: &UnixStream) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) => false,
        Ok(_) => {
            let mut byte = [0u8; 1];
            let flags =
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
            match nix::sys::socket::recv(stream.as_raw_fd(), &mut byte, flags) {
                Ok(0) => true,
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
                Err(_) => true,
            }
        }
        Err(_) => true,
    }
}

/// Passes what the program writes to a side file to the engine, and
/// releases the side file's object at its end-of-file.
fn watch_side_file(state: Arc<State>, hosted: Arc<Hosted>, end: ServerEnd, inode: u64) {
    let side = Arc::new(SideFile {
        hosted,
        end,
        reader: Mutex::new(()),
        backlog: Mutex::new(Vec::new()),
    });
    lock(&state.side_files).insert(inode, side.clone());
    let watcher_state = state.clone();
    let watched = side.clone();
    let spawned = spawn_server_thread(move || {
        let (state, side) = (watcher_state, watched);
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        loop {
            let polled = match &side.end {
                ServerEnd::Socket(socket) => {
                    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
                    poll(&mut fds, PollTimeout::NONE)
                }
                ServerEnd::Pipe(fd) => {
                    // Errors (the reader gone) always wake a poll; room for
                    // the backlog only when there is one. A report made
                    // meanwhile is seen at the next timeout.
                    let wanted = if lock(&side.backlog).is_empty() {
                        PollFlags::empty()
                    } else {
                        PollFlags::POLLOUT
                    };
                    let mut fds = [PollFd::new(fd.as_fd(), wanted)];
                    poll(&mut fds, PollTimeout::from(100u8))
                }
            };
            match polled {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
            if side.drain(inode) {
                break;
            }
        }
        state.release_side_file(inode);
    });
    if spawned.is_err() {
        // Nothing could watch it: released now (the program's end reads
        // end-of-file), rather than kept forever.
        state.release_side_file(inode);
    }
}

/// Writes what the engine queued for side files during a call.
fn deliver_side_output(state: &State, output: Vec<(u64, Vec<u8>)>) {
    for (inode, bytes) in output {
        let side = lock(&state.side_files).get(&inode).cloned();
        if let Some(side) = side {
            side.deliver(&bytes);
        }
    }
}
