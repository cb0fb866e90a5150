//! Register offsets and bits of a type-0 configuration space, named after
//! what they mean.
//!
//! The values are facts of the PCI Local Bus and PCI Express Base
//! specifications (Linux spells the same facts in
//! `include/uapi/linux/pci_regs.h`). Offsets inside a capability are relative
//! to the capability's own start; [`crate::layout`] says where each
//! capability starts in this crate's spaces.

/// Size of a conventional PCI function's configuration space.
pub const CONVENTIONAL_SPACE_LEN: usize = 256;
/// Size of a PCI Express function's configuration space (extended space
/// included).
pub const EXPRESS_SPACE_LEN: usize = 4096;

/// Vendor ID (16 bits, read-only).
pub const VENDOR_ID: usize = 0x00;
/// Device ID (16 bits, read-only).
pub const DEVICE_ID: usize = 0x02;
/// Command register (16 bits).
pub const COMMAND: usize = 0x04;
/// Status register (16 bits).
pub const STATUS: usize = 0x06;
/// Revision ID (8 bits, read-only).
pub const REVISION_ID: usize = 0x08;
/// Class code: programming interface at 0x09, subclass at 0x0a, base class at
/// 0x0b (24 bits, read-only).
pub const CLASS_CODE: usize = 0x09;
/// Cache line size (8 bits; read-write, with no effect on PCI Express).
pub const CACHE_LINE_SIZE: usize = 0x0c;
/// Latency timer (8 bits; hardwired to 0 here, as PCI Express requires).
pub const LATENCY_TIMER: usize = 0x0d;
/// Header type (8 bits): 0 is a type-0 (endpoint) header; bit 7 would mean
/// multi-function.
pub const HEADER_TYPE: usize = 0x0e;
/// Built-in self test (8 bits; 0 = not capable).
pub const BIST: usize = 0x0f;
/// First of the six base address registers (32 bits each).
pub const BAR0: usize = 0x10;
/// Number of base address registers in a type-0 header (and of VF BARs in
/// SR-IOV).
pub const BAR_COUNT: u8 = 6;
/// Subsystem vendor ID (16 bits, read-only).
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
/// Subsystem ID (16 bits, read-only).
pub const SUBSYSTEM_ID: usize = 0x2e;
/// Expansion ROM base address (32 bits; absent here, reads 0).
pub const ROM_ADDRESS: usize = 0x30;
/// Capabilities pointer (8 bits): offset of the first capability.
pub const CAPABILITY_LIST: usize = 0x34;
/// Interrupt line (8 bits, read-write scratch for the OS).
pub const INTERRUPT_LINE: usize = 0x3c;
/// Interrupt pin (8 bits, read-only): 0 none, 1..=4 INTA..INTD.
pub const INTERRUPT_PIN: usize = 0x3d;

/// Command: respond to I/O space accesses.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command: respond to memory space accesses.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: the function may master the bus (issue DMA and MSI writes).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: parity error response.
pub const COMMAND_PARITY: u16 = 1 << 6;
/// Command: SERR# enable.
pub const COMMAND_SERR: u16 = 1 << 8;
/// Command: INTx emulation disabled.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Status: INTx is being asserted (set by the device, read-only).
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status: a capability list starts at [`CAPABILITY_LIST`].
pub const STATUS_CAP_LIST: u16 = 1 << 4;
/// Status: master data parity error (write 1 to clear).
pub const STATUS_MASTER_PARITY_ERROR: u16 = 1 << 8;
/// Status: signaled target abort (write 1 to clear).
pub const STATUS_SIGNALED_TARGET_ABORT: u16 = 1 << 11;
/// Status: received target abort (write 1 to clear).
pub const STATUS_RECEIVED_TARGET_ABORT: u16 = 1 << 12;
/// Status: received master abort (write 1 to clear).
pub const STATUS_RECEIVED_MASTER_ABORT: u16 = 1 << 13;
/// Status: signaled system error (write 1 to clear).
pub const STATUS_SIGNALED_SYSTEM_ERROR: u16 = 1 << 14;
/// Status: detected parity error (write 1 to clear).
pub const STATUS_DETECTED_PARITY_ERROR: u16 = 1 << 15;
/// Every write-1-to-clear error bit of the status register.
pub const STATUS_ERROR_BITS: u16 = STATUS_MASTER_PARITY_ERROR
    | STATUS_SIGNALED_TARGET_ABORT
    | STATUS_RECEIVED_TARGET_ABORT
    | STATUS_RECEIVED_MASTER_ABORT
    | STATUS_SIGNALED_SYSTEM_ERROR
    | STATUS_DETECTED_PARITY_ERROR;

