//! The C boundary: the replaced libc entry points, the real ones found with
//! `dlsym(RTLD_NEXT)`, and small descriptor helpers. Every `unsafe` block of the
//! project's shim is here.
//!
//! Re-entrancy: the shim's own work (connecting, closing its sockets) calls libc
//! functions this library replaces. A per-thread flag marks "inside the shim";
//! while it is set every hook goes straight to the real function.

use crate::fd_cache;
use crate::{
    attribute_write, attributes, context_closed, context_ioctl, context_kind, context_mmap,
    context_of, eventq_read_plan, fail_nth, is_dev_iommu, is_vfio_file, kvm, open_served, paths,
    served_file, socket_path, status_pid, status_with_pins, sysfs_redirect, vfio_path, vfio_rw,
    Kind,
};
#[path = "trap.rs"]
pub(crate) mod trap;
#[path = "user_copy.rs"]
pub(crate) mod user_copy;

use libc::{c_char, c_int, c_uint, c_ulong, c_void};
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, OnceLock};

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, c_uint) -> c_int;
type OpenatFn = unsafe extern "C" fn(c_int, *const c_char, c_int, c_uint) -> c_int;
type Open2Fn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type Openat2Fn = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;
type CloseFn = unsafe extern "C" fn(c_int) -> c_int;
type Dup2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Dup3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type FcloseFn = unsafe extern "C" fn(*mut libc::FILE) -> c_int;
type FreopenFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
type ClosedirFn = unsafe extern "C" fn(*mut libc::DIR) -> c_int;
type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, usize) -> isize;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, usize) -> isize;
type MunmapFn = unsafe extern "C" fn(*mut c_void, usize) -> c_int;
type SigactionFn =
    unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type PreadFn = unsafe extern "C" fn(c_int, *mut c_void, usize, libc::off_t) -> isize;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, usize, libc::off_t) -> isize;
type OpendirFn = unsafe extern "C" fn(*const c_char) -> *mut libc::DIR;
type ReadlinkFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> isize;
type AccessFn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type StatFn = unsafe extern "C" fn(*const c_char, *mut libc::stat) -> c_int;
type Stat64Fn = unsafe extern "C" fn(*const c_char, *mut libc::stat64) -> c_int;
type Fstatat64Fn = unsafe extern "C" fn(c_int, *const c_char, *mut libc::stat64, c_int) -> c_int;
type StatxFn = unsafe extern "C" fn(c_int, *const c_char, c_int, c_uint, *mut libc::statx) -> c_int;
type FstatatFn = unsafe extern "C" fn(c_int, *const c_char, *mut libc::stat, c_int) -> c_int;
type ReadlinkatFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_char, usize) -> isize;
type RealpathFn = unsafe extern "C" fn(*const c_char, *mut c_char) -> *mut c_char;
type PreadChkFn = unsafe extern "C" fn(c_int, *mut c_void, usize, libc::off_t, usize) -> isize;
type RealpathChkFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> *mut c_char;
type MmapFn =
    unsafe extern "C" fn(*mut c_void, usize, c_int, c_int, c_int, libc::off_t) -> *mut c_void;

/// The C library's own entry points.
struct Real {
    open: OpenFn,
    open64: OpenFn,
    openat: OpenatFn,
    openat64: OpenatFn,
    open_2: Open2Fn,
    open64_2: Open2Fn,
    openat_2: Openat2Fn,
    openat64_2: Openat2Fn,
    ioctl: IoctlFn,
    close: CloseFn,
    dup2: Dup2Fn,
    dup3: Dup3Fn,
    fclose: FcloseFn,
    pclose: FcloseFn,
    freopen: FreopenFn,
    freopen64: FreopenFn,
    closedir: ClosedirFn,
    mmap: MmapFn,
    mmap64: MmapFn,
    munmap: MunmapFn,
    sigaction: SigactionFn,
    signal: SignalFn,
    fopen: FopenFn,
    fopen64: FopenFn,
    read: ReadFn,
    write: WriteFn,
    pread: PreadFn,
    pread64: PreadFn,
    pwrite: PwriteFn,
    pwrite64: PwriteFn,
    opendir: OpendirFn,
    readlink: ReadlinkFn,
    access: AccessFn,
    stat: StatFn,
    lstat: StatFn,
    stat64: Stat64Fn,
    lstat64: Stat64Fn,
    fstatat64: Fstatat64Fn,
    fstatat: FstatatFn,
    statx: StatxFn,
    readlinkat: ReadlinkatFn,
    realpath: RealpathFn,
    pread_chk: PreadChkFn,
    pread64_chk: PreadChkFn,
    realpath_chk: RealpathChkFn,
}

static REAL: OnceLock<Real> = OnceLock::new();

/// Looks up the next definition of `name`, or aborts: a shim without the real
/// function could only corrupt the program.
fn next_symbol(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is a valid C string; RTLD_NEXT is a valid pseudo-handle in a
    // shared object loaded by the dynamic linker.
    let sym = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if sym.is_null() {
        std::process::abort();
    }
    sym
}

