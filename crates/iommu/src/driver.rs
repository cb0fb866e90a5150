//! What an IOMMU driver tells the core: the hardware boundary.

use serde::Deserialize;
use softiommu_pt::FormatKind;

/// Kinds of reserved IOVA regions (Linux `IOMMU_RESV_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservedType {
    /// Must stay identity mapped.
    Direct,
    /// Like `Direct` but may be given up for device assignment.
    DirectRelaxable,
    /// Never usable.
    Reserved,
    /// A hardware MSI window.
    Msi,
    /// A window the IOMMU core maps for MSIs itself.
    SwMsi,
}

/// One reserved region of a device: `[start, start + length)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct ReservedRegion {
    /// First IOVA of the region.
    pub start: u64,
    /// Length in bytes; non-zero, and `start + length - 1` does not overflow.
    pub length: u64,
    /// What the region is for (`type` in a topology file).
    #[serde(rename = "type")]
    pub kind: ReservedType,
}

/// A driver's description of one IOMMU instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name, for `inspect`.
    pub name: String,
    /// Page-table format of its paging domains.
    pub format: FormatKind,
    /// Leaf sizes its paging domains accept (bit n = 2^n bytes).
    pub pgsize_bitmap: u64,
    /// IOVA its paging domains translate, inclusive.
    pub aperture: (u64, u64),
    /// DMA snoops CPU caches (`IOMMU_CAP_CACHE_COHERENCY`); iommufd needs it.
    pub cache_coherency: bool,
    /// Domains can enforce coherency against no-snoop DMA.
    pub enforce_cache_coherency: bool,
    /// Dirty tracking (`IOMMU_CAP_DIRTY_TRACKING`).
    pub dirty_tracking: bool,
    /// Nest-parent paging domains and nested domains.
    pub nesting: bool,
    /// MSIs are isolated per device.
    pub isolated_msi: bool,
    /// PASID width in bits (0: no PASID).
    pub max_pasid_log2: u8,
    /// `IOMMU_GET_HW_INFO` data type (`IOMMU_HW_INFO_TYPE_*`).
    pub hw_info_type: u32,
    /// `IOMMU_GET_HW_INFO` data: the bytes of the type's struct.
    pub hw_info: Vec<u8>,
    /// `IOMMU_HWPT_ALLOC` data type of its nested (stage-1) domains; 0 when
    /// it has none.
    pub nested_data_type: u32,
    /// Full size of that nested-domain payload in this ABI version.
    pub nested_data_size: usize,
    /// Minimum size of that payload: smaller is `EINVAL`.
    pub nested_data_min: usize,
    /// `IOMMU_VIOMMU_ALLOC` type of its vIOMMUs; 0 when it has none.
    pub viommu_type: u32,
    /// `IOMMU_HWPT_ALLOC` data type its paging domains take (the mock's
    /// table shape); 0 when they take none.
    pub paging_data_type: u32,
    /// Nested domains can only be made through a vIOMMU (Arm SMMUv3): over
    /// a nest parent directly, `IOMMU_HWPT_ALLOC` answers `EOPNOTSUPP`.
    pub nested_needs_viommu: bool,
}

impl DriverInfo {
    /// The iommufd selftest's mock driver: AMD v1 layout with 2 KiB pages,
    /// aperture `[1 << 24, (1 << 31) - 1]`, hw_info 0xfeedbeef with test_reg
    /// 0xdeadbeef, dirty tracking.
    pub fn mock() -> Self {
        let mut hw_info = Vec::new();
        hw_info.extend_from_slice(&0u32.to_ne_bytes());
        hw_info.extend_from_slice(&0xdead_beefu32.to_ne_bytes());
        DriverInfo {
            name: "mock".into(),
            format: FormatKind::Mock,
            pgsize_bitmap: 1 << 11,
            aperture: (1 << 24, (1 << 31) - 1),
            cache_coherency: true,
            enforce_cache_coherency: true,
            dirty_tracking: true,
            nesting: true,
            isolated_msi: true,
            max_pasid_log2: 0,
            hw_info_type: 0xfeed_beef,
            hw_info,
            nested_data_type: 0xdead,
            nested_data_size: 4,
            nested_data_min: 4,
            viommu_type: 0xdead_beef,
            nested_needs_viommu: false,
            paging_data_type: 0xdead,
        }
    }

    /// An AMD IOMMU v1 instance (48-bit IOVA, 4 KiB to 1 GiB pages).
    pub fn amd_v1() -> Self {
        DriverInfo {
            name: "amd-iommu".into(),
            format: FormatKind::AmdV1,
            pgsize_bitmap: (1 << 12) | (1 << 21) | (1 << 30),
            aperture: (0, (1 << 48) - 1),
            cache_coherency: true,
            enforce_cache_coherency: true,
            dirty_tracking: true,
            nesting: false,
            isolated_msi: true,
            max_pasid_log2: 16,
            hw_info_type: 0,
            hw_info: Vec::new(),
            nested_data_type: 0,
            nested_data_size: 0,
            nested_data_min: 0,
            viommu_type: 0,
            nested_needs_viommu: false,
            paging_data_type: 0,
        }
    }

    /// An Intel VT-d instance (second-stage tables, 48-bit IOVA).
    pub fn intel_vtd() -> Self {
        DriverInfo {
            name: "intel-iommu".into(),
            format: FormatKind::VtdSecondStage,
            pgsize_bitmap: (1 << 12) | (1 << 21) | (1 << 30),
            aperture: (0, (1 << 48) - 1),
            cache_coherency: true,
            enforce_cache_coherency: true,
            dirty_tracking: true,
            nesting: true,
            isolated_msi: true,
            max_pasid_log2: 20,
            hw_info_type: 1,
            hw_info: vec![0; 24],
            nested_data_type: 1,
            nested_data_size: 24,
            nested_data_min: 20,
            viommu_type: 0,
            nested_needs_viommu: false,
            paging_data_type: 0,
        }
    }

    /// An Arm SMMUv3 instance (stage-2 tables, 48-bit IOVA).
    pub fn arm_smmuv3() -> Self {
        DriverInfo {
            name: "arm-smmu-v3".into(),
            format: FormatKind::ArmS2,
            pgsize_bitmap: (1 << 12) | (1 << 21) | (1 << 30),
            aperture: (0, (1 << 48) - 1),
            cache_coherency: true,
            enforce_cache_coherency: false,
            dirty_tracking: false,
            nesting: true,
            isolated_msi: true,
            max_pasid_log2: 20,
            hw_info_type: 2,
            hw_info: vec![0; 40],
            nested_data_type: 2,
            nested_data_size: 16,
            nested_data_min: 16,
            viommu_type: 1,
            nested_needs_viommu: true,
            paging_data_type: 0,
        }
    }

    /// A driver by its topology-file name.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "mock" => Some(Self::mock()),
            "amd_v1" | "amd-iommu" => Some(Self::amd_v1()),
            "intel_vtd" | "intel-iommu" => Some(Self::intel_vtd()),
            "arm_smmuv3" | "arm-smmu-v3" => Some(Self::arm_smmuv3()),
            _ => None,
        }
    }
}
