//! AMD IOMMU v1 page tables: paging domains only; nothing a user manages.

use super::DriverOps;

/// The AMD v1 driver's ops.
pub struct AmdV1;

impl DriverOps for AmdV1 {}
