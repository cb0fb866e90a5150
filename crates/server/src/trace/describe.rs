//! Names and decoded fields of the calls the trace shows: every iommufd
//! command, the selftest's operations, and the VFIO ioctls of containers,
//! groups and device files. Fields are read from the argument struct as it
//! was after the call, so outputs (`out_*`, an allocated IOVA) show what the
//! program got back.

use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{op, IommuTestCmd};
use softiommu_uapi::vfio::*;
use zerocopy::{FromBytes, IntoBytes};

/// What kind of file a call was made on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// `/dev/iommu`.
    Iommufd,
    /// `/dev/vfio/vfio`, the legacy container (an iommufd underneath).
    VfioContainer,
    /// `/dev/vfio/N`, a group.
    VfioGroup,
    /// A VFIO device file (`/dev/vfio/devices/vfioN` or from a group).
    VfioDevice,
}

impl FileKind {
    /// The name the trace shows.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Iommufd => "iommufd",
            FileKind::VfioContainer => "vfio-container",
            FileKind::VfioGroup => "vfio-group",
            FileKind::VfioDevice => "vfio-device",
        }
    }
}

/// How a field's value is written.
#[derive(Clone, Copy, Debug)]
pub enum Show {
    /// A count or an id, in decimal.
    Dec,
    /// An address or a length, in hex.
    Hex,
    /// Bits by name (`A|B`, unknown bits in hex).
    Flags(&'static [(u64, &'static str)]),
    /// One value by name (unknown ones in decimal).
    Enum(&'static [(u64, &'static str)]),
}

/// A decoded field's value: its raw number and how it is written, so
/// that decoding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    /// The field's number.
    pub raw: u64,
    /// How it is written.
    pub show: Show,
}

impl PartialEq for Show {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}
impl Eq for Show {}

impl Value {
    /// A number written in decimal.
    pub fn number(raw: u64) -> Value {
        Value {
            raw,
            show: Show::Dec,
        }
    }

    /// A number written in hex.
    pub fn hex(raw: u64) -> Value {
        Value {
            raw,
            show: Show::Hex,
        }
    }

    /// Whether JSON writes it as a number (else as a string).
    pub fn is_number(&self) -> bool {
        match self.show {
            Show::Dec => true,
            Show::Enum(names) => !names.iter().any(|(v, _)| *v == self.raw),
            Show::Hex | Show::Flags(_) => false,
        }
    }
}

/// Appends `v` in decimal: the writer formats every field, and
/// `core::fmt` costs several times this.
pub fn push_dec(line: &mut String, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        line.push(d as char);
    }
}

/// Appends `v` as `0x…` in lower-case hex.
pub fn push_hex(line: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let nibbles = if v == 0 {
        1
    } else {
        (67 - v.leading_zeros() as usize) / 4
    };
    line.push_str("0x");
    for i in (0..nibbles).rev() {
        line.push(DIGITS[((v >> (4 * i)) & 0xf) as usize] as char);
    }
}

