//! What a function is made of: its identity, BARs and interrupt
//! capabilities, as a device model describes it ([`FunctionSpec`]), and the
//! rules a description must follow ([`FunctionSpec::validate`]).

use serde::{Deserialize, Serialize};

use crate::regs;

/// The identity registers of a function. All of them are read-only in
/// configuration space.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciIds {
    /// Vendor ID (0x00). 0xffff is what an absent function reads as, so it is
    /// refused.
    pub vendor: u16,
    /// Device ID (0x02).
    pub device: u16,
    /// Subsystem vendor ID (0x2c).
    #[serde(default)]
    pub subsystem_vendor: u16,
    /// Subsystem ID (0x2e).
    #[serde(default)]
    pub subsystem_device: u16,
    /// 24-bit class code: base class in bits 23:16, subclass 15:8,
    /// programming interface 7:0 (0x09..=0x0b).
    pub class: u32,
    /// Revision ID (0x08).
    #[serde(default)]
    pub revision: u8,
}

/// Which address space a BAR decodes, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BarKind {
    /// A memory BAR below 4 GiB: one register, at most 2 GiB.
    Mem32 {
        /// Reads have no side effects, so the host may prefetch and merge.
        #[serde(default)]
        prefetchable: bool,
    },
    /// A memory BAR anywhere in 64-bit space: two registers, `index` holds
    /// the low half and `index + 1` the high half.
    Mem64 {
        /// Reads have no side effects, so the host may prefetch and merge.
        #[serde(default)]
        prefetchable: bool,
    },
    /// An I/O port BAR, 4 to 256 bytes.
    Io,
}

impl BarKind {
    /// Whether the BAR takes two register slots.
    pub fn is_64bit(self) -> bool {
        matches!(self, BarKind::Mem64 { .. })
    }

    /// Whether the BAR decodes memory (as opposed to I/O ports).
    pub fn is_memory(self) -> bool {
        !matches!(self, BarKind::Io)
    }
}

/// One base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarSpec {
    /// Register slot 0..=5; a 64-bit BAR takes `index` and `index + 1`.
    pub index: u8,
    /// Bytes decoded: a power of two, at least 16 for memory, 4 to 256 for
    /// I/O, at most 2 GiB for a 32-bit memory BAR.
    pub size: u64,
    /// Address space and width.
    pub kind: BarKind,
}

/// Where MSI-X keeps its vector table and pending bit array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsixSpec {
    /// Number of vectors, 1..=2048 (the table has one 16-byte entry each).
    pub vectors: u16,
    /// Index of the memory BAR that holds the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR, 8-byte aligned.
    pub table_offset: u32,
    /// Index of the memory BAR that holds the pending bit array.
    pub pba_bar: u8,
    /// Offset of the pending bit array in that BAR, 8-byte aligned.
    pub pba_offset: u32,
}

/// Single-root I/O virtualization: the virtual functions this physical
/// function can create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SriovSpec {
    /// TotalVFs (and InitialVFs): at least 1.
    pub total_vfs: u16,
    /// Device ID every VF reports.
    pub vf_device: u16,
    /// Routing-ID distance from the PF to the first VF: at least 1.
    pub first_vf_offset: u16,
    /// Routing-ID distance between consecutive VFs; non-zero when there is
    /// more than one VF.
    pub vf_stride: u16,
    /// The BARs of one VF (memory only: VFs have no I/O space). Their sizes
    /// are per VF; VF `n`'s window is `n * size` past the programmed address.
    #[serde(default)]
    pub vf_bars: Vec<BarSpec>,
    /// The MSI-X capability of each VF (its table and PBA in VF BARs).
    #[serde(default)]
    pub vf_msix: Option<MsixSpec>,
}

impl SriovSpec {
    /// What each VF of PF `pf` is: the PF's identity with the VF device
    /// ID, the VF BARs, MSI-X if the VFs have it, PCI Express; no INTx, no
    /// MSI and no SR-IOV of its own (VFs have none).
    pub fn vf_function(&self, pf: &FunctionSpec) -> FunctionSpec {
        FunctionSpec {
            ids: PciIds {
                device: self.vf_device,
                ..pf.ids
            },
            bars: self.vf_bars.clone(),
            msi_vectors: 0,
            msix: self.vf_msix,
            pcie: true,
            sriov: None,
            acs: false,
            interrupt_pin: 0,
            device_registers: Vec::new(),
        }
    }
}

