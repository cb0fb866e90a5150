//! The IOMMU core, as Linux's `iommu.c` keeps it, with the device-centric
//! attach that iommufd builds on it.
//!
//! Vocabulary:
//! - **IOMMU instance**: one translation unit and its driver ([`DriverInfo`]):
//!   capabilities, page sizes, aperture, page-table format, reserved regions.
//! - **group**: the devices an IOMMU cannot tell apart. They always share one
//!   domain: whatever one of them is attached to, all are.
//! - **device**: bound to a kernel driver, unbound, or claimed by a user owner.
//! - **domain**: what a group translates through: the kernel's *default*
//!   domain, the *blocking* domain (no DMA), *identity*, a *paging* domain (a
//!   real page table) or a *nested* one (stage 1 over a nest-parent).
//! - **DMA ownership**: a group's DMA belongs to the kernel (default domain, any
//!   number of kernel drivers) or to one user owner, who claims it device by
//!   device. An owned group never runs on the default domain: it is blocked
//!   until attached, and gets the default back when the last claim is released.
//! - **affected**: every call that changes DMA reports the devices whose
//!   translation changed, so an operation on one device that moves its whole
//!   group is visible.

#![warn(missing_docs)]

pub mod core;
pub mod domain;
pub mod driver;
pub mod topology;
pub mod watch;

pub use crate::core::{Affected, Change, DeviceState, Errno, IommuCore, OwnerId};
pub use domain::{DomainId, DomainKind};
pub use driver::{DriverInfo, ReservedRegion, ReservedType};
pub use topology::{DeviceId, GroupId, IommuId, Topology};
