//! Memory behind an anonymous file (`memfd`): what a device's BARs are, so
//! that the server and the program can both map the same bytes (a program
//! `mmap`s a BAR through the VFIO device file; the device model reads and
//! writes the same pages). Pages cost nothing until touched.

use super::{new_space_id, FileBacking};
use crate::errno::{Errno, Result};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;

/// An anonymous file of fixed size.
#[derive(Debug)]
pub struct MemFile {
    id: u64,
    len: u64,
    file: File,
}

impl MemFile {
    /// A zero-filled file of `len` bytes named `name` (shown in
    /// `/proc/<pid>/maps` of whoever maps it). `ENOMEM` when the system
    /// cannot make one.
    pub fn new(name: &str, len: u64) -> Result<Self> {
        let name = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
        let fd =
            nix::sys::memfd::memfd_create(&name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                .map_err(|_| Errno::ENOMEM)?;
        let file = File::from(fd);
        file.set_len(len).map_err(|_| Errno::ENOMEM)?;
        Ok(MemFile {
            id: new_space_id(),
            len,
            file,
        })
    }

    /// The file, for a transport that hands it to a program to map.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn check(&self, offset: u64, len: usize) -> Result<()> {
        let end = offset.checked_add(len as u64).ok_or(Errno::EFAULT)?;
        if end > self.len {
            return Err(Errno::EFAULT);
        }
        Ok(())
    }
}

impl FileBacking for MemFile {
    fn id(&self) -> u64 {
        self.id
    }
    fn size(&self) -> Result<u64> {
        Ok(self.len)
    }
    fn writable(&self) -> bool {
        true
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|_| Errno::EFAULT)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|_| Errno::EFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_are_read_back_and_the_end_is_enforced() {
        let m = MemFile::new("bar0", 8192).unwrap();
        m.write_at(4090, b"across").unwrap();
        let mut back = [0u8; 6];
        m.read_at(4090, &mut back).unwrap();
        assert_eq!(&back, b"across");
        assert_eq!(m.read_at(8190, &mut [0; 4]), Err(Errno::EFAULT));
        assert_eq!(m.write_at(u64::MAX, &[1]), Err(Errno::EFAULT));
        assert_eq!(m.size(), Ok(8192));
    }
}