/// Everything needed to build a function's configuration space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Identity registers.
    pub ids: PciIds,
    /// Base address registers; unlisted slots are unimplemented (read 0).
    #[serde(default)]
    pub bars: Vec<BarSpec>,
    /// MSI vectors: 0 for no MSI capability, else 1, 2, 4, 8, 16 or 32.
    #[serde(default)]
    pub msi_vectors: u8,
    /// The MSI-X capability, if any.
    #[serde(default)]
    pub msix: Option<MsixSpec>,
    /// A PCI Express (endpoint) function with 4 KiB of configuration space;
    /// otherwise conventional PCI with 256 bytes.
    #[serde(default)]
    pub pcie: bool,
    /// The SR-IOV extended capability, if any (needs `pcie`).
    #[serde(default)]
    pub sriov: Option<SriovSpec>,
    /// The ACS extended capability (needs `pcie`), advertising and letting
    /// software enable peer-to-peer request and completion redirect.
    #[serde(default)]
    pub acs: bool,
    /// Legacy interrupt pin: 0 none, 1..=4 INTA..INTD.
    #[serde(default)]
    pub interrupt_pin: u8,
    /// Device-specific registers in configuration space, outside every
    /// capability (vfio-pci passes such bytes straight to the device).
    #[serde(default)]
    pub device_registers: Vec<DeviceRegister>,
}

/// A device-specific configuration register: its place, power-on value and
/// which bits software writes or clears by writing 1; the device model sets
/// the rest (error status bits, for one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRegister {
    /// Offset in configuration space, aligned to `width`.
    pub offset: u16,
    /// 1, 2 or 4 bytes.
    pub width: u8,
    /// Power-on value.
    #[serde(default)]
    pub value: u32,
    /// Bits a write stores.
    #[serde(default)]
    pub writable: u32,
    /// Bits a written 1 clears; none of them in `writable`.
    #[serde(default)]
    pub write_1_to_clear: u32,
}

/// Why a [`FunctionSpec`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Vendor ID 0xffff is what config reads of an absent function return.
    #[error("vendor ID 0xffff means \"no function\"")]
    InvalidVendor,
    /// The class code has bits above bit 23.
    #[error("class code {0:#x} does not fit in 24 bits")]
    ClassTooWide(u32),
    /// A BAR index is past 5, or a 64-bit BAR starts at 5.
    #[error("BAR {index} does not fit in the six BAR slots")]
    BarIndexOutOfRange {
        /// The offending index.
        index: u8,
    },
    /// Two BARs claim the same slot (a 64-bit BAR claims two).
    #[error("BAR slot {index} is used twice")]
    BarOverlap {
        /// The slot claimed twice.
        index: u8,
    },
    /// A BAR size is not a power of two, or out of its kind's range.
    #[error("BAR {index} has invalid size {size:#x} for its kind")]
    BarSize {
        /// The BAR's index.
        index: u8,
        /// The size given.
        size: u64,
    },
    /// A VF BAR is an I/O BAR.
    #[error("VF BAR {index} is an I/O BAR; VFs have memory BARs only")]
    VfIoBar {
        /// The VF BAR's index.
        index: u8,
    },
    /// MSI vectors is not 0 or a power of two up to 32.
    #[error("{0} MSI vectors: must be 0, 1, 2, 4, 8, 16 or 32")]
    MsiVectors(u8),
    /// MSI-X vectors is 0 or above 2048.
    #[error("{0} MSI-X vectors: must be 1..=2048")]
    MsixVectors(u16),
    /// An MSI-X structure names a BAR that is not a memory BAR of the spec
    /// (or names the upper half of a 64-bit BAR).
    #[error("MSI-X {what} names BAR {bar}, which is not a memory BAR")]
    MsixBar {
        /// "table" or "PBA".
        what: &'static str,
        /// The BAR index named.
        bar: u8,
    },
    /// An MSI-X offset is not 8-byte aligned.
    #[error("MSI-X {what} offset {offset:#x} is not 8-byte aligned")]
    MsixAlignment {
        /// "table" or "PBA".
        what: &'static str,
        /// The offset given.
        offset: u32,
    },
    /// An MSI-X structure runs past the end of its BAR.
    #[error("MSI-X {what} at {offset:#x} runs past the end of BAR {bar}")]
    MsixOutsideBar {
        /// "table" or "PBA".
        what: &'static str,
        /// The BAR index.
        bar: u8,
        /// The offset given.
        offset: u32,
    },
    /// The MSI-X table and pending bit array overlap.
    #[error("the MSI-X table and PBA overlap")]
    MsixTableOverlapsPba,
    /// The interrupt pin is above 4 (INTD).
    #[error("interrupt pin {0}: must be 0 (none) or 1..=4 (INTA..INTD)")]
    InterruptPin(u8),
    /// An extended capability was asked of a conventional PCI function.
    #[error("{0} needs a PCI Express function (extended configuration space)")]
    NeedsPcie(&'static str),
    /// SR-IOV with no VFs.
    #[error("SR-IOV with 0 total VFs")]
    NoVfs,
    /// SR-IOV first VF offset 0 (the VF would be the PF itself).
    #[error("SR-IOV first VF offset 0 would make the first VF the PF")]
    VfOffsetZero,
    /// SR-IOV VF stride 0 with more than one VF.
    #[error("SR-IOV VF stride 0 with {0} VFs would give them one routing ID")]
    VfStrideZero(u16),
    /// The last VF's routing-ID distance does not fit in 16 bits.
    #[error("the last VF's routing-ID offset overflows 16 bits")]
    VfRoutingOverflow,
    /// A device register is misaligned, of a bad width, past the end of
    /// configuration space, inside a capability or the header, or has a bit
    /// both writable and write-1-to-clear.
    #[error("device register at {0:#x} is misplaced or malformed")]
    DeviceRegister(u16),
}

