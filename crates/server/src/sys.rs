//! The server's side of a shared call page (see [`SharedCall`]): mapping
//! the page a program sent, waiting for its calls and publishing replies.
//!
//! This is the server's one `unsafe` module: mapping the page and viewing it
//! as a [`SharedCall`].

#![allow(unsafe_code)]

use softiommu_proto::{Hello, SharedCall, SHARED_PAGE_SIZE};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// How long the server polls for a program's next call before it sleeps: long
/// enough to catch a program that issues calls back to back, short enough
/// that an idle channel costs nothing.
const SERVER_SPIN: Duration = Duration::from_micros(50);

/// How long a sleeper waits before it checks that the other side still
/// exists.
const SLEEP_SLICE: rustix::thread::futex::Timespec = rustix::thread::futex::Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// A program's call page, mapped in the server. Invariant: `page` points at
/// `SHARED_PAGE_SIZE` bytes mapped shared from `_memory`, which is sealed
/// against shrinking (so touching the page can never fault), and stays mapped
/// until drop.
pub(crate) struct SharedPage {
    page: NonNull<SharedCall>,
    _memory: OwnedFd,
}

// SAFETY: the page is only ever viewed as `&SharedCall`, whose fields are
// atomics, so sharing it across threads is sound.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the page in `memory`, which must be at least a page long and
    /// sealed against shrinking (a program could otherwise truncate it under
    /// the server).
    pub(crate) fn map(memory: OwnedFd) -> Option<SharedPage> {
        use rustix::fs::SealFlags;
        let seals = rustix::fs::fcntl_get_seals(&memory).ok()?;
        if !seals.contains(SealFlags::SHRINK) {
            return None;
        }
        let size = rustix::fs::fstat(&memory).ok()?.st_size;
        if size < SHARED_PAGE_SIZE as i64 {
            return None;
        }
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping chosen by the kernel (null hint), of
        // a file at least that long that cannot shrink; nothing else in this
        // process refers to that address range.
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
        let page = NonNull::new(ptr.cast::<SharedCall>())?;
        Some(SharedPage {
            page,
            _memory: memory,
        })
    }

    pub(crate) fn get(&self) -> &SharedCall {
        // SAFETY: the mapping is live and page aligned (invariant); every
        // bit pattern is a valid `SharedCall` (atomic integers only), and the
        // program writing it concurrently only ever does so through atomics.
        unsafe { self.page.as_ref() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `map` and no reference to it
        // outlives `self` (`get` borrows `self`).
        let _ = unsafe { rustix::mm::munmap(self.page.as_ptr().cast(), SHARED_PAGE_SIZE) };
    }
}

/// Reads a connection's hello and the descriptor it may carry.
pub(crate) fn read_hello(stream: &UnixStream) -> Option<(Hello, Option<OwnedFd>)> {
    let mut hello = Hello::default();
    let mut got = 0;
    let mut fd = None;
    while got < std::mem::size_of::<Hello>() {
        let mut control = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut hello.as_mut_bytes()[got..])];
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        if msg.bytes == 0 {
            return None;
        }
        got += msg.bytes;
        for c in msg.cmsgs().ok()? {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                for raw in fds {
                    // SAFETY: SCM_RIGHTS just installed `raw` in this process
                    // and nothing else owns it.
                    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
                    fd.get_or_insert(owned);
                }
            }
        }
    }
    Some((hello, fd))
}

/// Whether the program's end of the channel is gone.
fn peer_gone(stream: &UnixStream) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
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

/// Waits until `seq` leaves `last`: polls for a while, then sleeps on the
/// futex with `sleeping` set. `None` once `alive` says the other side is gone.
fn wait_for_change(
    seq: &AtomicU32,
    last: u32,
    sleeping: &AtomicU32,
    spin: Duration,
    alive: impl Fn() -> bool,
) -> Option<u32> {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            let now = seq.load(Ordering::Acquire);
            if now != last {
                return Some(now);
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= spin {
            break;
        }
    }
    loop {
        sleeping.store(1, Ordering::SeqCst);
        let now = seq.load(Ordering::SeqCst);
        if now != last {
            sleeping.store(0, Ordering::SeqCst);
            return Some(now);
        }
        let _ = rustix::thread::futex::wait(
            seq,
            rustix::thread::futex::Flags::empty(),
            last,
            Some(&SLEEP_SLICE),
        );
        sleeping.store(0, Ordering::SeqCst);
        let now = seq.load(Ordering::Acquire);
        if now != last {
            return Some(now);
        }
        if !alive() {
            return None;
        }
    }
}

/// Waits for the program's next call; `None` once the program has gone.
pub(crate) fn wait_for_call(shared: &SharedCall, last: u32, stream: &UnixStream) -> Option<u32> {
    wait_for_change(
        &shared.call_seq,
        last,
        &shared.server_sleeping,
        SERVER_SPIN,
        || !peer_gone(stream),
    )
}

/// Publishes the reply to call `seq`, waking the program if it sleeps.
pub(crate) fn publish_reply(shared: &SharedCall, seq: u32) {
    shared.reply_seq.store(seq, Ordering::SeqCst);
    if shared.program_sleeping.load(Ordering::SeqCst) != 0 {
        let _ = rustix::thread::futex::wake(
            &shared.reply_seq,
            rustix::thread::futex::Flags::empty(),
            u32::MAX,
        );
    }
}
