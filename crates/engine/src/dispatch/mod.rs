//! The raw entry point: an ioctl request number and its argument, decoded with
//! Linux's extensible-struct rules (`iommufd_fops_ioctl`):
//!
//! - the first `u32` of the argument is its size (unreadable → `EFAULT`);
//! - a number inside the command table that names no command → `ENOTTY`;
//! - size below the command's minimum → `EINVAL`;
//! - bytes past the struct this ABI knows must be zero (`E2BIG`), and then the
//!   call behaves exactly as with the known size;
//! - results are copied back as `min(user size, struct size)` bytes;
//! - numbers below the table go to the VFIO compatibility ioctls, and unknown
//!   ones there are `ENOTTY` too.
//!
//! The argument is either a pointer into the caller's memory ([`Arg::User`]) or
//! a byte buffer the caller hands over ([`Arg::Bytes`]). Pointers embedded in
//! the structs always refer to the caller's memory.

use crate::context::{Caller, Context, MapArgs};
use crate::errno::{Errno, Result};
use crate::ioas::{Prot, ULONG_MAX};
use softiommu_uapi::ioctl::command_info;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use zerocopy::{FromBytes, Immutable, IntoBytes};

mod hwpt;
mod ioas;
mod test_cmd;
mod user_buffers;
mod vfio_compat;
mod viommu;

pub use user_buffers::{user_buffers, UserBuffer};

/// An ioctl argument.
#[derive(Debug)]
pub enum Arg<'b> {
    /// The raw argument value: a pointer into the caller's memory, or for the
    /// integer-argument VFIO ioctls, the integer itself.
    User(u64),
    /// The argument struct's bytes. For integer-argument ioctls the integer is
    /// read from the first 8 bytes (little-endian).
    Bytes(&'b mut [u8]),
    /// The argument struct's bytes as the caller copied them from `user`,
    /// its address in the caller's memory: the call reads and writes the
    /// bytes (the caller copies back what changed), and names `user` where
    /// it must give an address inside the struct (where a transport writes
    /// a new descriptor's number).
    Staged {
        /// The struct's bytes.
        bytes: &'b mut [u8],
        /// Where they came from.
        user: u64,
    },
}

impl Arg<'_> {
    pub(crate) fn read(&self, caller: &Caller<'_>, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Arg::User(ptr) => caller
                .mem
                .read(ptr.checked_add(offset).ok_or(Errno::EFAULT)?, buf),
            Arg::Bytes(bytes) | Arg::Staged { bytes, .. } => {
                let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
                let src = bytes
                    .get(start..start.checked_add(buf.len()).ok_or(Errno::EFAULT)?)
                    .ok_or(Errno::EFAULT)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    pub(crate) fn write(&mut self, caller: &Caller<'_>, offset: u64, buf: &[u8]) -> Result<()> {
        match self {
            Arg::User(ptr) => caller
                .mem
                .write(ptr.checked_add(offset).ok_or(Errno::EFAULT)?, buf),
            Arg::Bytes(bytes) | Arg::Staged { bytes, .. } => {
                let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
                let end = start.checked_add(buf.len()).ok_or(Errno::EFAULT)?;
                bytes
                    .get_mut(start..end)
                    .ok_or(Errno::EFAULT)?
                    .copy_from_slice(buf);
                Ok(())
            }
        }
    }

    /// Checks that the argument's bytes from `start` to `end` are all zero
    /// (`E2BIG` if not): the tail of an extensible struct past what this ABI
    /// knows, read in bounded pieces.
    pub(crate) fn check_zero_tail(&self, caller: &Caller<'_>, start: u64, end: u64) -> Result<()> {
        // Most calls have no tail: skip zeroing the piece buffer for them.
        if start >= end {
            return Ok(());
        }
        let mut piece = [0u8; TAIL_PIECE];
        let mut at = start;
        while at < end {
            let n = (end - at).min(TAIL_PIECE as u64) as usize;
            self.read(caller, at, &mut piece[..n])?;
            // Eight bytes at a time: a tail can be gigabytes long.
            let words = piece[..n].chunks(8).map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_ne_bytes(w)
            });
            if words.fold(0, |acc, w| acc | w) != 0 {
                return Err(Errno::E2BIG);
            }
            at += n as u64;
        }
        Ok(())
    }

    /// The address of byte `offset` of the struct in the caller's memory,
    /// where a transport writes a descriptor the engine could not; 0 when
    /// the struct has no address (bytes handed over by a library caller).
    pub(crate) fn user_address(&self, offset: u64) -> u64 {
        match self {
            Arg::User(ptr) | Arg::Staged { user: ptr, .. } => ptr.wrapping_add(offset),
            Arg::Bytes(_) => 0,
        }
    }

    pub(crate) fn value(&self) -> u64 {
        match self {
            Arg::User(v) => *v,
            Arg::Bytes(bytes) | Arg::Staged { bytes, .. } => {
                let mut raw = [0u8; 8];
                let n = bytes.len().min(8);
                raw[..n].copy_from_slice(&bytes[..n]);
                u64::from_le_bytes(raw)
            }
        }
    }
}

