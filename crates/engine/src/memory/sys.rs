//! The engine's one `unsafe` module: a copy between two addresses of this
//! process, made by the kernel so that an unmapped or read-only page is an
//! error and never a crash.

#![allow(unsafe_code)]

/// Copies `len` bytes from address `from` to address `to`, both in this
/// process, with one `process_vm_writev` on itself: one pass through the
/// kernel, where reading into a buffer and writing it out would take two.
/// The kernel checks both sides as it does any user copy: `false` when a
/// byte of `from` is unreadable or one of `to` unwritable (some bytes may
/// have been copied by then, as with a fault part-way through a `write`).
pub(super) fn copy_within_this_process(from: u64, to: u64, len: usize) -> bool {
    let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
        return false;
    };
    let local = libc::iovec {
        iov_base: from as *mut libc::c_void,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: to as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: the two iovecs are read by the kernel only, for the length of
    // the call; the addresses they hold are never dereferenced by this
    // process, and the kernel copies through them with its fault-checked
    // user-copy routines (`EFAULT`, not a signal, on a bad page). Writing
    // to `to` is what the caller (an emulated device) asked for, under the
    // same page protections the program's own stores meet.
    let copied = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    usize::try_from(copied) == Ok(len)
}
