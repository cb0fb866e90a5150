//! The iommufd user ABI as plain data: no logic, no `unsafe`.
//!
//! Vocabulary:
//! - **command**: an iommufd ioctl, `_IO(';', nr)`; the request number carries no
//!   size or direction bits, the size is the first `u32` of the argument struct.
//! - **size / min size**: the struct's full size in this ABI version, and
//!   `offsetofend` of its last mandatory field. Linux rejects a smaller user size
//!   with `EINVAL` and accepts a larger one if the extra bytes are zero.
//! - **VFIO compat**: the VFIO type1 container ioctls that Linux also serves on an
//!   iommufd file (numbers below 0x80).
//! - **errno**: the positive error numbers the ioctls return ([`Errno`]).
//! - **test command**: `IOMMU_TEST_CMD`, the selftest multiplexer
//!   (`drivers/iommu/iommufd/iommufd_test.h`).
//!
//! Every struct is `#[repr(C)]` and derives `zerocopy` traits so that bytes from
//! a user buffer can be read and written without `unsafe`. The layouts are
//! checked against the rust-vmm `iommufd-bindings` and `vfio-bindings` crates in
//! this crate's tests.

// Constants and struct fields carry the names of the C headers
// (include/uapi/linux/iommufd.h, vfio.h, iommufd_test.h), whose docs apply.
#![allow(missing_docs)]

pub mod errno;
pub mod ioctl;
pub mod iommufd;
pub mod test_cmd;
pub mod vfio;

pub use errno::Errno;
pub use ioctl::{command_info, CommandInfo};