fn real() -> &'static Real {
    REAL.get_or_init(|| {
        // SAFETY: each symbol is the libc function of that name, whose C
        // signature matches the pointer type it is turned into (variadic
        // arguments travel in the same registers as a fixed third/fourth one on
        // the supported ABIs).
        unsafe {
            Real {
                open: std::mem::transmute::<*mut c_void, OpenFn>(next_symbol(c"open")),
                open64: std::mem::transmute::<*mut c_void, OpenFn>(next_symbol(c"open64")),
                openat: std::mem::transmute::<*mut c_void, OpenatFn>(next_symbol(c"openat")),
                openat64: std::mem::transmute::<*mut c_void, OpenatFn>(next_symbol(c"openat64")),
                open_2: std::mem::transmute::<*mut c_void, Open2Fn>(next_symbol(c"__open_2")),
                open64_2: std::mem::transmute::<*mut c_void, Open2Fn>(next_symbol(c"__open64_2")),
                openat_2: std::mem::transmute::<*mut c_void, Openat2Fn>(next_symbol(c"__openat_2")),
                openat64_2: std::mem::transmute::<*mut c_void, Openat2Fn>(next_symbol(
                    c"__openat64_2",
                )),
                ioctl: std::mem::transmute::<*mut c_void, IoctlFn>(next_symbol(c"ioctl")),
                close: std::mem::transmute::<*mut c_void, CloseFn>(next_symbol(c"close")),
                dup2: std::mem::transmute::<*mut c_void, Dup2Fn>(next_symbol(c"dup2")),
                dup3: std::mem::transmute::<*mut c_void, Dup3Fn>(next_symbol(c"dup3")),
                fclose: std::mem::transmute::<*mut c_void, FcloseFn>(next_symbol(c"fclose")),
                pclose: std::mem::transmute::<*mut c_void, FcloseFn>(next_symbol(c"pclose")),
                freopen: std::mem::transmute::<*mut c_void, FreopenFn>(next_symbol(c"freopen")),
                freopen64: std::mem::transmute::<*mut c_void, FreopenFn>(next_symbol(c"freopen64")),
                closedir: std::mem::transmute::<*mut c_void, ClosedirFn>(next_symbol(c"closedir")),
                mmap: std::mem::transmute::<*mut c_void, MmapFn>(next_symbol(c"mmap")),
                mmap64: std::mem::transmute::<*mut c_void, MmapFn>(next_symbol(c"mmap64")),
                munmap: std::mem::transmute::<*mut c_void, MunmapFn>(next_symbol(c"munmap")),
                sigaction: std::mem::transmute::<*mut c_void, SigactionFn>(next_symbol(
                    c"sigaction",
                )),
                signal: std::mem::transmute::<*mut c_void, SignalFn>(next_symbol(c"signal")),
                fopen: std::mem::transmute::<*mut c_void, FopenFn>(next_symbol(c"fopen")),
                fopen64: std::mem::transmute::<*mut c_void, FopenFn>(next_symbol(c"fopen64")),
                read: std::mem::transmute::<*mut c_void, ReadFn>(next_symbol(c"read")),
                write: std::mem::transmute::<*mut c_void, WriteFn>(next_symbol(c"write")),
                pread: std::mem::transmute::<*mut c_void, PreadFn>(next_symbol(c"pread")),
                pread64: std::mem::transmute::<*mut c_void, PreadFn>(next_symbol(c"pread64")),
                pwrite: std::mem::transmute::<*mut c_void, PwriteFn>(next_symbol(c"pwrite")),
                pwrite64: std::mem::transmute::<*mut c_void, PwriteFn>(next_symbol(c"pwrite64")),
                opendir: std::mem::transmute::<*mut c_void, OpendirFn>(next_symbol(c"opendir")),
                readlink: std::mem::transmute::<*mut c_void, ReadlinkFn>(next_symbol(c"readlink")),
                access: std::mem::transmute::<*mut c_void, AccessFn>(next_symbol(c"access")),
                stat: std::mem::transmute::<*mut c_void, StatFn>(next_symbol(c"stat")),
                lstat: std::mem::transmute::<*mut c_void, StatFn>(next_symbol(c"lstat")),
                stat64: std::mem::transmute::<*mut c_void, Stat64Fn>(next_symbol(c"stat64")),
                lstat64: std::mem::transmute::<*mut c_void, Stat64Fn>(next_symbol(c"lstat64")),
                fstatat64: std::mem::transmute::<*mut c_void, Fstatat64Fn>(next_symbol(
                    c"fstatat64",
                )),
                fstatat: std::mem::transmute::<*mut c_void, FstatatFn>(next_symbol(c"fstatat")),
                statx: std::mem::transmute::<*mut c_void, StatxFn>(next_symbol(c"statx")),
                readlinkat: std::mem::transmute::<*mut c_void, ReadlinkatFn>(next_symbol(
                    c"readlinkat",
                )),
                realpath: std::mem::transmute::<*mut c_void, RealpathFn>(next_symbol(c"realpath")),
                pread_chk: std::mem::transmute::<*mut c_void, PreadChkFn>(next_symbol(
                    c"__pread_chk",
                )),
                pread64_chk: std::mem::transmute::<*mut c_void, PreadChkFn>(next_symbol(
                    c"__pread64_chk",
                )),
                realpath_chk: std::mem::transmute::<*mut c_void, RealpathChkFn>(next_symbol(
                    c"__realpath_chk",
                )),
            }
        }
    })
}

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` marked as shim work; `None` if the shim is already at work on this
/// thread (the hook must then act as the real function).
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if INSIDE.with(|i| i.replace(true)) {
        return None;
    }
    let r = f();
    INSIDE.with(|i| i.set(false));
    Some(r)
}

fn set_errno(e: c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}

fn errno() -> c_int {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() }
}

// ---- the shared call page ------------------------------------------------------------------

/// A shared call page mapped in this process (see `SharedCall`, whose
/// protocol lives in `softiommu-proto`; only the mapping, which needs
/// `unsafe`, is here). Invariant: `page` points at `SHARED_PAGE_SIZE` bytes
/// mapped shared from a memfd sealed against shrinking, mapped until drop.
pub(crate) struct SharedPage {
    page: std::ptr::NonNull<softiommu_proto::SharedCall>,
}

// SAFETY: the page is process-wide shared memory that the mapping keeps
// alive until drop, and it is only reached through `get`, a shared
// reference to atomics; handing the mapping to another thread (a channel
// reused by a later thread) moves nothing but the pointer.
unsafe impl Send for SharedPage {}

/// This process's pid, without a system call on every use: it is kept in
/// a page the kernel zeroes in a forked child (`MADV_WIPEONFORK`, however
/// the child was made: `fork`, `_Fork`, a raw `clone` without `CLONE_VM`),
/// so a child finds 0 there and asks the kernel. (`getpid` per call cost
/// 0.3 µs of a 2.3 µs pair.) A `vfork` child shares the page and would see
/// its parent's pid; POSIX lets it do nothing but `exec` or `_exit`.
pub(crate) fn current_pid() -> i32 {
    use std::sync::atomic::Ordering;
    let Some(word) = pid_word() else {
        return std::process::id() as i32;
    };
    match word.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id() as i32;
            word.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// The wipe-on-fork word [`current_pid`] keeps the pid in; `None` when the
/// page cannot be made. Set up without blocking (a lock held across a
/// `fork` by another thread would block the child forever).
fn pid_word() -> Option<&'static std::sync::atomic::AtomicI32> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    /// 0: not made yet; 1: cannot be made; else the page's address.
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let mut page = PAGE.load(Ordering::Acquire);
    if page == 0 {
        let made = make_wipe_on_fork_page().unwrap_or(1);
        page = match PAGE.compare_exchange(0, made, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => made,
            Err(other) => {
                if made > 1 {
                    // SAFETY: the page this call mapped and nobody else saw.
                    let _ = unsafe { rustix::mm::munmap(made as *mut c_void, 4096) };
                }
                other
            }
        };
    }
    // SAFETY: a page mapped by `make_wipe_on_fork_page`, page aligned and
    // never unmapped once published; an AtomicI32 may live at any 4-aligned
    // address, and the page holds nothing else.
    (page > 1).then(|| unsafe { &*(page as *const std::sync::atomic::AtomicI32) })
}

/// A private page that forked children get zeroed; its address.
fn make_wipe_on_fork_page() -> Option<usize> {
    // SAFETY: a fresh private anonymous page the kernel places; nothing
    // else refers to it.
    let ptr = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            4096,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    }
    .ok()?;
    // SAFETY: advice on the page just mapped.
    if unsafe { rustix::mm::madvise(ptr, 4096, rustix::mm::Advice::LinuxWipeOnFork) }.is_err() {
        // SAFETY: the page just mapped, which nothing refers to.
        let _ = unsafe { rustix::mm::munmap(ptr, 4096) };
        return None;
    }
    Some(ptr as usize)
}

impl SharedPage {
    /// Makes a page and returns it with the memfd to send to the server.
    pub(crate) fn create() -> Option<(SharedPage, std::os::fd::OwnedFd)> {
        use rustix::mm::{MapFlags, ProtFlags};
        use softiommu_proto::SHARED_PAGE_SIZE;
        let memory = softiommu_proto::new_page_memory()?;
        // SAFETY: a fresh shared mapping the kernel places (null hint) of a
        // page-long file that can no longer shrink; nothing else refers to
        // that range.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                SHARED_PAGE_SIZE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &memory,
                0,
            )
        }
        .ok()?;
        let page = std::ptr::NonNull::new(ptr.cast())?;
        let page = SharedPage { page };
        // A forked child does not get the page: calls posted on it act for
        // the process that made the channel, and a child must not act for
        // its parent. (Its socket is inherited, but carries no calls.)
        // SAFETY: advice on the range just mapped, which changes nothing
        // in this process.
        unsafe { rustix::mm::madvise(ptr, SHARED_PAGE_SIZE, rustix::mm::Advice::LinuxDontFork) }
            .ok()?;
        Some((page, memory))
    }

    /// Lets go of the parent's page in a forked child, where it is not
    /// mapped (see `create`): unmapping its range could remove whatever
    /// the child has mapped there since.
    pub(crate) fn forget_in_child(self) {
        std::mem::forget(self);
    }

    pub(crate) fn get(&self) -> &softiommu_proto::SharedCall {
        // SAFETY: the mapping is live and page aligned (invariant); any bit
        // pattern is a valid `SharedCall` (atomics only), and the server
        // writes it only through atomics.
        unsafe { self.page.as_ref() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: mapped by `create`; references from `get` borrow `self`.
        let _ = unsafe {
            rustix::mm::munmap(self.page.as_ptr().cast(), softiommu_proto::SHARED_PAGE_SIZE)
        };
    }
}

/// Sends `bytes` with descriptor `fd` attached.
pub(crate) fn send_with_fd(sock: c_int, bytes: &[u8], fd: c_int) -> bool {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one; we fill the fields we use.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) } as usize;
    // SAFETY: msg_control points at `control`, large enough for one descriptor.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return false;
    }
    // SAFETY: `cmsg` points into `control`, laid out by CMSG_FIRSTHDR.
    unsafe {
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>(), fd);
    }
    // SAFETY: msg points at live buffers of the sizes it states.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    n == bytes.len() as isize
}

/// Whether the other end of the stream socket `sock` has gone.
pub(crate) fn peer_gone(sock: c_int) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer.
    let n = unsafe {
        libc::recv(
            sock,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0 || (n < 0 && !matches!(errno(), libc::EAGAIN | libc::EINTR))
}

// ---- descriptor helpers ------------------------------------------------------------------

/// Socket inodes already classified.
static KNOWN: Mutex<Option<HashMap<u64, Kind>>> = Mutex::new(None);

pub(crate) fn known(ino: u64) -> Option<Kind> {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&ino).copied())
}

pub(crate) fn remember(ino: u64, kind: Kind) {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(ino, kind);
}

fn forget(ino: u64) {
    if let Some(m) = KNOWN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        m.remove(&ino);
    }
}

/// The file type bits and inode of `fd`.
pub(crate) fn mode_and_inode(fd: c_int) -> Option<(libc::mode_t, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is writable memory of the right size; fstat fills it or fails.
    let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so the struct is initialised.
    let st = unsafe { st.assume_init() };
    Some((st.st_mode & libc::S_IFMT, st.st_ino))
}

/// Whether `fd` is a pipe.
pub(crate) fn is_fifo(fd: c_int) -> bool {
    mode_and_inode(fd).is_some_and(|(mode, _)| mode == libc::S_IFIFO)
}

/// Descriptor numbers of vEVENTQ files in this process (as received; a
/// `dup` of one reads as a plain pipe).
static EVENTQ_FDS: Mutex<Option<std::collections::HashSet<c_int>>> = Mutex::new(None);
/// Whether `EVENTQ_FDS` may hold anything: reads skip the lock otherwise.
static ANY_EVENTQ_FD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) fn track_eventq_fd(fd: c_int) {
    EVENTQ_FDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(fd);
    ANY_EVENTQ_FD.store(true, std::sync::atomic::Ordering::Release);
}

fn is_eventq_fd(fd: c_int) -> bool {
    ANY_EVENTQ_FD.load(std::sync::atomic::Ordering::Acquire)
        && EVENTQ_FDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|s| s.contains(&fd))
}

fn untrack_eventq_fd(fd: c_int) {
    if ANY_EVENTQ_FD.load(std::sync::atomic::Ordering::Acquire) {
        if let Some(s) = EVENTQ_FDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            s.remove(&fd);
        }
    }
}

/// The inode of `fd` if it is a socket (what contexts are).
pub(crate) fn socket_inode(fd: c_int) -> Option<u64> {
    mode_and_inode(fd).and_then(|(mode, ino)| (mode == libc::S_IFSOCK).then_some(ino))
}

/// The inode of `fd` if it is a socket or a pipe (what side files are).
/// Both come from the kernel's one counter for such inodes, so they never
/// share a number.
pub(crate) fn side_inode(fd: c_int) -> Option<u64> {
    mode_and_inode(fd)
        .and_then(|(mode, ino)| (mode == libc::S_IFSOCK || mode == libc::S_IFIFO).then_some(ino))
}

pub(crate) fn set_cloexec(fd: c_int) {
    // SAFETY: F_SETFD on a descriptor we own takes an int flag set.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

pub(crate) fn clear_cloexec(fd: c_int) {
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

/// Hands a stream's descriptor to the program.
pub(crate) fn into_raw(stream: UnixStream) -> c_int {
    let fd = stream.into_raw_fd();
    fd_cache::renew(fd);
    fd
}

/// Receives exactly `buf.len()` bytes, and the descriptor that may come with
/// them (close-on-exec, as the kernel makes iommufd's files). `None` on a
/// broken channel.
pub(crate) fn recv_with_fd(sock: c_int, buf: &mut [u8]) -> Option<Option<c_int>> {
    let mut got = 0usize;
    let mut fd = None;
    while got < buf.len() {
        // Room for one descriptor's control message.
        let mut control = [0u64; 4];
        let mut iov = libc::iovec {
            iov_base: buf[got..].as_mut_ptr().cast(),
            iov_len: buf.len() - got,
        };
        // SAFETY: an all-zero msghdr is a valid empty one; we fill the fields we use.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n <= 0 {
            return None;
        }
        // SAFETY: msg was filled by recvmsg; the CMSG macros walk its control buffer.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points into `control`, as recvmsg laid it out.
            let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
            if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
                // SAFETY: an SCM_RIGHTS message carries at least one int.
                fd = Some(unsafe {
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>())
                });
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        got += n as usize;
    }
    Some(fd)
}

/// Writes a received descriptor's number into the program's ioctl argument.
pub(crate) fn store_fd(addr: u64, fd: c_int) {
    fd_cache::renew(fd);
    // SAFETY: the server wrote the same argument struct, at this address in
    // this process, moments ago during this very ioctl: it is mapped and
    // writable, and the program is blocked in the ioctl.
    unsafe { std::ptr::write_unaligned(addr as *mut u32, fd as u32) };
}

/// Copies the program's bytes at `src` (an ioctl argument it passed) into
/// `dst`: false when they cannot be read (then nothing is known of them,
/// and the caller lets the server read them and answer as Linux would).
pub(crate) fn read_program(dst: &mut [u8], src: u64) -> bool {
    // SAFETY: `dst` is our own buffer; `src` is memory the program handed
    // to ioctl(2) for reading, and a fault reading it is caught.
    unsafe { user_copy::copy(dst.as_mut_ptr(), src as *const u8, dst.len()) }
}

/// Writes `src` to the program's memory at `dst` (the argument struct it
/// passed to this ioctl): false when it cannot be written (`EFAULT`).
pub(crate) fn write_program(dst: u64, src: &[u8]) -> bool {
    // SAFETY: `dst` is inside the argument struct the program passed to
    // the ioctl it is blocked in, which the kernel would write the same
    // way; a fault writing it is caught.
    unsafe { user_copy::copy(dst as *mut u8, src.as_ptr(), src.len()) }
}

/// Closes a descriptor through the real `close`.
pub(crate) fn close_fd(fd: c_int) {
    // SAFETY: the shim owns `fd` (it just received it) and closes it once.
    replacing(one_number(fd), || unsafe { (real().close)(fd) });
}

/// Drops this process's copy of a descriptor through the real `close`.
pub(crate) fn forget_stream(stream: UnixStream) {
    let fd = stream.into_raw_fd();
    // SAFETY: we own `fd` (just taken from the stream) and close it once.
    replacing(one_number(fd), || unsafe { (real().close)(fd) });
}

// ---- the replaced entry points -----------------------------------------------------------

/// The session's copy of `path` when it is a sysfs path the session shadows.
///
/// # Safety
/// `path` must be null or a valid C string.
unsafe fn sysfs_path(path: *const c_char) -> Option<std::ffi::CString> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passes a C string.
    let path = unsafe { CStr::from_ptr(path) };
    guarded(|| sysfs_redirect(path)).flatten()
}

/// `Some(result)` when `path` is `/dev/iommu` and a server is there.
///
/// # Safety
/// `path` must be null or a valid C string.
unsafe fn intercept_open(path: *const c_char, flags: c_int) -> Option<c_int> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passes open(2)'s path argument, a C string.
    let path = unsafe { CStr::from_ptr(path) };
    if guarded(|| fail_nth::is_own(path.to_bytes())).unwrap_or(false) {
        let memfd_flags = if flags & libc::O_CLOEXEC != 0 {
            rustix::fs::MemfdFlags::CLOEXEC
        } else {
            rustix::fs::MemfdFlags::empty()
        };
        return guarded(|| match rustix::fs::memfd_create("fail-nth", memfd_flags) {
            Ok(fd) => {
                let fd = fd.into_raw_fd();
                fail_nth::track(fd);
                fd
            }
            Err(e) => {
                set_errno(e.raw_os_error());
                -1
            }
        });
    }
    if let Some(text) = path
        .to_str()
        .ok()
        .filter(|t| t.starts_with("/sys/") && flags & libc::O_ACCMODE != libc::O_RDONLY)
    {
        let shadow = guarded(|| sysfs_redirect(path)).flatten()?;
        if paths::is_fault_injection_knob(text) {
            // Plain files the program may set (they arm nothing).
            let keep = flags & !(libc::O_CREAT | libc::O_TRUNC);
            // SAFETY: a C string the shim made; the caller's flags.
            return Some(unsafe { (real().open)(shadow.as_ptr(), keep, 0) });
        }
        // sysfs refuses to open an attribute without a store for writing,
        // root included.
        if !attributes::is_attribute_write(text, flags) {
            set_errno(libc::EACCES);
            return Some(-1);
        }
        // The session's file stays as the server wrote it: writes go to the
        // server, so nothing may truncate or create it here.
        let keep = flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_APPEND);
        // SAFETY: a C string the shim made; the caller's flags, less the ones
        // that would change the session's file.
        let fd = unsafe { (real().open)(shadow.as_ptr(), keep, 0) };
        if fd >= 0 {
            let _ = guarded(|| attributes::track(fd, text));
        }
        return Some(fd);
    }
    if flags & libc::O_ACCMODE == libc::O_RDONLY && status_pid(path.to_bytes()).is_some() {
        return guarded(|| status_with_pins(path, flags & libc::O_CLOEXEC != 0)).flatten();
    }
    if let Some((kind, index)) = vfio_path(path).filter(|_| !is_dev_iommu(path)) {
        let socket = socket_path()?;
        return guarded(|| {
            let fd = open_served(socket, kind, index, flags);
            if fd < 0 {
                set_errno(-fd);
                -1
            } else {
                fd
            }
        });
    }
    if !is_dev_iommu(path) {
        return None;
    }
    let socket = socket_path()?;
    guarded(|| {
        let fd = open_served(socket, context_kind(path), 0, flags);
        if fd < 0 {
            set_errno(-fd);
            -1
        } else {
            fd
        }
    })
}

/// # Safety
/// As `open(2)`.
#[no_mangle]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: path comes from our caller under open(2)'s contract.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().open)(path, flags, mode) }
}

/// # Safety
/// As `open64(2)`.
#[no_mangle]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: as in `open`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().open64)(path, flags, mode) }
}

/// # Safety
/// As `openat(2)`.
#[no_mangle]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    // SAFETY: as in `open`; an absolute path ignores dirfd.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().openat)(dirfd, path, flags, mode) }
}

/// # Safety
/// As `openat64(2)`.
#[no_mangle]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: c_uint,
) -> c_int {
    // SAFETY: as in `openat`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().openat64)(dirfd, path, flags, mode) }
}

/// # Safety
/// As glibc's `__open_2` (the fortified `open`).
#[no_mangle]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().open_2)(path, flags) }
}

/// # Safety
/// As glibc's `__open64_2`.
#[no_mangle]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().open64_2)(path, flags) }
}

/// # Safety
/// As glibc's `__openat_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().openat_2)(dirfd, path, flags) }
}

