//! The softiommu engine: Linux's iommufd, as a library.
//!
//! Vocabulary:
//! - **context**: one open of `/dev/iommu` ([`Context`]); owns an object table.
//! - **object**: anything with an id in a context: IOAS, device, HWPT,
//!   vIOMMU, vDEVICE, queues, accesses. Ids are `u32` from 1.
//! - **IOAS**: an IO address space; its [`IoPagetable`] maps IOVA ranges
//!   (*areas*) to *pages* of a process or a file.
//! - **reserved / allowed**: IOVA that may not be mapped / where automatic
//!   allocation may look.
//! - **pin**: holding pages for a user that needs their frames; pins are
//!   charged to a locked-memory account.
//! - **caller**: who issues a call: their memory, descriptors and credentials.
//! - **fail-nth**: the fault-*injection* hook; a *DMA fault* is a translation
//!   failure, a *fault queue* carries IO page faults to user space.
//!
//! Two ways in: [`Context::ioctl`], the raw byte interface with Linux's rules
//! errno for errno, and [`api::Iommufd`], a typed API over the same operations.
//!
//! Layers, lowest first; a module uses only its own layer and those below
//! (`tests/layering.rs` checks it):
//!
//! 1. [`errno`], [`fail_nth`], [`limits`], [`sync`], [`text`]: errors, the
//!    fault-injection hook, per-context limits, locks, numbers written as text.
//! 2. [`memory`]: where bytes live (a process, a file, simulated buffers).
//! 3. [`pages`]: frames, pinning, accounting, the engine-wide state.
//! 4. [`ioas`]: one IO page table: areas, holes, domains, ranges, pins.
//! 5. [`object`]: what an id names; state only.
//! 6. [`driver`]: what differs between IOMMU drivers.
//! 7. [`context`]: one open of `/dev/iommu` and who calls it.
//! 8. [`ops`]: operations on objects (`impl Context`).
//! 9. [`dispatch`]: ioctl decoding with Linux's rules (`impl Context`).
//! 10. [`vfio`]: emulated PCI functions as VFIO device files.
//! 11. [`devices`]: device models behind functions (I/OAT).
//! 12. [`api`], [`inspect`]: the typed face and the report.

#![warn(missing_docs)]

pub mod errno;
pub mod fail_nth;
pub mod limits;
pub mod sync;
pub mod text;

pub mod memory;

pub mod pages;

pub mod ioas;

pub mod object;

pub mod driver;

pub mod context;

pub mod ops;

pub mod dispatch;

pub mod devices;
pub mod vfio;

pub mod api;
pub mod inspect;

pub use context::{Caller, Context, Credentials, MapArgs};
pub use dispatch::Arg;
pub use errno::{Errno, Error, Result};
pub use ioas::{IoPagetable, Prot};
pub use pages::EngineState;
