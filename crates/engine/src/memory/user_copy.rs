//! Copying structs in from user memory with Linux's extensible-struct rules
//! (`copy_struct_from_user`, `iommu_copy_struct_from_user_array`), in one
//! place: a struct given shorter than its mandatory part is `EINVAL`, a
//! shorter one is zero-extended, and bytes past the struct this ABI knows
//! must be zero (`E2BIG`). Tails are read in bounded pieces, so a
//! caller-chosen length never sizes an allocation.

use super::AddressSpace;
use crate::errno::{Errno, Result};
use zerocopy::{FromBytes, IntoBytes};

/// The largest piece of a tail read at once.
const TAIL_PIECE: usize = 4096;

/// Checks that the `length` bytes at `uptr` are all zero (`E2BIG` if not).
pub fn check_zero_tail(mem: &dyn AddressSpace, uptr: u64, length: u64) -> Result<()> {
    // Most calls have no tail: skip zeroing the piece buffer for them.
    if length == 0 {
        return Ok(());
    }
    let mut piece = [0u8; TAIL_PIECE];
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(TAIL_PIECE as u64) as usize;
        let at = uptr.checked_add(done).ok_or(Errno::EFAULT)?;
        mem.read(at, &mut piece[..n])?;
        if piece[..n].iter().any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
        done += n as u64;
    }
    Ok(())
}

/// Zeroes `length` bytes at `uptr` in bounded pieces (Linux `clear_user`).
pub fn clear_user(mem: &dyn AddressSpace, uptr: u64, length: u64) -> Result<()> {
    if length == 0 {
        return Ok(());
    }
    let zeros = [0u8; TAIL_PIECE];
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(TAIL_PIECE as u64) as usize;
        mem.write(uptr.checked_add(done).ok_or(Errno::EFAULT)?, &zeros[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Reads a `T` that user space gave as `user_size` bytes at `uptr`, of which
/// at least `min_size` are mandatory (Linux `copy_struct_from_user` after a
/// minimum-size check).
pub fn copy_struct<T: FromBytes + IntoBytes>(
    mem: &dyn AddressSpace,
    uptr: u64,
    user_size: u64,
    min_size: usize,
) -> Result<T> {
    if user_size < min_size as u64 {
        return Err(Errno::EINVAL);
    }
    let mut value = T::new_zeroed();
    let size = std::mem::size_of::<T>() as u64;
    let n = user_size.min(size) as usize;
    mem.read(uptr, &mut value.as_mut_bytes()[..n])?;
    if user_size > size {
        check_zero_tail(
            mem,
            uptr.checked_add(size).ok_or(Errno::EFAULT)?,
            user_size - size,
        )?;
    }
    Ok(value)
}

/// Reads entry `index` of a user array whose entries are `entry_len` bytes
/// apart, as a `T` of which `min_size` bytes are mandatory (Linux
/// `iommu_copy_struct_from_user_array`).
pub fn copy_array_entry<T: FromBytes + IntoBytes>(
    mem: &dyn AddressSpace,
    uptr: u64,
    entry_len: u32,
    index: u32,
    min_size: usize,
) -> Result<T> {
    let offset = u64::from(index) * u64::from(entry_len);
    let at = uptr.checked_add(offset).ok_or(Errno::EFAULT)?;
    copy_struct(mem, at, u64::from(entry_len), min_size)
}

/// Reads a driver payload of a size only the driver knows: `user_size`
/// bytes at `uptr`, at least `min_size`, kept up to `size` (zero-extended);
/// bytes past `size` must be zero.
pub fn copy_payload(
    mem: &dyn AddressSpace,
    uptr: u64,
    user_size: u64,
    min_size: usize,
    size: usize,
) -> Result<Vec<u8>> {
    if user_size < min_size as u64 {
        return Err(Errno::EINVAL);
    }
    let mut data = vec![0u8; size];
    let n = user_size.min(size as u64) as usize;
    mem.read(uptr, &mut data[..n])?;
    if user_size > size as u64 {
        let at = uptr.checked_add(size as u64).ok_or(Errno::EFAULT)?;
        check_zero_tail(mem, at, user_size - size as u64)?;
    }
    Ok(data)
}

/// A driver payload (HWPT or vIOMMU data) as the caller gave it: in its
/// memory, or as bytes (the library and tests). Read only once the driver,
/// which knows the payload's size, has been chosen.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// `len` bytes at `uptr` in `mem`.
    User {
        /// Whose memory.
        mem: &'a dyn AddressSpace,
        /// Where.
        uptr: u64,
        /// How many bytes the caller says it gave.
        len: u64,
    },
    /// Bytes handed over directly.
    Bytes(&'a [u8]),
}

impl Payload<'_> {
    /// The payload with Linux's rules: at least `min_size` bytes, kept up to
    /// `size` (zero-extended), anything past `size` zero.
    pub fn read(&self, min_size: usize, size: usize) -> Result<Vec<u8>> {
        match *self {
            Payload::User { mem, uptr, len } => copy_payload(mem, uptr, len, min_size, size),
            Payload::Bytes(bytes) => {
                if bytes.len() < min_size {
                    return Err(Errno::EINVAL);
                }
                if bytes.iter().skip(size).any(|&b| b != 0) {
                    return Err(Errno::E2BIG);
                }
                let mut data = bytes[..bytes.len().min(size)].to_vec();
                data.resize(size, 0);
                Ok(data)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SimMemory;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: u32,
    }

    fn memory_with(bytes: &[u8]) -> (SimMemory, u64) {
        let mem = SimMemory::new();
        let at = 0x10000;
        let len = (bytes.len() as u64).div_ceil(4096).max(1) * 4096;
        mem.map(at, len, true);
        mem.poke(at, bytes).unwrap();
        (mem, at)
    }

    #[test]
    fn a_short_struct_is_zero_extended_and_below_the_minimum_is_einval() {
        let (mem, at) = memory_with(&[1, 0, 0, 0]);
        let p: Pair = copy_struct(&mem, at, 4, 4).unwrap();
        assert_eq!(p, Pair { a: 1, b: 0 });
        assert_eq!(copy_struct::<Pair>(&mem, at, 3, 4), Err(Errno::EINVAL));
    }

    #[test]
    fn a_longer_struct_needs_a_zero_tail() {
        let mut bytes = vec![2, 0, 0, 0, 3, 0, 0, 0];
        bytes.extend(std::iter::repeat_n(0, 10_000));
        let (mem, at) = memory_with(&bytes);
        let p: Pair = copy_struct(&mem, at, bytes.len() as u64, 8).unwrap();
        assert_eq!(p, Pair { a: 2, b: 3 });
        mem.poke(at + 9_000, &[1]).unwrap();
        assert_eq!(
            copy_struct::<Pair>(&mem, at, bytes.len() as u64, 8),
            Err(Errno::E2BIG)
        );
    }

    #[test]
    fn a_tail_past_readable_memory_is_efault_not_a_huge_allocation() {
        let (mem, at) = memory_with(&[0; 8]);
        assert_eq!(
            copy_struct::<Pair>(&mem, at, u64::from(u32::MAX), 8),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            copy_payload(&mem, at, u64::from(u32::MAX), 4, 8),
            Err(Errno::EFAULT)
        );
    }

    #[test]
    fn array_entries_are_read_at_their_stride() {
        let (mem, at) = memory_with(&[
            1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let e: Pair = copy_array_entry(&mem, at, 12, 1, 8).unwrap();
        assert_eq!(e, Pair { a: 5, b: 6 });
    }
}