/// One decoded command in flight (Linux `struct iommufd_ucmd`).
pub(crate) struct Ucmd<'a, 'b> {
    pub caller: &'a Caller<'a>,
    pub arg: Arg<'b>,
    pub user_size: u32,
    /// The struct, zero-extended or truncated to the size this ABI knows.
    pub buf: Vec<u8>,
    /// The ioctl's return value on success (0 but for `DMABUF_GET`, which
    /// returns a descriptor).
    pub ret: i64,
}

impl Ucmd<'_, '_> {
    pub fn cmd<T: FromBytes>(&self) -> T {
        match T::read_from_prefix(&self.buf) {
            Ok((v, _)) => v,
            Err(_) => unreachable!("the buffer has the command's full size"),
        }
    }

    /// Copies `cmd` back as `min(user size, size of T)` bytes.
    pub fn respond<T: IntoBytes + Immutable>(&mut self, cmd: &T) -> Result<()> {
        let bytes = cmd.as_bytes();
        let n = bytes.len().min(self.user_size as usize);
        self.arg.write(self.caller, 0, &bytes[..n])
    }
}

/// Bytes read per step when checking a long zero tail.
const TAIL_PIECE: usize = 4096;

impl Context {
    /// Runs ioctl `request` with `arg`, as `/dev/iommu` would. Returns the
    /// ioctl's non-negative result or the errno.
    pub fn ioctl(&mut self, caller: &Caller<'_>, request: u32, arg: Arg<'_>) -> Result<i64> {
        let nr = (request & 0xff) as u8;
        let info = match command_info(nr) {
            Ok(None) => return self.vfio_ioctl(caller, request, arg),
            Ok(Some(info)) => Some(info),
            Err(()) => None,
        };
        // One read usually brings both the size and the struct: try the
        // command's full size first, and fall back to reading the size alone
        // (the struct may end right before unmapped memory).
        let mut buf = vec![0u8; info.map_or(4, |i| i.size.max(4))];
        let whole =
            info.is_some_and(|i| i.request == request) && arg.read(caller, 0, &mut buf).is_ok();
        if !whole {
            arg.read(caller, 0, &mut buf[..4])?;
        }
        let user_size = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let info = match info {
            Some(info) if info.request == request => info,
            _ => return Err(Errno::ENOTTY),
        };
        if (user_size as usize) < info.min_size {
            return Err(Errno::EINVAL);
        }
        let copy = info.size.min(user_size as usize);
        if whole {
            // Bytes past the user's size are not the user's: they read as zero.
            buf[copy..].fill(0);
        } else {
            buf.resize(info.size, 0);
            arg.read(caller, 0, &mut buf[..copy])?;
        }
        arg.check_zero_tail(caller, info.size as u64, u64::from(user_size))?;
        let mut ucmd = Ucmd {
            caller,
            arg,
            user_size,
            buf,
            ret: 0,
        };
        self.execute(nr, &mut ucmd).map(|()| ucmd.ret)
    }

    fn execute(&mut self, nr: u8, u: &mut Ucmd<'_, '_>) -> Result<()> {
        match nr {
            nr::DESTROY => self.cmd_destroy(u)?,
            nr::IOAS_ALLOC => self.cmd_ioas_alloc(u)?,
            nr::IOAS_ALLOW_IOVAS => self.cmd_allow_iovas(u)?,
            nr::IOAS_COPY => self.cmd_copy(u)?,
            nr::IOAS_IOVA_RANGES => self.cmd_iova_ranges(u)?,
            nr::IOAS_MAP => self.cmd_map(u)?,
            nr::IOAS_UNMAP => self.cmd_unmap(u)?,
            nr::OPTION => self.cmd_option(u)?,
            nr::VFIO_IOAS => self.cmd_vfio_ioas(u)?,
            nr::HWPT_ALLOC => self.cmd_hwpt_alloc(u)?,
            nr::GET_HW_INFO => self.cmd_get_hw_info(u)?,
            nr::HWPT_SET_DIRTY_TRACKING => self.cmd_set_dirty_tracking(u)?,
            nr::HWPT_GET_DIRTY_BITMAP => self.cmd_get_dirty_bitmap(u)?,
            nr::HWPT_INVALIDATE => self.cmd_invalidate(u)?,
            nr::FAULT_QUEUE_ALLOC => self.cmd_fault_alloc(u)?,
            nr::IOAS_MAP_FILE => self.cmd_map_file(u)?,
            nr::VIOMMU_ALLOC => self.cmd_viommu_alloc(u)?,
            nr::VDEVICE_ALLOC => self.cmd_vdevice_alloc(u)?,
            nr::IOAS_CHANGE_PROCESS => self.cmd_change_process(u)?,
            nr::VEVENTQ_ALLOC => self.cmd_veventq_alloc(u)?,
            nr::HW_QUEUE_ALLOC => self.cmd_hw_queue_alloc(u)?,
            nr::TEST_CMD => return self.cmd_test(u),
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }
}
