//! Typed object ids for the library face.

/// An IOAS's object id. Ids are typed, in vm-memory's `GuestAddress`
/// style, so that `attach(device, pt)` cannot take its arguments swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoasId(pub u32);

/// A HWPT's object id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HwptId(pub u32);

/// A bound device's object id (Linux's `dev_id`; not the machine's
/// [`softiommu_iommu::DeviceId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevId(pub u32);

/// What a device attaches to: an IOAS (through an automatic HWPT) or a HWPT
/// (Linux's `pt_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PtId(pub u32);

impl From<IoasId> for PtId {
    fn from(id: IoasId) -> Self {
        PtId(id.0)
    }
}

impl From<HwptId> for PtId {
    fn from(id: HwptId) -> Self {
        PtId(id.0)
    }
}

/// Any object's id, for [`Iommufd::destroy`](super::Iommufd::destroy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub u32);

macro_rules! object_id_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ObjectId {
            fn from(id: $t) -> Self {
                ObjectId(id.0)
            }
        }
    )*};
}
object_id_from!(IoasId, HwptId, DevId, PtId);

macro_rules! display_as_number {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_as_number!(IoasId, HwptId, DevId, PtId, ObjectId);
