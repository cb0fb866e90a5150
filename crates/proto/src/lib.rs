//! The wire protocol between the softiommu server and the shim in each process.
//!
//! Vocabulary:
//! - **context socket**: what `open("/dev/iommu")` returns in the program. A
//!   `SOCK_SEQPACKET` connection to the server; its open file description *is*
//!   the iommufd context, so `dup`, `fork`, `exec` and `SCM_RIGHTS` share it
//!   natively. The server sees the last close as end-of-file. A context is named
//!   by the inode of the program's end, which every holder can `fstat`.
//! - **call channel**: one connection per program thread (re-made after `fork`)
//!   that carries ioctl requests and their replies, so replies never reach the
//!   wrong process.
//! - **shared call page**: a page of memory a call channel may carry in its
//!   hello (a memfd by `SCM_RIGHTS`). Calls and replies then travel through
//!   the page ([`SharedCall`], whose protocol both sides share from here),
//!   each side polling briefly and then sleeping on a futex, so a call costs
//!   no socket round trip; the socket still carries descriptors and shows
//!   either side's end.
//!
//! Every message is one fixed-size packet.

#![warn(missing_docs)]

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod shared_call;
pub use shared_call::*;

/// Environment variable naming the server's socket.
pub const SOCKET_ENV: &str = "SOFTIOMMU_SOCKET";
/// First word of every hello.
pub const MAGIC: u32 = 0x534f_4654; // "SOFT"

/// A new context: `open("/dev/iommu")`.
pub const HELLO_CONTEXT: u32 = 1;
/// A call channel for this thread, whose calls travel as packets.
pub const HELLO_CALL: u32 = 2;
/// A call channel whose calls travel through the shared page sent with the
/// hello.
pub const HELLO_CALL_SHARED: u32 = 3;
/// A VFIO device file (`/dev/vfio/devices/vfio<index>`): like a context
/// socket, its open file description is the file, named by the program
/// end's inode.
pub const HELLO_VFIO_DEVICE: u32 = 4;
/// A VFIO group file (`/dev/vfio/<index>`).
pub const HELLO_VFIO_GROUP: u32 = 5;
/// A context opened as the legacy VFIO container (`/dev/vfio/vfio`): an
/// iommufd context that follows `vfio_iommu_type1` where they differ.
pub const HELLO_VFIO_CONTAINER: u32 = 6;
/// A connection that asks for the server's state (`softiommu inspect
/// --live`): the server answers with a `u64` length and that many bytes of
/// JSON (docs/inspect.md), then closes.
pub const HELLO_INSPECT: u32 = 7;

/// An `ioctl(2)` on a file the server serves: `request` and `arg` as the
/// program passed them.
pub const CALL_IOCTL: u32 = 1;
/// Sent after the program closed a context socket or a side file: if that was
/// the last reference, the server releases what stands behind it before
/// replying.
pub const CALL_CLOSED: u32 = 2;
/// Whether a socket inode names a file the server serves: `result` 1 for a
/// context, 2 for a VFIO device or group file, 0 for neither.
pub const CALL_IS_CONTEXT: u32 = 3;
/// `mmap(2)` of a context or a VFIO device file: `arg` is the offset, `len`,
/// `prot` and `flags` as the program passed them. The reply carries a
/// descriptor of the region's memory (`fd_addr` is `u64::MAX`), which the
/// shim maps at offset `extra` of it.
pub const CALL_MMAP: u32 = 4;
/// The pages the engine has pinned for process `arg` (its `pid`): `result`
/// is what `/proc/<pid>/status` would add to `VmPin`, `extra` to `VmLck`.
pub const CALL_PROC_STATUS: u32 = 5;
/// A `read(2)` of `len` bytes from the vEVENTQ file whose inode is `ino`:
/// `result` is how many bytes to read from it (whole records only), or the
/// errno Linux's read would give; `EBADF` when `ino` is no vEVENTQ's file.
pub const CALL_EVENTQ_READ: u32 = 6;
/// `pread(2)` of a VFIO device file: `len` bytes at file offset `offset`
/// into the program's buffer at `arg`; `result` is the count read.
pub const CALL_PREAD: u32 = 7;
/// `pwrite(2)` of a VFIO device file, as [`CALL_PREAD`] the other way.
pub const CALL_PWRITE: u32 = 8;
/// The program opens a sysfs or debugfs file the session shadows whose
/// contents change (`arg`: the address of its path, `len`: the path's
/// length): the server writes the file's current contents first, as the
/// kernel makes them at each open.
pub const CALL_REFRESH_VIEW: u32 = 9;
/// The program writes a sysfs attribute the server acts on (`arg`: the
/// address of the path, a NUL, then the bytes written; `len`: the whole
/// length). The result is the count taken.
pub const CALL_ATTRIBUTE_WRITE: u32 = 10;
/// The calling thread's fault-injection counter, which Linux shows as
/// `/proc/<pid>/task/<tid>/fail-nth`. `flags` 1: a write of the `len`
/// bytes of text at `arg` sets it first (`EINVAL`/`ERANGE` as the kernel's
/// `kstrtouint`). The result is its value.
pub const CALL_FAIL_NTH: u32 = 11;

