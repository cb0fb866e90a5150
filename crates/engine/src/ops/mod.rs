//! Operations on a context's objects, one file per object family as Linux's
//! iommufd splits them (`ioas.c`, `device.c`, `hw_pagetable.c`, `viommu.c`,
//! `eventq.c`, `selftest.c`). This layer and `dispatch` are the only ones
//! that `impl Context`; each operation looks its objects up once and either
//! completes or leaves everything as it was.

pub mod access;
pub mod device;
pub mod dirty;
pub mod dma;
pub mod fault_queue;
pub mod hwpt;
pub mod ioas;
pub mod mmap;
pub mod object;
pub mod pasid;
pub mod selftest;
pub mod veventq;
pub mod viommu;
