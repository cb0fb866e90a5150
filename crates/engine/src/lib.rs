//! The softiommu engine: Linux's iommufd, as a library.
//!
//! Vocabulary:
//! - **context**: one open of `/dev/iommu` ([`Context`]); owns an object table.
//! - **object**: anything with an id in a context (IOAS now; devices, HWPTs,
//!   vIOMMUs later). Ids are `u32` from 1.
//! - **IOAS**: an IO address space; its [`IoPagetable`] maps IOVA ranges
//!   (*areas*) to *pages* of a process or a file.
//! - **reserved / allowed**: IOVA that may not be mapped / where automatic
//!   allocation may look.
//! - **pin**: holding pages for a user that needs their frames; pins are
//!   charged to a locked-memory account.
//! - **caller**: who issues a call: their memory, descriptors and credentials.
//!
//! Two ways in: [`Context::ioctl`], the raw byte interface with Linux's rules
//! errno for errno, and [`api::Iommufd`], a typed API over the same operations.

pub mod access;
pub mod api;
pub mod context;
pub mod device;
pub mod dirty;
pub mod dma;
pub mod errno;
pub mod fault;
pub mod fault_queue;
pub mod free_space;
pub mod inspect;
pub mod ioctl;
pub mod iopt;
pub mod memory;
pub mod mmap;
pub mod object;
pub mod pages;
pub mod pasid;
pub mod physical;
mod smmuv3;
pub mod veventq;
mod vfio;
pub mod viommu;

pub use context::{Caller, Context, Credentials, MapArgs};
pub use errno::{Errno, Error, Result};
pub use ioctl::Arg;
pub use iopt::{IoPagetable, Prot};
pub use pages::Shared;
