//! Device models behind VFIO functions (Intel I/OAT and DSA): real devices' registers and
//! behaviour, so that unmodified user-space drivers written for the
//! hardware drive them, and every DMA they make goes through the IOMMU
//! domain their function is attached to (see [`crate::vfio::DeviceModel`]
//! for how a model runs).

pub mod dsa;
pub mod ioat;

use crate::vfio::DeviceModel;

/// The little-endian number in `bytes` (at most 8 of them), as registers
/// and descriptors hold them.
pub(crate) fn le(bytes: &[u8]) -> u64 {
    bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
}

/// The model a topology names `name` (`softiommu_iommu::DEVICE_MODELS`).
pub fn model_for(name: &str) -> Option<Box<dyn DeviceModel>> {
    match name {
        "ioat" => Some(Box::new(ioat::Ioat::new())),
        "dsa" => Some(Box::new(dsa::Dsa::new())),
        _ => None,
    }
}