/// BAR bit 0: the BAR is in I/O space.
pub const BAR_IO_SPACE: u32 = 1 << 0;
/// Memory BAR bits 2:1 = 0b10: the BAR is 64 bits wide (takes two slots).
pub const BAR_MEM_TYPE_64: u32 = 0b10 << 1;
/// Memory BAR bit 3: prefetchable.
pub const BAR_MEM_PREFETCH: u32 = 1 << 3;
/// Low bits of a memory BAR that hold its type, not its address.
pub const BAR_MEM_FLAG_BITS: u32 = 0xf;
/// Low bits of an I/O BAR that hold its type, not its address.
pub const BAR_IO_FLAG_BITS: u32 = 0x3;

/// Capability header: capability ID (8 bits).
pub const CAP_ID: usize = 0;
/// Capability header: offset of the next capability, 0 ends the list.
pub const CAP_NEXT: usize = 1;

/// Capability ID of power management.
pub const CAP_ID_PM: u8 = 0x01;
/// Capability ID of MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// Capability ID of PCI Express.
pub const CAP_ID_EXP: u8 = 0x10;
/// Capability ID of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// PM: power management capabilities (16 bits, read-only).
pub const PM_PMC: usize = 2;
/// PM: control/status (16 bits).
pub const PM_CTRL: usize = 4;
/// PM capabilities: version 3 (PCI PM 1.2).
pub const PM_PMC_VERSION_1_2: u16 = 3;
/// PM control: the power state field (D0 = 0 … D3hot = 3).
pub const PM_CTRL_STATE_MASK: u16 = 0x3;
/// PM control: going from D3hot to D0 does not reset the function.
pub const PM_CTRL_NO_SOFT_RESET: u16 = 1 << 3;
/// Length of the PM capability.
pub const PM_CAP_LEN: usize = 8;

/// MSI: message control (16 bits).
pub const MSI_CONTROL: usize = 2;
/// MSI: message address, low 32 bits.
pub const MSI_ADDRESS_LO: usize = 4;
/// MSI (64-bit form): message address, high 32 bits.
pub const MSI_ADDRESS_HI: usize = 8;
/// MSI (64-bit form): message data (16 bits).
pub const MSI_DATA: usize = 12;
/// MSI (64-bit form with per-vector masking): mask bits (32 bits).
pub const MSI_MASK: usize = 16;
/// MSI (64-bit form with per-vector masking): pending bits (32 bits).
pub const MSI_PENDING: usize = 20;
/// Length of the 64-bit MSI capability with per-vector masking.
pub const MSI_CAP_LEN: usize = 24;
/// MSI control: MSI enabled.
pub const MSI_CONTROL_ENABLE: u16 = 1 << 0;
/// MSI control: multiple message capable, log2 of the vectors (bits 3:1).
pub const MSI_CONTROL_CAPABLE_MASK: u16 = 0x7 << 1;
/// MSI control: multiple message enable, log2 of the vectors (bits 6:4).
pub const MSI_CONTROL_ENABLED_MASK: u16 = 0x7 << 4;
/// MSI control: 64-bit message address capable.
pub const MSI_CONTROL_64BIT: u16 = 1 << 7;
/// MSI control: per-vector masking capable.
pub const MSI_CONTROL_PER_VECTOR_MASK: u16 = 1 << 8;

/// MSI-X: message control (16 bits).
pub const MSIX_CONTROL: usize = 2;
/// MSI-X: table offset (bits 31:3) and BAR indicator (bits 2:0).
pub const MSIX_TABLE: usize = 4;
/// MSI-X: pending bit array offset (bits 31:3) and BAR indicator (2:0).
pub const MSIX_PBA: usize = 8;
/// Length of the MSI-X capability.
pub const MSIX_CAP_LEN: usize = 12;
/// MSI-X control: table size minus one (bits 10:0).
pub const MSIX_CONTROL_TABLE_SIZE_MASK: u16 = 0x7ff;
/// MSI-X control: every vector masked.
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// MSI-X control: MSI-X enabled.
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// MSI-X table/PBA register: the BAR indicator bits.
pub const MSIX_BIR_MASK: u32 = 0x7;
/// Bytes per MSI-X table entry.
pub const MSIX_ENTRY_LEN: u64 = 16;

