//! What differs between IOMMU drivers (Linux `iommu_domain_ops`,
//! `iommufd_viommu_ops`): their user data formats and the stage-1 tables they
//! walk.

pub(crate) mod smmuv3;