impl FunctionSpec {
    /// Checks every rule the configuration space relies on: BAR slots,
    /// sizes and kinds; MSI and MSI-X vector counts; MSI-X structures
    /// aligned, inside memory BARs and apart; interrupt pin; SR-IOV and ACS
    /// only on PCI Express, with VF routing IDs that fit.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.ids.vendor == 0xffff {
            return Err(SpecError::InvalidVendor);
        }
        if self.ids.class > 0x00ff_ffff {
            return Err(SpecError::ClassTooWide(self.ids.class));
        }
        validate_bars(&self.bars)?;
        if !matches!(self.msi_vectors, 0 | 1 | 2 | 4 | 8 | 16 | 32) {
            return Err(SpecError::MsiVectors(self.msi_vectors));
        }
        if let Some(msix) = &self.msix {
            validate_msix(msix, &self.bars)?;
        }
        if self.interrupt_pin > 4 {
            return Err(SpecError::InterruptPin(self.interrupt_pin));
        }
        for r in &self.device_registers {
            self.validate_device_register(r)?;
        }
        if let Some(sriov) = &self.sriov {
            if !self.pcie {
                return Err(SpecError::NeedsPcie("SR-IOV"));
            }
            validate_sriov(sriov)?;
        }
        if self.acs && !self.pcie {
            return Err(SpecError::NeedsPcie("ACS"));
        }
        Ok(())
    }
}

/// Checks slots, overlap and sizes of one set of six BAR slots.
fn validate_bars(bars: &[BarSpec]) -> Result<(), SpecError> {
    let mut used = [false; regs::BAR_COUNT as usize];
    for bar in bars {
        let slots = if bar.kind.is_64bit() { 2 } else { 1 };
        let last = bar.index.checked_add(slots - 1);
        match last {
            Some(last) if last < regs::BAR_COUNT => {}
            _ => return Err(SpecError::BarIndexOutOfRange { index: bar.index }),
        }
        for slot in bar.index..bar.index + slots {
            if std::mem::replace(&mut used[usize::from(slot)], true) {
                return Err(SpecError::BarOverlap { index: slot });
            }
        }
        let (min, max) = match bar.kind {
            BarKind::Mem32 { .. } => (16, 1 << 31),
            BarKind::Mem64 { .. } => (16, 1 << 63),
            BarKind::Io => (4, 256),
        };
        if !bar.size.is_power_of_two() || bar.size < min || bar.size > max {
            return Err(SpecError::BarSize {
                index: bar.index,
                size: bar.size,
            });
        }
    }
    Ok(())
}