/// # Safety
/// As glibc's `__openat64_2`.
#[no_mangle]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: as in `open`.
    if let Some(r) = unsafe { intercept_open(path, flags) } {
        return r;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().openat64_2)(dirfd, path, flags) }
}

/// # Safety
/// As `ioctl(2)`.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    let served = guarded(|| {
        let file = served_file(fd)?;
        let r = context_ioctl(fd, file, request, arg as u64);
        Some(if r < 0 {
            set_errno((-r) as c_int);
            -1
        } else {
            r as c_int
        })
    })
    .flatten();
    if let Some(r) = served {
        return r;
    }
    if request == kvm::KVM_SET_DEVICE_ATTR {
        if let Some(r) = guarded(|| kvm_vfio_file(fd, arg as u64)).flatten() {
            return r;
        }
    }
    // SAFETY: not a context: forwarding the caller's arguments unchanged.
    unsafe { (real().ioctl)(fd, request, arg) }
}

/// Reads `buf.len()` bytes of this process's memory at `addr`, without
/// faulting on a bad pointer (as the kernel's `copy_from_user`).
fn read_own(addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` is our own buffer of that length; the kernel checks
    // `remote` and fails the call instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

/// `Some(result)` when `KVM_SET_DEVICE_ATTR` on `fd` adds or deletes a
/// served VFIO file on KVM's VFIO pseudo device (see [`kvm`]).
fn kvm_vfio_file(fd: c_int, arg: u64) -> Option<c_int> {
    let mut raw = [0u8; std::mem::size_of::<kvm::KvmDeviceAttr>()];
    if !read_own(arg, &mut raw) {
        return None;
    }
    let attr = <kvm::KvmDeviceAttr as zerocopy::FromBytes>::read_from_bytes(&raw).ok()?;
    let verb = kvm::FileVerb::of(&attr)?;
    let mut file = [0u8; 4];
    if !read_own(attr.addr, &mut file) {
        return None;
    }
    let file = c_int::from_ne_bytes(file);
    if !is_vfio_file(file) || !kvm::is_kvm_vfio(fd) {
        return None;
    }
    let ino = side_inode(file)?;
    Some(match kvm::apply(fd, ino, verb) {
        Ok(()) => 0,
        Err(e) => {
            set_errno(e);
            -1
        }
    })
}

/// # Safety
/// As `close(2)`.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    // Only descriptors this process already knows as contexts are tracked; the
    // server notices any other last close by itself.
    let ino = guarded(|| {
        side_inode(fd)
            .filter(|&i| matches!(known(i), Some(Kind::Context | Kind::Vfio | Kind::Side)))
    })
    .flatten();
    let _ = guarded(|| untrack_eventq_fd(fd));
    let _ = guarded(|| attributes::untrack(fd));
    let _ = guarded(|| fail_nth::untrack(fd));
    let _ = guarded(|| kvm::forget(fd));
    let number = one_number(fd);
    fd_cache::closing(number.clone());
    // SAFETY: forwarding the caller's argument unchanged.
    let rc = unsafe { (real().close)(fd) };
    fd_cache::closed(number);
    if let Some(ino) = ino {
        let saved = errno();
        if rc == 0 {
            forget(ino);
            let _ = guarded(|| context_closed(ino));
        }
        set_errno(saved);
    }
    rc
}

/// No descriptor numbers at all.
const NO_NUMBERS: std::ops::RangeInclusive<u32> = std::ops::RangeInclusive::new(1, 0);

/// The slots of the descriptor cache that `fd` names (none for a negative
/// number).
fn one_number(fd: c_int) -> std::ops::RangeInclusive<u32> {
    match u32::try_from(fd) {
        Ok(n) => n..=n,
        Err(_) => NO_NUMBERS,
    }
}

/// Runs `call`, which may close or replace the descriptors numbered
/// `numbers`, with the descriptor cache told before and after (see
/// [`fd_cache`]); keeps the call's errno.
fn replacing<R>(numbers: std::ops::RangeInclusive<u32>, call: impl FnOnce() -> R) -> R {
    fd_cache::closing(numbers.clone());
    let r = call();
    let saved = errno();
    fd_cache::closed(numbers);
    set_errno(saved);
    r
}

/// # Safety
/// As `dup2(2)`.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    replacing(one_number(new), || unsafe { (real().dup2)(old, new) })
}

/// # Safety
/// As `dup3(2)`.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    replacing(one_number(new), || unsafe {
        (real().dup3)(old, new, flags)
    })
}

// libc closes a stream's or a directory's descriptor with its own internal
// call, which the `close` hook never sees: these tell the descriptor cache.

/// The descriptor number under `stream`, asked without disturbing errno
/// (`fileno` sets it for a stream with none).
///
/// # Safety
/// `stream` must be an open stream.
unsafe fn number_of(stream: *mut libc::FILE) -> std::ops::RangeInclusive<u32> {
    let saved = errno();
    // SAFETY: `stream` is open, as the caller guarantees.
    let fd = unsafe { libc::fileno(stream) };
    set_errno(saved);
    one_number(fd)
}

/// # Safety
/// As `fclose(3)`.
#[no_mangle]
pub unsafe extern "C" fn fclose(stream: *mut libc::FILE) -> c_int {
    // SAFETY: `stream` is the caller's open stream, as fclose requires.
    let number = unsafe { number_of(stream) };
    // SAFETY: forwarding the caller's argument unchanged.
    replacing(number, || unsafe { (real().fclose)(stream) })
}

/// # Safety
/// As `pclose(3)`.
#[no_mangle]
pub unsafe extern "C" fn pclose(stream: *mut libc::FILE) -> c_int {
    // SAFETY: `stream` is the caller's stream from popen, as pclose requires.
    let number = unsafe { number_of(stream) };
    // SAFETY: forwarding the caller's argument unchanged.
    replacing(number, || unsafe { (real().pclose)(stream) })
}

/// `real` (libc's `freopen` or `freopen64`) with the descriptor cache told
/// that `stream`'s number changes its file.
///
/// # Safety
/// As `freopen(3)`; `real` is libc's function.
unsafe fn reopen(
    real: FreopenFn,
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: `stream` is the caller's open stream, as freopen requires.
    let number = unsafe { number_of(stream) };
    // SAFETY: forwarding the caller's arguments unchanged.
    replacing(number, || unsafe { real(path, mode, stream) })
}

/// # Safety
/// As `freopen(3)`.
#[no_mangle]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: the caller's arguments under freopen's contract.
    unsafe { reopen(real().freopen, path, mode, stream) }
}

/// # Safety
/// As `freopen64(3)` (what `freopen` is under `_FILE_OFFSET_BITS=64`).
#[no_mangle]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: the caller's arguments under freopen's contract.
    unsafe { reopen(real().freopen64, path, mode, stream) }
}

/// # Safety
/// As `closedir(3)`.
#[no_mangle]
pub unsafe extern "C" fn closedir(dir: *mut libc::DIR) -> c_int {
    let saved = errno();
    // SAFETY: `dir` is the caller's open directory stream, as closedir
    // requires.
    let fd = unsafe { libc::dirfd(dir) };
    set_errno(saved);
    // SAFETY: forwarding the caller's argument unchanged.
    replacing(one_number(fd), || unsafe { (real().closedir)(dir) })
}

type CloseRangeFn = unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
type ClosefromFn = unsafe extern "C" fn(c_int);

/// libc's `close_range` and `closefrom` (glibc 2.34 and later), when it has
/// them.
static CLOSE_RANGE: OnceLock<(Option<CloseRangeFn>, Option<ClosefromFn>)> = OnceLock::new();

fn close_range_fns() -> (Option<CloseRangeFn>, Option<ClosefromFn>) {
    *CLOSE_RANGE.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and valid C strings; a symbol found is
        // libc's function of that name, whose C signature the type matches.
        unsafe {
            let range = libc::dlsym(libc::RTLD_NEXT, c"close_range".as_ptr());
            let from = libc::dlsym(libc::RTLD_NEXT, c"closefrom".as_ptr());
            (
                (!range.is_null()).then(|| std::mem::transmute::<*mut c_void, CloseRangeFn>(range)),
                (!from.is_null()).then(|| std::mem::transmute::<*mut c_void, ClosefromFn>(from)),
            )
        }
    })
}

/// # Safety
/// As `close_range(2)`.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // Marking descriptors close-on-exec closes nothing now.
    let numbers = if flags as c_uint & libc::CLOSE_RANGE_CLOEXEC != 0 {
        NO_NUMBERS
    } else {
        first..=last
    };
    replacing(numbers, || match close_range_fns().0 {
        // SAFETY: forwarding the caller's arguments unchanged.
        Some(real) => unsafe { real(first, last, flags) },
        // SAFETY: the system call takes these three integers.
        None => unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) as c_int },
    })
}

/// # Safety
/// As `closefrom(3)`.
#[no_mangle]
pub unsafe extern "C" fn closefrom(lowest: c_int) {
    let first = u32::try_from(lowest).unwrap_or(0);
    replacing(first..=u32::MAX, || match close_range_fns().1 {
        // SAFETY: forwarding the caller's argument unchanged.
        Some(real) => unsafe { real(lowest) },
        // SAFETY: the system call takes these three integers.
        None => unsafe {
            libc::syscall(libc::SYS_close_range, first, u32::MAX, 0);
        },
    })
}

/// `Some(result)` when `fd` is a context: maps the region at `offset`
/// through the memory the server hands over.
///
/// # Safety
/// As `mmap(2)`.
unsafe fn intercept_mmap(
    map: MmapFn,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> Option<*mut c_void> {
    if fd < 0 || flags & libc::MAP_ANONYMOUS != 0 {
        return None;
    }
    guarded(|| {
        let ino = context_of(fd)?;
        Some(
            match context_mmap(ino, offset as u64, len as u64, prot, flags) {
                Ok((memory, at, (trap_start, trap_len))) => {
                    // SAFETY: the caller's arguments under mmap(2)'s contract,
                    // with the region's memory in place of the context.
                    let mapped = unsafe { map(addr, len, prot, flags, memory, at as libc::off_t) };
                    let saved = errno();
                    close_fd(memory);
                    if mapped != libc::MAP_FAILED && trap_len > 0 && prot & libc::PROT_WRITE != 0 {
                        // A device model's registers: stores must reach it.
                        trap::trap(
                            mapped as usize + trap_start as usize,
                            trap_len as usize,
                            ino,
                            offset as u64 + u64::from(trap_start),
                        );
                    }
                    set_errno(saved);
                    mapped
                }
                Err(e) => {
                    set_errno(e);
                    libc::MAP_FAILED
                }
            },
        )
    })
    .flatten()
}

/// # Safety
/// As `mmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    let map = real().mmap;
    // SAFETY: the caller's arguments, under mmap(2)'s contract.
    if let Some(r) = unsafe { intercept_mmap(map, addr, len, prot, flags, fd, offset) } {
        return r;
    }
    // SAFETY: not a context: forwarding the caller's arguments unchanged.
    unsafe { map(addr, len, prot, flags, fd, offset) }
}