impl Value {
    /// Appends the value as the trace writes it.
    pub fn push_to(&self, line: &mut String) {
        let raw = self.raw;
        match self.show {
            Show::Dec => push_dec(line, raw),
            Show::Hex => push_hex(line, raw),
            Show::Flags(names) => {
                let mut left = raw;
                let mut first = true;
                for &(bit, name) in names {
                    if bit != 0 && raw & bit == bit {
                        if !first {
                            line.push('|');
                        }
                        line.push_str(name);
                        left &= !bit;
                        first = false;
                    }
                }
                if left != 0 || first {
                    if !first {
                        line.push('|');
                    }
                    push_hex(line, left);
                }
            }
            Show::Enum(names) => match names.iter().find(|(v, _)| *v == raw) {
                Some((_, name)) => line.push_str(name),
                None => push_dec(line, raw),
            },
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

/// One field: its name, how to read it from the struct, how to show it.
struct Field {
    name: &'static str,
    get: fn(&[u8]) -> u64,
    show: Show,
}

/// A call as the trace shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Described {
    /// The ioctl's name.
    pub name: Name,
    /// Its fields, in struct order.
    pub fields: Vec<(&'static str, Value)>,
}

/// An ioctl's name: `IOMMU_IOAS_MAP`, `IOMMU_TEST_CMD(MOCK_DOMAIN)`,
/// `ioctl(0x3bff)` for a number that names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    /// A named ioctl.
    Known(&'static str),
    /// The selftest's command with its operation's name.
    Test(&'static str),
    /// The selftest's command with an operation that has no name.
    TestNumber(u32),
    /// A request number that names nothing.
    Unknown(u32),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Known(n) => f.write_str(n),
            Name::Test(op) => write!(f, "IOMMU_TEST_CMD({op})"),
            Name::TestNumber(op) => write!(f, "IOMMU_TEST_CMD({op})"),
            Name::Unknown(request) => write!(f, "ioctl({request:#x})"),
        }
    }
}

/// `T` from the front of `bytes`, zero-extended when they are shorter.
fn read<T: FromBytes + IntoBytes>(bytes: &[u8]) -> T {
    let mut value = T::new_zeroed();
    let out = value.as_mut_bytes();
    let n = out.len().min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
    value
}

/// Fields of struct `$ty`: `name: Show`.
macro_rules! fields {
    ($ty:ty { $($f:ident : $show:expr),* $(,)? }) => {
        &[$(Field {
            name: stringify!($f),
            get: |b| read::<$ty>(b).$f as u64,
            show: $show,
        }),*]
    };
}

const MAP_FLAGS: Show = Show::Flags(&[
    (IOMMU_IOAS_MAP_FIXED_IOVA as u64, "FIXED_IOVA"),
    (IOMMU_IOAS_MAP_WRITEABLE as u64, "WRITEABLE"),
    (IOMMU_IOAS_MAP_READABLE as u64, "READABLE"),
]);
const HWPT_FLAGS: Show = Show::Flags(&[
    (1 << 0, "NEST_PARENT"),
    (1 << 1, "DIRTY_TRACKING"),
    (1 << 2, "FAULT_ID_VALID"),
    (1 << 3, "PASID"),
]);
const DMA_MAP_FLAGS: Show = Show::Flags(&[
    (VFIO_DMA_MAP_FLAG_READ as u64, "READ"),
    (VFIO_DMA_MAP_FLAG_WRITE as u64, "WRITE"),
    (VFIO_DMA_MAP_FLAG_VADDR as u64, "VADDR"),
]);
const DMA_UNMAP_FLAGS: Show = Show::Flags(&[
    (
        VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP as u64,
        "GET_DIRTY_BITMAP",
    ),
    (VFIO_DMA_UNMAP_FLAG_ALL as u64, "ALL"),
    (VFIO_DMA_UNMAP_FLAG_VADDR as u64, "VADDR"),
]);

/// The name and fields of an iommufd command.
fn iommufd_command(nr: u8) -> Option<(&'static str, &'static [Field])> {
    Some(match nr {
        nr::DESTROY => ("IOMMU_DESTROY", fields!(IommuDestroy { id: Show::Dec })),
        nr::IOAS_ALLOC => (
            "IOMMU_IOAS_ALLOC",
            fields!(IommuIoasAlloc {
                flags: Show::Hex,
                out_ioas_id: Show::Dec
            }),
        ),
        nr::IOAS_ALLOW_IOVAS => (
            "IOMMU_IOAS_ALLOW_IOVAS",
            fields!(IommuIoasAllowIovas {
                ioas_id: Show::Dec,
                num_iovas: Show::Dec,
                allowed_iovas: Show::Hex,
            }),
        ),
        nr::IOAS_COPY => (
            "IOMMU_IOAS_COPY",
            fields!(IommuIoasCopy {
                flags: MAP_FLAGS,
                dst_ioas_id: Show::Dec,
                src_ioas_id: Show::Dec,
                length: Show::Hex,
                dst_iova: Show::Hex,
                src_iova: Show::Hex,
            }),
        ),
        nr::IOAS_IOVA_RANGES => (
            "IOMMU_IOAS_IOVA_RANGES",
            fields!(IommuIoasIovaRanges {
                ioas_id: Show::Dec,
                num_iovas: Show::Dec,
                allowed_iovas: Show::Hex,
                out_iova_alignment: Show::Hex,
            }),
        ),
        nr::IOAS_MAP => (
            "IOMMU_IOAS_MAP",
            fields!(IommuIoasMap {
                flags: MAP_FLAGS,
                ioas_id: Show::Dec,
                user_va: Show::Hex,
                length: Show::Hex,
                iova: Show::Hex,
            }),
        ),
        nr::IOAS_MAP_FILE => (
            "IOMMU_IOAS_MAP_FILE",
            fields!(IommuIoasMapFile {
                flags: MAP_FLAGS,
                ioas_id: Show::Dec,
                fd: Show::Dec,
                start: Show::Hex,
                length: Show::Hex,
                iova: Show::Hex,
            }),
        ),
        nr::IOAS_UNMAP => (
            "IOMMU_IOAS_UNMAP",
            fields!(IommuIoasUnmap {
                ioas_id: Show::Dec,
                iova: Show::Hex,
                length: Show::Hex
            }),
        ),
        nr::OPTION => (
            "IOMMU_OPTION",
            fields!(IommuOption {
                option_id: Show::Enum(&[(0, "RLIMIT_MODE"), (1, "HUGE_PAGES")]),
                op: Show::Enum(&[(0, "SET"), (1, "GET")]),
                object_id: Show::Dec,
                val64: Show::Dec,
            }),
        ),
        nr::VFIO_IOAS => (
            "IOMMU_VFIO_IOAS",
            fields!(IommuVfioIoas {
                ioas_id: Show::Dec,
                op: Show::Enum(&[(0, "GET"), (1, "SET"), (2, "CLEAR")]),
            }),
        ),
        nr::HWPT_ALLOC => (
            "IOMMU_HWPT_ALLOC",
            fields!(IommuHwptAlloc {
                flags: HWPT_FLAGS,
                dev_id: Show::Dec,
                pt_id: Show::Dec,
                out_hwpt_id: Show::Dec,
                data_type: Show::Dec,
                data_len: Show::Dec,
                data_uptr: Show::Hex,
                fault_id: Show::Dec,
            }),
        ),
        nr::GET_HW_INFO => (
            "IOMMU_GET_HW_INFO",
            fields!(IommuHwInfo {
                flags: Show::Hex,
                dev_id: Show::Dec,
                data_len: Show::Dec,
                data_uptr: Show::Hex,
                data_type: Show::Dec,
                out_max_pasid_log2: Show::Dec,
                out_capabilities: Show::Hex,
            }),
        ),
        nr::HWPT_SET_DIRTY_TRACKING => (
            "IOMMU_HWPT_SET_DIRTY_TRACKING",
            fields!(IommuHwptSetDirtyTracking {
                flags: Show::Flags(&[(1, "ENABLE")]),
                hwpt_id: Show::Dec,
            }),
        ),
        nr::HWPT_GET_DIRTY_BITMAP => (
            "IOMMU_HWPT_GET_DIRTY_BITMAP",
            fields!(IommuHwptGetDirtyBitmap {
                hwpt_id: Show::Dec,
                flags: Show::Flags(&[(1, "NO_CLEAR")]),
                iova: Show::Hex,
                length: Show::Hex,
                page_size: Show::Hex,
                data: Show::Hex,
            }),
        ),
        nr::HWPT_INVALIDATE => (
            "IOMMU_HWPT_INVALIDATE",
            fields!(IommuHwptInvalidate {
                hwpt_id: Show::Dec,
                data_uptr: Show::Hex,
                data_type: Show::Dec,
                entry_len: Show::Dec,
                entry_num: Show::Dec,
            }),
        ),
        nr::FAULT_QUEUE_ALLOC => (
            "IOMMU_FAULT_QUEUE_ALLOC",
            fields!(IommuFaultAlloc {
                flags: Show::Hex,
                out_fault_id: Show::Dec,
                out_fault_fd: Show::Dec,
            }),
        ),
        nr::VIOMMU_ALLOC => (
            "IOMMU_VIOMMU_ALLOC",
            fields!(IommuViommuAlloc {
                flags: Show::Hex,
                viommu_type: Show::Dec,
                dev_id: Show::Dec,
                hwpt_id: Show::Dec,
                out_viommu_id: Show::Dec,
                data_len: Show::Dec,
                data_uptr: Show::Hex,
            }),
        ),
        nr::VDEVICE_ALLOC => (
            "IOMMU_VDEVICE_ALLOC",
            fields!(IommuVdeviceAlloc {
                viommu_id: Show::Dec,
                dev_id: Show::Dec,
                out_vdevice_id: Show::Dec,
                virt_id: Show::Hex,
            }),
        ),
        nr::IOAS_CHANGE_PROCESS => ("IOMMU_IOAS_CHANGE_PROCESS", &[]),
        nr::VEVENTQ_ALLOC => (
            "IOMMU_VEVENTQ_ALLOC",
            fields!(IommuVeventqAlloc {
                flags: Show::Hex,
                viommu_id: Show::Dec,
                veventq_type: Show::Dec,
                veventq_depth: Show::Dec,
                out_veventq_id: Show::Dec,
                out_veventq_fd: Show::Dec,
            }),
        ),
        nr::HW_QUEUE_ALLOC => (
            "IOMMU_HW_QUEUE_ALLOC",
            fields!(IommuHwQueueAlloc {
                flags: Show::Hex,
                viommu_id: Show::Dec,
                hw_queue_type: Show::Dec,
                index: Show::Dec,
                out_hw_queue_id: Show::Dec,
                nesting_parent_iova: Show::Hex,
                length: Show::Hex,
            }),
        ),
        nr::TEST_CMD => ("IOMMU_TEST_CMD", fields!(IommuTestCmd { id: Show::Dec })),
        _ => return None,
    })
}

/// The selftest operation's name.
fn test_op_name(test_op: u32) -> Option<&'static str> {
    Some(match test_op {
        op::ADD_RESERVED => "ADD_RESERVED",
        op::MOCK_DOMAIN => "MOCK_DOMAIN",
        op::MD_CHECK_MAP => "MD_CHECK_MAP",
        op::MD_CHECK_REFS => "MD_CHECK_REFS",
        op::CREATE_ACCESS => "CREATE_ACCESS",
        op::DESTROY_ACCESS_PAGES => "DESTROY_ACCESS_PAGES",
        op::ACCESS_PAGES => "ACCESS_PAGES",
        op::ACCESS_RW => "ACCESS_RW",
        op::SET_TEMP_MEMORY_LIMIT => "SET_TEMP_MEMORY_LIMIT",
        op::MOCK_DOMAIN_REPLACE => "MOCK_DOMAIN_REPLACE",
        op::ACCESS_REPLACE_IOAS => "ACCESS_REPLACE_IOAS",
        op::MOCK_DOMAIN_FLAGS => "MOCK_DOMAIN_FLAGS",
        op::DIRTY => "DIRTY",
        op::MD_CHECK_IOTLB => "MD_CHECK_IOTLB",
        op::TRIGGER_IOPF => "TRIGGER_IOPF",
        op::DEV_CHECK_CACHE => "DEV_CHECK_CACHE",
        op::TRIGGER_VEVENT => "TRIGGER_VEVENT",
        op::PASID_ATTACH => "PASID_ATTACH",
        op::PASID_REPLACE => "PASID_REPLACE",
        op::PASID_DETACH => "PASID_DETACH",
        op::PASID_CHECK_HWPT => "PASID_CHECK_HWPT",
        op::DMABUF_GET => "DMABUF_GET",
        op::DMABUF_REVOKE => "DMABUF_REVOKE",
        _ => return None,
    })
}

/// The VFIO ioctls of a container (also served on an iommufd).
fn container_command(request: u32) -> Option<(&'static str, &'static [Field])> {
    Some(match request {
        VFIO_GET_API_VERSION => ("VFIO_GET_API_VERSION", &[]),
        VFIO_CHECK_EXTENSION => ("VFIO_CHECK_EXTENSION", &[]),
        VFIO_SET_IOMMU => ("VFIO_SET_IOMMU", &[]),
        VFIO_IOMMU_GET_INFO => (
            "VFIO_IOMMU_GET_INFO",
            fields!(VfioIommuType1Info {
                argsz: Show::Dec,
                flags: Show::Hex,
                iova_pgsizes: Show::Hex,
            }),
        ),
        VFIO_IOMMU_MAP_DMA => (
            "VFIO_IOMMU_MAP_DMA",
            fields!(VfioIommuType1DmaMap {
                flags: DMA_MAP_FLAGS,
                vaddr: Show::Hex,
                iova: Show::Hex,
                size: Show::Hex,
            }),
        ),
        VFIO_IOMMU_UNMAP_DMA => (
            "VFIO_IOMMU_UNMAP_DMA",
            fields!(VfioIommuType1DmaUnmap {
                flags: DMA_UNMAP_FLAGS,
                iova: Show::Hex,
                size: Show::Hex,
            }),
        ),
        VFIO_IOMMU_DIRTY_PAGES => ("VFIO_IOMMU_DIRTY_PAGES", &[]),
        _ => return None,
    })
}

/// The VFIO ioctls of a group.
fn group_command(request: u32) -> Option<(&'static str, &'static [Field])> {
    Some(match request {
        VFIO_GET_API_VERSION => ("VFIO_GET_API_VERSION", &[]),
        VFIO_GROUP_GET_STATUS => ("VFIO_GROUP_GET_STATUS", &[]),
        VFIO_GROUP_SET_CONTAINER => ("VFIO_GROUP_SET_CONTAINER", &[]),
        VFIO_GROUP_UNSET_CONTAINER => ("VFIO_GROUP_UNSET_CONTAINER", &[]),
        VFIO_GROUP_GET_DEVICE_FD => ("VFIO_GROUP_GET_DEVICE_FD", &[]),
        _ => return None,
    })
}

/// The VFIO ioctls of a device file.
fn device_command(request: u32) -> Option<(&'static str, &'static [Field])> {
    Some(match request {
        VFIO_DEVICE_GET_INFO => (
            "VFIO_DEVICE_GET_INFO",
            fields!(VfioDeviceInfo {
                flags: Show::Hex,
                num_regions: Show::Dec,
                num_irqs: Show::Dec,
            }),
        ),
        VFIO_DEVICE_GET_REGION_INFO => (
            "VFIO_DEVICE_GET_REGION_INFO",
            fields!(VfioRegionInfo {
                index: Show::Dec,
                flags: Show::Hex,
                size: Show::Hex,
                offset: Show::Hex,
            }),
        ),
        VFIO_DEVICE_GET_IRQ_INFO => (
            "VFIO_DEVICE_GET_IRQ_INFO",
            fields!(VfioIrqInfo {
                index: Show::Dec,
                flags: Show::Hex,
                count: Show::Dec
            }),
        ),
        VFIO_DEVICE_SET_IRQS => (
            "VFIO_DEVICE_SET_IRQS",
            fields!(VfioIrqSet {
                flags: Show::Hex,
                index: Show::Dec,
                start: Show::Dec,
                count: Show::Dec,
            }),
        ),
        VFIO_DEVICE_RESET => ("VFIO_DEVICE_RESET", &[]),
        VFIO_DEVICE_GET_PCI_HOT_RESET_INFO => ("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", &[]),
        VFIO_DEVICE_PCI_HOT_RESET => ("VFIO_DEVICE_PCI_HOT_RESET", &[]),
        VFIO_DEVICE_FEATURE => ("VFIO_DEVICE_FEATURE", &[]),
        VFIO_DEVICE_BIND_IOMMUFD => (
            "VFIO_DEVICE_BIND_IOMMUFD",
            fields!(VfioDeviceBindIommufd {
                flags: Show::Hex,
                iommufd: Show::Dec,
                out_devid: Show::Dec,
            }),
        ),
        VFIO_DEVICE_ATTACH_IOMMUFD_PT => (
            "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            fields!(VfioDeviceAttachIommufdPt {
                flags: Show::Hex,
                pt_id: Show::Dec,
                pasid: Show::Dec,
            }),
        ),
        VFIO_DEVICE_DETACH_IOMMUFD_PT => (
            "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            fields!(VfioDeviceDetachIommufdPt {
                flags: Show::Hex,
                pasid: Show::Dec
            }),
        ),
        _ => return None,
    })
}