/// PCI Express: capabilities register (16 bits).
pub const EXP_FLAGS: usize = 0x02;
/// PCI Express: device capabilities (32 bits).
pub const EXP_DEVCAP: usize = 0x04;
/// PCI Express: device control (16 bits).
pub const EXP_DEVCTL: usize = 0x08;
/// PCI Express: device status (16 bits).
pub const EXP_DEVSTA: usize = 0x0a;
/// PCI Express: link capabilities (32 bits).
pub const EXP_LNKCAP: usize = 0x0c;
/// PCI Express: link control (16 bits).
pub const EXP_LNKCTL: usize = 0x10;
/// PCI Express: link status (16 bits).
pub const EXP_LNKSTA: usize = 0x12;
/// PCI Express: link capabilities 2 (32 bits).
pub const EXP_LNKCAP2: usize = 0x2c;
/// PCI Express: link control 2 (16 bits).
pub const EXP_LNKCTL2: usize = 0x30;
/// Length of a version-2 PCI Express capability.
pub const EXP_CAP_LEN: usize = 0x3c;
/// PCI Express device capabilities: role-based error reporting.
pub const EXP_DEVCAP_ROLE_BASED_ERRORS: u32 = 1 << 15;
/// PCI Express device capabilities: function-level reset capable.
pub const EXP_DEVCAP_FLR: u32 = 1 << 28;
/// PCI Express device control: initiate function-level reset (reads 0).
pub const EXP_DEVCTL_INITIATE_FLR: u16 = 1 << 15;
/// PCI Express device status: the error-detected bits (write 1 to clear).
pub const EXP_DEVSTA_ERROR_BITS: u16 = 0xf;

/// Extended capability ID of SR-IOV.
pub const EXT_CAP_ID_SRIOV: u16 = 0x0010;
/// Extended capability ID of access control services.
pub const EXT_CAP_ID_ACS: u16 = 0x000d;
/// Where the extended capability list starts.
pub const EXT_CAP_START: usize = 0x100;

/// SR-IOV: capabilities (32 bits).
pub const SRIOV_CAP: usize = 0x04;
/// SR-IOV: control (16 bits).
pub const SRIOV_CTRL: usize = 0x08;
/// SR-IOV: initial VFs (16 bits).
pub const SRIOV_INITIAL_VFS: usize = 0x0c;
/// SR-IOV: total VFs (16 bits).
pub const SRIOV_TOTAL_VFS: usize = 0x0e;
/// SR-IOV: number of VFs (16 bits, read-write).
pub const SRIOV_NUM_VFS: usize = 0x10;
/// SR-IOV: first VF offset (16 bits), in routing IDs from the PF.
pub const SRIOV_VF_OFFSET: usize = 0x14;
/// SR-IOV: VF stride (16 bits), in routing IDs between VFs.
pub const SRIOV_VF_STRIDE: usize = 0x16;
/// SR-IOV: VF device ID (16 bits).
pub const SRIOV_VF_DEVICE_ID: usize = 0x1a;
/// SR-IOV: supported page sizes (32 bits, bit n = 2^(n+12) bytes).
pub const SRIOV_SUPPORTED_PAGE_SIZES: usize = 0x1c;
/// SR-IOV: system page size (32 bits, read-write).
pub const SRIOV_SYSTEM_PAGE_SIZE: usize = 0x20;
/// SR-IOV: first of six VF BARs.
pub const SRIOV_VF_BAR0: usize = 0x24;
/// Length of the SR-IOV capability.
pub const SRIOV_CAP_LEN: usize = 0x40;
/// SR-IOV control: VF enable.
pub const SRIOV_CTRL_VF_ENABLE: u16 = 1 << 0;
/// SR-IOV control: VF memory space enable.
pub const SRIOV_CTRL_VF_MEMORY: u16 = 1 << 3;
/// SR-IOV control: ARI capable hierarchy.
pub const SRIOV_CTRL_ARI: u16 = 1 << 4;

/// ACS: capability register (16 bits).
pub const ACS_CAP: usize = 0x04;
/// ACS: control register (16 bits).
pub const ACS_CTRL: usize = 0x06;
/// Length of the ACS capability without an egress control vector.
pub const ACS_CAP_LEN: usize = 8;
/// ACS: peer-to-peer request redirect.
pub const ACS_REQUEST_REDIRECT: u16 = 1 << 2;
/// ACS: peer-to-peer completion redirect.
pub const ACS_COMPLETION_REDIRECT: u16 = 1 << 3;