/// # Safety
/// As `mmap64(2)`.
#[no_mangle]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    let map = real().mmap64;
    // SAFETY: the caller's arguments, under mmap(2)'s contract.
    if let Some(r) = unsafe { intercept_mmap(map, addr, len, prot, flags, fd, offset) } {
        return r;
    }
    // SAFETY: not a context: forwarding the caller's arguments unchanged.
    unsafe { map(addr, len, prot, flags, fd, offset) }
}

/// `Some(stream)` when `path` is a process's status file opened for reading:
/// C library's `fopen` opens files without going through `open`, so status
/// files read with stdio are caught here.
///
/// # Safety
/// As `fopen(3)`.
unsafe fn intercept_fopen(path: *const c_char, mode: *const c_char) -> Option<*mut libc::FILE> {
    if path.is_null() || mode.is_null() {
        return None;
    }
    // SAFETY: fopen(3)'s arguments are C strings.
    let (path, mode_str) = unsafe { (CStr::from_ptr(path), CStr::from_ptr(mode)) };
    let m = mode_str.to_bytes();
    if m.first() != Some(&b'r') || m.contains(&b'+') || status_pid(path.to_bytes()).is_none() {
        return None;
    }
    let fd = guarded(|| status_with_pins(path, m.contains(&b'e'))).flatten()?;
    // SAFETY: `fd` is a descriptor we just made; `mode` is the caller's C string.
    let stream = unsafe { libc::fdopen(fd, mode) };
    if stream.is_null() {
        close_fd(fd);
        return None;
    }
    Some(stream)
}