/// First packet on a new connection.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Hello {
    /// [`MAGIC`].
    pub magic: u32,
    /// `HELLO_*`: what the connection is for.
    pub kind: u32,
    /// For a context or a VFIO file: the inode of the program's end of the
    /// socket.
    pub ino: u64,
    /// For a VFIO file: the device's minor (`vfio<index>`) or the group.
    pub index: u32,
    /// Zero.
    pub reserved: u32,
}

/// A request on a call channel.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Call {
    /// `CALL_*`: what is asked.
    pub op: u32,
    /// The ioctl request number.
    pub request: u32,
    /// The context, by socket inode.
    pub ino: u64,
    /// The ioctl argument (a pointer in the caller, or an integer).
    pub arg: u64,
    /// For `CALL_MMAP`: the mapping's length; for reads and writes, their
    /// byte count; for `CALL_IOCTL` through a call page, how many bytes of
    /// the argument struct (read from `arg`) the program staged in the
    /// page's payload: the server then works on those and leaves them
    /// there for the program to copy back what changed (0: none staged,
    /// the server reads `arg` itself).
    pub len: u64,
    /// For `CALL_MMAP`: the mapping's protection (`PROT_*`).
    pub prot: u32,
    /// For `CALL_MMAP`: the mapping's flags (`MAP_*`).
    pub flags: u32,
    /// For `CALL_PREAD` / `CALL_PWRITE`: the file offset.
    pub offset: u64,
    /// For `CALL_IOCTL`: the program's descriptor the call came through,
    /// for the trace only (files are named by `ino`).
    pub fd: i32,
    /// The calling thread's id, for the trace only.
    pub tid: i32,
}

/// The answer to a hello or a call.
///
/// A reply may carry one descriptor (`SCM_RIGHTS`): a new file for the
/// program, such as an access. The shim writes the number it received, as a
/// `u32`, at `fd_addr` in the program's memory (inside the ioctl's argument).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Reply {
    /// The ioctl's return value when `errno` is 0.
    pub result: i64,
    /// A positive errno, or 0 for success.
    pub errno: i32,
    /// `REPLY_FD_*` flags.
    pub reserved: u32,
    /// Where to write the number of the attached descriptor; 0 if none.
    pub fd_addr: u64,
    /// A second result, for calls that have one.
    pub extra: u64,
    /// For `CALL_MMAP` of a device file: the page-aligned part of the
    /// mapping, from `trap_start` bytes in for `trap_len` bytes, whose
    /// stores must reach the device model as register writes (the shim maps
    /// it read-only and turns each faulting store into a `pwrite`).
    pub trap_start: u32,
    /// See `trap_start`; 0 for none.
    pub trap_len: u32,
}

/// In a reply through the shared page: a descriptor follows on the socket,
/// attached (`SCM_RIGHTS`) to a reply-sized packet whose contents mean
/// nothing.
pub const REPLY_FD_FOLLOWS: u32 = 1;
/// In a reply: the descriptor it carries is a file the server serves like a
/// context (a VFIO device file from a group), not a side file.
pub const REPLY_FD_SERVED: u32 = 2;
/// In a reply: the descriptor it carries stays open across `exec` (a
/// dma-buf the program asked for without `O_CLOEXEC`); others close.
pub const REPLY_FD_KEEP_ON_EXEC: u32 = 4;