/// The size of the struct whose fields [`describe`] reads for `request` on
/// a `kind` file (0 when it shows none): how much of the argument a
/// transport should keep for the trace.
pub fn struct_size(kind: FileKind, request: u32) -> usize {
    match lookup(kind, request) {
        Some((_, fields)) if !fields.is_empty() => match kind {
            FileKind::Iommufd | FileKind::VfioContainer
                if request & !0xff == softiommu_uapi::ioctl::iommufd_request(0)
                    && (request & 0xff) >= 0x80 =>
            {
                softiommu_uapi::command_info((request & 0xff) as u8)
                    .ok()
                    .flatten()
                    .map_or(0, |i| i.size)
            }
            _ => 64,
        },
        _ => 0,
    }
}

fn lookup(kind: FileKind, request: u32) -> Option<(&'static str, &'static [Field])> {
    let iommufd = request & !0xff == softiommu_uapi::ioctl::iommufd_request(0);
    match kind {
        FileKind::Iommufd | FileKind::VfioContainer if iommufd && (request & 0xff) >= 0x80 => {
            iommufd_command((request & 0xff) as u8)
        }
        FileKind::Iommufd | FileKind::VfioContainer => container_command(request),
        FileKind::VfioGroup => group_command(request),
        FileKind::VfioDevice => device_command(request),
    }
}

