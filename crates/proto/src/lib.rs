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

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod shared_call;
pub use shared_call::*;

/// Environment variable naming the server's socket.
pub const SOCKET_ENV: &str = "SOFTIOMMU_SOCKET";
/// First word of every hello.
pub const MAGIC: u32 = 0x534f_4654; // "SOFT"

/// Hello kinds.
pub const HELLO_CONTEXT: u32 = 1;
pub const HELLO_CALL: u32 = 2;
/// A call channel whose calls travel through the shared page sent with the
/// hello.
pub const HELLO_CALL_SHARED: u32 = 3;

/// Call operations.
pub const CALL_IOCTL: u32 = 1;
/// Sent after the program closed a context socket or a side file: if that was
/// the last reference, the server releases what stands behind it before
/// replying.
pub const CALL_CLOSED: u32 = 2;
/// Whether a socket inode names a context.
pub const CALL_IS_CONTEXT: u32 = 3;
/// `mmap(2)` of a context: `arg` is the offset, `len`, `prot` and `flags` as
/// the program passed them. The reply carries a descriptor of the region's
/// memory (`fd_addr` is `u64::MAX`), which the shim maps at offset 0.
pub const CALL_MMAP: u32 = 4;
/// The pages the engine has pinned for process `arg` (its `pid`): `result`
/// is what `/proc/<pid>/status` would add to `VmPin`, `extra` to `VmLck`.
pub const CALL_PROC_STATUS: u32 = 5;
/// A `read(2)` of `len` bytes from the vEVENTQ file whose inode is `ino`:
/// `result` is how many bytes to read from it (whole records only), or the
/// errno Linux's read would give; `EBADF` when `ino` is no vEVENTQ's file.
pub const CALL_EVENTQ_READ: u32 = 6;

/// First packet on a new connection.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Hello {
    pub magic: u32,
    pub kind: u32,
    /// For a context: the inode of the program's end of the socket.
    pub ino: u64,
}

/// A request on a call channel.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Call {
    pub op: u32,
    /// The ioctl request number.
    pub request: u32,
    /// The context, by socket inode.
    pub ino: u64,
    /// The ioctl argument (a pointer in the caller, or an integer).
    pub arg: u64,
    /// For `CALL_MMAP`: the mapping's length, protection and flags.
    pub len: u64,
    pub prot: u32,
    pub flags: u32,
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
    pub reserved: u32,
    /// Where to write the number of the attached descriptor; 0 if none.
    pub fd_addr: u64,
    /// A second result, for calls that have one.
    pub extra: u64,
}

/// In a reply through the shared page: a descriptor follows on the socket,
/// attached (`SCM_RIGHTS`) to a reply-sized packet whose contents mean
/// nothing.
pub const REPLY_FD_FOLLOWS: u32 = 1;