/// # Safety
/// As `fopen(3)`.
#[no_mangle]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: the caller's arguments, under fopen(3)'s contract.
    if let Some(stream) = unsafe { intercept_fopen(path, mode) } {
        return stream;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().fopen)(path, mode) }
}

/// # Safety
/// As `fopen64(3)`.
#[no_mangle]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: the caller's arguments, under fopen(3)'s contract.
    if let Some(stream) = unsafe { intercept_fopen(path, mode) } {
        return stream;
    }
    // SAFETY: the caller's path is a C string (or null) under the call's contract.
    let shadow = unsafe { sysfs_path(path) };
    let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
    // SAFETY: forwarding the caller's arguments, a sysfs path sent to the session's copy.
    unsafe { (real().fopen64)(path, mode) }
}

/// # Safety
/// As `read(2)`.
#[no_mangle]
pub unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: usize) -> isize {
    if guarded(|| fail_nth::is_tracked(fd)).unwrap_or(false) {
        // The memfd's offset is the file position.
        let position = rustix::fs::seek(
            // SAFETY: `fd` is open (tracked until its close) for this call.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            rustix::fs::SeekFrom::Current(0),
        )
        .unwrap_or(0);
        // SAFETY: read(2)'s contract: `buf` holds `count` writable bytes.
        let r = unsafe { fail_nth_rw(buf as u64, count, position as libc::off_t, false) };
        if r > 0 {
            // SAFETY: as above.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = rustix::fs::seek(fd, rustix::fs::SeekFrom::Current(r as i64));
        }
        return r;
    }
    // A vEVENTQ's file hands out whole records only, as Linux's does: ask
    // the server how many bytes that is, then read exactly those. A number
    // that no longer names a vEVENTQ (closed behind the shim's back and
    // reused) is forgotten and read as it is.
    let plan = guarded(|| {
        if !is_eventq_fd(fd) {
            return None;
        }
        let ino = side_inode(fd).filter(|_| is_fifo(fd));
        match ino.map(|ino| eventq_read_plan(ino, count as u64)) {
            None | Some(Err(libc::EBADF)) => {
                untrack_eventq_fd(fd);
                None
            }
            other => other,
        }
    })
    .flatten();
    let count = match plan {
        None => count,
        Some(Ok(0)) => return 0,
        Some(Ok(n)) => n as usize,
        Some(Err(e)) => {
            set_errno(e);
            return -1;
        }
    };
    // SAFETY: the caller's descriptor and buffer, with a count no larger
    // than the caller's.
    unsafe { (real().read)(fd, buf, count) }
}