/// How the trace reads `request` on a `kind` file: its name and its
/// fields, read from the struct when asked, so that showing a call
/// allocates nothing.
#[derive(Clone, Copy)]
pub struct Layout {
    name: &'static str,
    fields: &'static [Field],
}

impl Layout {
    /// The layout of `request` on a `kind` file; `None` for a request
    /// that names nothing.
    pub fn of(kind: FileKind, request: u32) -> Option<Layout> {
        lookup(kind, request).map(|(name, fields)| Layout { name, fields })
    }

    /// The ioctl's name; the selftest's command is named with its
    /// operation, read from `bytes`.
    pub fn name(&self, bytes: Option<&[u8]>) -> Name {
        match bytes {
            Some(bytes) if self.name == "IOMMU_TEST_CMD" => {
                let test_op = read::<IommuTestCmd>(bytes).op;
                match test_op_name(test_op) {
                    Some(op) => Name::Test(op),
                    None => Name::TestNumber(test_op),
                }
            }
            _ => Name::Known(self.name),
        }
    }

    /// Whether the struct has fields the trace shows.
    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Runs `f` on each field of the struct `bytes`, in struct order.
    pub fn each(&self, bytes: &[u8], mut f: impl FnMut(&'static str, Value)) {
        for field in self.fields {
            f(field.name, field.value(bytes));
        }
    }

    /// Runs `f` on each field whose value in `after` differs from its
    /// value in `before`, with its value in `after`.
    pub fn each_changed(
        &self,
        before: &[u8],
        after: &[u8],
        mut f: impl FnMut(&'static str, Value),
    ) {
        for field in self.fields {
            let new = field.value(after);
            if new != field.value(before) {
                f(field.name, new);
            }
        }
    }
}

impl Field {
    fn value(&self, bytes: &[u8]) -> Value {
        Value {
            raw: (self.get)(bytes),
            show: self.show,
        }
    }
}

/// `request` on a `kind` file, its fields read from `bytes` (the argument
/// struct after the call; `None` when it was not kept, or the argument is
/// an integer).
pub fn describe(kind: FileKind, request: u32, bytes: Option<&[u8]>) -> Described {
    let Some(layout) = Layout::of(kind, request) else {
        return Described {
            name: Name::Unknown(request),
            fields: Vec::new(),
        };
    };
    let mut fields = Vec::new();
    if let Some(bytes) = bytes {
        layout.each(bytes, |name, value| fields.push((name, value)));
    }
    Described {
        name: layout.name(bytes),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softiommu_uapi::ioctl::*;
    use zerocopy::IntoBytes;

    #[test]
    fn a_map_shows_its_flags_by_name_and_its_addresses_in_hex() {
        let map = IommuIoasMap {
            size: 40,
            flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | 1 << 7,
            ioas_id: 2,
            user_va: 0x7f00_0000_1000,
            length: 0x1000,
            iova: 0x10_0000,
            ..Default::default()
        };
        let d = describe(FileKind::Iommufd, IOMMU_IOAS_MAP, Some(map.as_bytes()));
        assert_eq!(d.name.to_string(), "IOMMU_IOAS_MAP");
        let text: Vec<String> = d.fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(
            text,
            [
                "flags=FIXED_IOVA|READABLE|0x80",
                "ioas_id=2",
                "user_va=0x7f0000001000",
                "length=0x1000",
                "iova=0x100000"
            ]
        );
        assert_eq!(struct_size(FileKind::Iommufd, IOMMU_IOAS_MAP), 40);
    }

    #[test]
    fn numbers_are_written_as_core_fmt_would() {
        for v in [0, 1, 9, 10, 15, 16, 255, 4096, 0x7f4a_9936_2000, u64::MAX] {
            let (mut dec, mut hex) = (String::new(), String::new());
            push_dec(&mut dec, v);
            push_hex(&mut hex, v);
            assert_eq!(dec, format!("{v}"));
            assert_eq!(hex, format!("{v:#x}"));
        }
    }

    #[test]
    fn unknown_requests_and_kept_out_structs_still_have_a_name() {
        let d = describe(FileKind::Iommufd, 0x3bff, None);
        assert_eq!(d.name.to_string(), "ioctl(0x3bff)");
        let d = describe(FileKind::VfioDevice, VFIO_DEVICE_RESET, None);
        assert_eq!(d.name.to_string(), "VFIO_DEVICE_RESET");
        // The same number means another ioctl on another kind of file.
        let on_container = describe(FileKind::VfioContainer, VFIO_IOMMU_GET_INFO, None);
        let on_device = describe(FileKind::VfioDevice, VFIO_IOMMU_GET_INFO, None);
        assert_eq!(on_container.name.to_string(), "VFIO_IOMMU_GET_INFO");
        assert_eq!(
            on_device.name.to_string(),
            "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO"
        );
        let test = IommuTestCmd {
            size: 4,
            op: op::MOCK_DOMAIN,
            id: 3,
            ..Default::default()
        };
        let d = describe(FileKind::Iommufd, IOMMU_TEST_CMD, Some(test.as_bytes()));
        assert_eq!(d.name.to_string(), "IOMMU_TEST_CMD(MOCK_DOMAIN)");
        assert_eq!(d.fields, [("id", Value::number(3))]);
    }
}
