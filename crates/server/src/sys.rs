//! The server's one `unsafe` module: mapping a program's call page and
//! viewing it as a [`SharedCall`] (whose protocol lives in
//! `softiommu-proto`), and taking ownership of a descriptor received with a
//! hello, and asking a socket for its peer's pidfd.

#![allow(unsafe_code)]

use softiommu_proto::{is_page_memory, Hello, SharedCall, SHARED_PAGE_SIZE};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use zerocopy::IntoBytes;

/// A program's call page, mapped in the server. Invariant: `page` points at
/// `SHARED_PAGE_SIZE` bytes mapped shared from memory sealed against
/// shrinking (so touching the page can never fault), and stays mapped
/// until drop.
pub(crate) struct SharedPage {
    page: NonNull<SharedCall>,
}

// SAFETY: the page is only ever viewed as `&SharedCall`, whose fields are
// atomics, so sharing it across threads is sound.
unsafe impl Send for SharedPage {}
// SAFETY: as above.
unsafe impl Sync for SharedPage {}

impl SharedPage {
    /// Maps the page in `memory`, if it may be mapped (see
    /// [`is_page_memory`]). The mapping outlives the descriptor.
    pub(crate) fn map(memory: &OwnedFd) -> Option<SharedPage> {
        if !is_page_memory(memory) {
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
                memory,
                0,
            )
        }
        .ok()?;
        let page = NonNull::new(ptr.cast::<SharedCall>())?;
        Some(SharedPage { page })
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
        // Room for the sender's credentials too: the listener passes them.
        let mut control =
            nix::cmsg_space!([std::os::fd::RawFd; 1], nix::sys::socket::UnixCredentials);
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

/// A pidfd of the process at the other end of `stream`, as it was when it
/// connected (`SO_PEERPIDFD`): unlike its pid, this can never come to name
/// another process.
pub(crate) fn peer_pidfd(stream: &UnixStream) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes of the sizes given, as
    // getsockopt(2) requires for an int option.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || fd < 0 {
        return None;
    }
    // SAFETY: the kernel just installed `fd` in this process for us alone.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}