/// Checks that the MSI-X table and PBA sit, aligned and apart, inside
/// memory BARs of `bars`.
fn validate_msix(msix: &MsixSpec, bars: &[BarSpec]) -> Result<(), SpecError> {
    if msix.vectors == 0 || msix.vectors > 2048 {
        return Err(SpecError::MsixVectors(msix.vectors));
    }
    let table_len = u64::from(msix.vectors) * regs::MSIX_ENTRY_LEN;
    // One pending bit per vector, in whole quadwords.
    let pba_len = u64::from(msix.vectors).div_ceil(64) * 8;
    let structures = [
        ("table", msix.table_bar, msix.table_offset, table_len),
        ("PBA", msix.pba_bar, msix.pba_offset, pba_len),
    ];
    for (what, bar, offset, len) in structures {
        let Some(spec) = bars.iter().find(|b| b.index == bar && b.kind.is_memory()) else {
            return Err(SpecError::MsixBar { what, bar });
        };
        if offset % 8 != 0 {
            return Err(SpecError::MsixAlignment { what, offset });
        }
        // u32 + at most 32 KiB cannot overflow u64.
        if u64::from(offset) + len > spec.size {
            return Err(SpecError::MsixOutsideBar { what, bar, offset });
        }
    }
    if msix.table_bar == msix.pba_bar {
        let table = u64::from(msix.table_offset)..u64::from(msix.table_offset) + table_len;
        let pba = u64::from(msix.pba_offset)..u64::from(msix.pba_offset) + pba_len;
        if table.start < pba.end && pba.start < table.end {
            return Err(SpecError::MsixTableOverlapsPba);
        }
    }
    Ok(())
}

impl FunctionSpec {
    /// Device registers live past the capabilities: from 0xc0 (the PCI
    /// Express capability ends before it) in the first 256 bytes, and past
    /// the extended capabilities above 0x100.
    fn validate_device_register(&self, r: &DeviceRegister) -> Result<(), SpecError> {
        let bad = SpecError::DeviceRegister(r.offset);
        let (offset, width) = (usize::from(r.offset), usize::from(r.width));
        let len = if self.pcie { 4096 } else { 256 };
        if !matches!(width, 1 | 2 | 4) || offset % width != 0 || offset + width > len {
            return Err(bad);
        }
        let mask = if width == 4 {
            !0
        } else {
            (1u32 << (8 * width)) - 1
        };
        if r.writable & r.write_1_to_clear != 0
            || (r.value | r.writable | r.write_1_to_clear) & !mask != 0
        {
            return Err(bad);
        }
        let ext_end = 0x100
            + if self.sriov.is_some() {
                regs::SRIOV_CAP_LEN
            } else {
                0
            }
            + if self.acs { regs::ACS_CAP_LEN } else { 0 };
        let in_ext_caps = offset < ext_end && offset + width > 0x100;
        if offset < 0xc0 || in_ext_caps || (offset >= 0x100 && ext_end == 0x100 && offset < 0x104) {
            return Err(bad);
        }
        Ok(())
    }
}

/// Checks VF counts, routing and VF BARs.
fn validate_sriov(sriov: &SriovSpec) -> Result<(), SpecError> {
    if sriov.total_vfs == 0 {
        return Err(SpecError::NoVfs);
    }
    if sriov.first_vf_offset == 0 {
        return Err(SpecError::VfOffsetZero);
    }
    if sriov.vf_stride == 0 && sriov.total_vfs > 1 {
        return Err(SpecError::VfStrideZero(sriov.total_vfs));
    }
    let last_offset = u32::from(sriov.first_vf_offset)
        + u32::from(sriov.total_vfs - 1) * u32::from(sriov.vf_stride);
    if last_offset > u32::from(u16::MAX) {
        return Err(SpecError::VfRoutingOverflow);
    }
    if let Some(io) = sriov.vf_bars.iter().find(|b| !b.kind.is_memory()) {
        return Err(SpecError::VfIoBar { index: io.index });
    }
    validate_bars(&sriov.vf_bars)?;
    if let Some(msix) = &sriov.vf_msix {
        validate_msix(msix, &sriov.vf_bars)?;
    }
    Ok(())
}