/// # Safety
/// As `sigaction(2)`. While stores to device registers are trapped, the
/// shim keeps `SIGSEGV` and `SIGILL`; the program's handlers for them are
/// remembered and called for every fault that is not a register store.
#[no_mangle]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    // SAFETY: `act` is null or a valid sigaction under the call's contract.
    let new = unsafe { act.as_ref() }.map(|a| (a.sa_sigaction, a.sa_flags));
    if let Some((handler, flags)) = trap::program_sets_handler(sig, new) {
        // SAFETY: `oldact` is null or writable under the call's contract.
        if let Some(old) = unsafe { oldact.as_mut() } {
            // SAFETY: a zeroed sigaction is valid.
            *old = unsafe { std::mem::zeroed() };
            old.sa_sigaction = handler;
            old.sa_flags = flags;
        }
        return 0;
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { (real().sigaction)(sig, act, oldact) }
}

/// # Safety
/// As `signal(2)`; see [`sigaction`].
#[no_mangle]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if let Some((old, _)) = trap::program_sets_handler(sig, Some((handler, 0))) {
        return old;
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { (real().signal)(sig, handler) }
}

/// # Safety
/// As `munmap(2)`.
#[no_mangle]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: usize) -> c_int {
    // SAFETY: forwarding the caller's arguments unchanged.
    let rc = unsafe { (real().munmap)(addr, len) };
    if rc == 0 {
        trap::forget(addr as usize, len);
    }
    rc
}

/// # Safety
/// As `write(2)`.
#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: usize) -> isize {
    if guarded(|| fail_nth::is_tracked(fd)).unwrap_or(false) {
        // SAFETY: write(2)'s contract: `buf` holds `count` readable bytes.
        return unsafe { fail_nth_rw(buf as u64, count, 0, true) };
    }
    if let Some(path) = guarded(|| attributes::path_of(fd)).flatten() {
        if buf.is_null() && count > 0 {
            set_errno(libc::EFAULT);
            return -1;
        }
        // A sysfs store sees at most a page.
        let count = count.min(4096);
        let data: &[u8] = if count == 0 {
            &[]
        } else {
            // SAFETY: write(2)'s contract: `buf` holds `count` readable bytes.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), count) }
        };
        let r = guarded(|| attribute_write(&path, data)).unwrap_or(-i64::from(libc::EIO));
        if r < 0 {
            set_errno((-r) as c_int);
            return -1;
        }
        return r as isize;
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { (real().write)(fd, buf, count) }
}

/// A read or write of a fail-nth file (see the `fail_nth` module): the
/// count, or -1 with errno set.
///
/// # Safety
/// `buf` must hold `count` bytes, writable for a read.
unsafe fn fail_nth_rw(buf: u64, count: usize, offset: libc::off_t, write: bool) -> isize {
    if buf == 0 && count > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    let r = guarded(|| {
        if count == 0 {
            return Ok(0);
        }
        if write {
            // SAFETY: the caller's `count` readable bytes at `buf`.
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, count) };
            fail_nth::write(data)
        } else {
            // SAFETY: the caller's `count` writable bytes at `buf`.
            let data = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, count) };
            fail_nth::read(data, u64::try_from(offset).unwrap_or(0))
        }
    })
    .unwrap_or(Err(libc::EIO));
    match r {
        Ok(n) => n as isize,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// `Some(result)` when `fd` is a VFIO device file: its region bytes go
/// through the server.
fn intercept_rw(
    fd: c_int,
    buf: u64,
    count: usize,
    offset: libc::off_t,
    write: bool,
) -> Option<isize> {
    if guarded(|| fail_nth::is_tracked(fd)).unwrap_or(false) {
        if offset < 0 {
            set_errno(libc::EINVAL);
            return Some(-1);
        }
        // SAFETY: pread/pwrite's contract: `buf` holds `count` bytes.
        return Some(unsafe { fail_nth_rw(buf, count, offset, write) });
    }
    guarded(|| {
        let ino = context_of(fd)?;
        let r = vfio_rw(ino, buf, count as u64, offset as u64, write);
        Some(if r < 0 {
            set_errno((-r) as c_int);
            -1
        } else {
            r as isize
        })
    })
    .flatten()
}

/// # Safety
/// As `realpath(3)`. A shadowed sysfs path resolves in the session's copy
/// and comes back under `/sys`, so the program never sees the session.
#[no_mangle]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    // SAFETY: realpath's path is a C string (or null).
    let Some(shadow) = (unsafe { sysfs_path(path) }) else {
        // SAFETY: not a shadowed path: forwarding the caller's arguments unchanged.
        return unsafe { (real().realpath)(path, resolved) };
    };
    // SAFETY: a C string we made; a null buffer makes realpath allocate.
    let full = unsafe { (real().realpath)(shadow.as_ptr(), std::ptr::null_mut()) };
    if full.is_null() {
        return full;
    }
    // SAFETY: realpath returned a C string it allocated with malloc.
    let text = unsafe { CStr::from_ptr(full) }.to_bytes().to_vec();
    // SAFETY: freeing what realpath allocated, once.
    unsafe { libc::free(full.cast()) };
    let session_sys = shadow
        .to_bytes()
        .windows(5)
        .position(|w| w == b"/sys/")
        .unwrap_or(0);
    let prefix = &shadow.to_bytes()[..session_sys];
    let visible = text.strip_prefix(prefix).unwrap_or(&text).to_vec();
    let Ok(visible) = std::ffi::CString::new(visible) else {
        set_errno(libc::ENAMETOOLONG);
        return std::ptr::null_mut();
    };
    let bytes = visible.as_bytes_with_nul();
    if resolved.is_null() {
        // SAFETY: the C library's strdup, whose result the caller frees.
        return unsafe { libc::strdup(visible.as_ptr()) };
    }
    if bytes.len() > libc::PATH_MAX as usize {
        set_errno(libc::ENAMETOOLONG);
        return std::ptr::null_mut();
    }
    // SAFETY: realpath's contract: `resolved` has room for PATH_MAX bytes.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr().cast(), resolved, bytes.len()) };
    resolved
}

/// # Safety
/// As glibc's `__realpath_chk`, what `realpath` becomes under
/// `_FORTIFY_SOURCE`: a shadowed path goes through [`realpath`] when the
/// buffer can hold any path.
#[no_mangle]
pub unsafe extern "C" fn __realpath_chk(
    path: *const c_char,
    resolved: *mut c_char,
    resolvedlen: usize,
) -> *mut c_char {
    // SAFETY: realpath's path is a C string (or null).
    let shadowed = unsafe { sysfs_path(path) }.is_some();
    if shadowed && (resolved.is_null() || resolvedlen >= libc::PATH_MAX as usize) {
        // SAFETY: the caller's arguments, under realpath(3)'s contract.
        return unsafe { realpath(path, resolved) };
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { (real().realpath_chk)(path, resolved, resolvedlen) }
}

/// Path lookups the session may shadow: each sends a sysfs or debugfs path
/// of the machine's functions to the session's copy (see `crate::paths`)
/// and forwards everything else unchanged.
macro_rules! shadowed_path_hook {
    ($name:ident($($before:ident: $bt:ty,)* @path $(, $after:ident: $at:ty)*) -> $ret:ty) => {
        /// # Safety
        /// As the C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            $($before: $bt,)*
            path: *const c_char
            $(, $after: $at)*
        ) -> $ret {
            // SAFETY: the path argument is a C string (or null) under the
            // function's contract.
            let shadow = unsafe { sysfs_path(path) };
            let path = shadow.as_ref().map_or(path, |p| p.as_ptr());
            // SAFETY: forwarding the caller's arguments, a shadowed path sent
            // to the session's copy.
            unsafe { (real().$name)($($before,)* path $(, $after)*) }
        }
    };
}

shadowed_path_hook!(opendir(@path) -> *mut libc::DIR);
shadowed_path_hook!(readlink(@path, buf: *mut c_char, size: usize) -> isize);
shadowed_path_hook!(readlinkat(dirfd: c_int, @path, buf: *mut c_char, size: usize) -> isize);
shadowed_path_hook!(access(@path, mode: c_int) -> c_int);
shadowed_path_hook!(stat(@path, buf: *mut libc::stat) -> c_int);
shadowed_path_hook!(lstat(@path, buf: *mut libc::stat) -> c_int);
shadowed_path_hook!(stat64(@path, buf: *mut libc::stat64) -> c_int);
shadowed_path_hook!(lstat64(@path, buf: *mut libc::stat64) -> c_int);
shadowed_path_hook!(fstatat64(dirfd: c_int, @path, buf: *mut libc::stat64, flags: c_int) -> c_int);
shadowed_path_hook!(fstatat(dirfd: c_int, @path, buf: *mut libc::stat, flags: c_int) -> c_int);
shadowed_path_hook!(statx(dirfd: c_int, @path, flags: c_int, mask: c_uint, buf: *mut libc::statx) -> c_int);

/// `pread`/`pwrite` forms: a VFIO device file's region bytes go through the
/// server, every other descriptor to the C library unchanged.
macro_rules! region_rw_hook {
    // The fortified form (`_FORTIFY_SOURCE`): a count past the buffer goes
    // to the C library, which aborts the program as it should.
    (@chk $name:ident, $real:ident) => {
        /// # Safety
        /// As glibc's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            buf: *mut c_void,
            count: usize,
            offset: libc::off_t,
            buflen: usize,
        ) -> isize {
            if count <= buflen {
                if let Some(r) = intercept_rw(fd, buf as u64, count, offset, false) {
                    return r;
                }
            }
            // SAFETY: not a VFIO file, or an overflow for the C library to
            // report: forwarding the caller's arguments unchanged.
            unsafe { (real().$real)(fd, buf, count, offset, buflen) }
        }
    };
    ($name:ident, $buf:ty, $write:expr) => {
        /// # Safety
        /// As the C library's function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            buf: $buf,
            count: usize,
            offset: libc::off_t,
        ) -> isize {
            if let Some(r) = intercept_rw(fd, buf as u64, count, offset, $write) {
                return r;
            }
            // SAFETY: not a VFIO file: forwarding the caller's arguments unchanged.
            unsafe { (real().$name)(fd, buf, count, offset) }
        }
    };
}

region_rw_hook!(pread, *mut c_void, false);
region_rw_hook!(pread64, *mut c_void, false);
region_rw_hook!(pwrite, *const c_void, true);
region_rw_hook!(pwrite64, *const c_void, true);
region_rw_hook!(@chk __pread_chk, pread_chk);
region_rw_hook!(@chk __pread64_chk, pread64_chk);
