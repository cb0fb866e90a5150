//! A live configuration space: reads, masked writes, and the decoded state
//! (command bits, BAR addresses, MSI, MSI-X, SR-IOV) a device model acts on.

use crate::layout::{CapOffsets, Image, EXP_OFFSET, PM_OFFSET};
use crate::regs::*;
use crate::spec::{BarKind, FunctionSpec, SpecError};

/// Why a configuration access was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The access does not lie entirely inside the space.
    #[error("config access of {len} bytes at {offset:#x} is outside the {space_len}-byte space")]
    OutOfRange {
        /// First byte asked for.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// Size of the space.
        space_len: usize,
    },
    /// The function has no SR-IOV capability.
    #[error("the function has no SR-IOV capability")]
    NoSriov,
    /// More VFs were asked for than TotalVFs.
    #[error("{requested} VFs asked for, the function has {total}")]
    TooManyVfs {
        /// NumVFs asked for.
        requested: u16,
        /// TotalVFs.
        total: u16,
    },
    /// NumVFs may not change while VF Enable is set.
    #[error("NumVFs cannot change while VFs are enabled")]
    VfsEnabled,
}

/// The MSI capability as software has programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiState {
    /// MSI Enable.
    pub enabled: bool,
    /// Message address (64-bit capable, dword aligned).
    pub address: u64,
    /// Message data; vector `n` of a multi-message allocation writes
    /// `data | n`.
    pub data: u16,
    /// Vectors the function can use (multiple message capable).
    pub vectors_capable: u8,
    /// Vectors software allocated (multiple message enable), never above
    /// `vectors_capable`.
    pub vectors_enabled: u8,
    /// Per-vector mask bits, when the capability has per-vector masking
    /// (always, in this crate's layout).
    pub mask_bits: Option<u32>,
    /// Per-vector pending bits, alongside the mask bits.
    pub pending_bits: Option<u32>,
}

/// The MSI-X capability as software has programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixState {
    /// MSI-X Enable.
    pub enabled: bool,
    /// Function Mask: every vector masked, whatever its table entry says.
    pub function_mask: bool,
    /// Vectors in the table.
    pub vectors: u16,
    /// BAR holding the vector table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending bit array.
    pub pba_bar: u8,
    /// Offset of the pending bit array in that BAR.
    pub pba_offset: u32,
}

/// A function's configuration space as a VFIO user sees it.
///
/// Invariants: `bytes`, `write_mask`, `clear_mask` and `power_on` have the
/// same length (256 or 4096); a bit is never in both masks, so a write can
/// either set it or clear it, not both; bits in neither mask change only
/// through this type's own methods (device-side events such as
/// [`ConfigSpace::set_interrupt_status`]), never through [`ConfigSpace::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSpace {
    spec: FunctionSpec,
    offsets: CapOffsets,
    bytes: Vec<u8>,
    /// Bits of each byte a write stores.
    write_mask: Vec<u8>,
    /// Bits of each byte a written 1 clears.
    clear_mask: Vec<u8>,
    /// The image as built, restored by a function-level reset.
    power_on: Vec<u8>,
    /// Function-level resets so far, by [`ConfigSpace::reset`] or by
    /// software's Initiate FLR.
    resets: u64,
}

impl ConfigSpace {
    /// Validates `spec` and builds its space at power-on values.
    pub fn new(spec: &FunctionSpec) -> Result<Self, SpecError> {
        spec.validate()?;
        let Image {
            bytes,
            write,
            clear,
        } = Image::build(spec);
        Ok(ConfigSpace {
            spec: spec.clone(),
            offsets: CapOffsets::of(spec),
            power_on: bytes.clone(),
            bytes,
            write_mask: write,
            clear_mask: clear,
            resets: 0,
        })
    }

    /// The spec this space was built from.
    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    /// Bytes in the space: 4096 for PCI Express, 256 for conventional PCI.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a configuration space has at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The byte range of an access, if it lies inside the space.
    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, ConfigError> {
        let out_of_range = ConfigError::OutOfRange {
            offset,
            len,
            space_len: self.len(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_range.clone())?;
        match start.checked_add(len) {
            Some(end) if end <= self.len() => Ok(start..end),
            _ => Err(out_of_range),
        }
    }

    /// Reads `buf.len()` bytes at `offset`, any size and alignment.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), ConfigError> {
        let range = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    /// Writes `data` at `offset`, any size and alignment. Each bit is stored
    /// if writable, cleared if write-1-to-clear and written as 1, and kept
    /// otherwise. Then the few registers whose value is more than their bits
    /// react: an MSI allocation above the capable count is cut down to it,
    /// a power state the function lacks (D1, D2) is refused, and Initiate
    /// FLR resets the function.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ConfigError> {
        let range = self.range(offset, data.len())?;
        let power_state_before = self.u16_at(PM_OFFSET + PM_CTRL) & PM_CTRL_STATE_MASK;
        for (i, &value) in range.clone().zip(data) {
            let (write, clear) = (self.write_mask[i], self.clear_mask[i]);
            self.bytes[i] = (self.bytes[i] & !write) | (value & write);
            self.bytes[i] &= !(value & clear);
        }
        let touches = |start: usize, width: usize| range.start < start + width && start < range.end;

        if touches(PM_OFFSET + PM_CTRL, 2) {
            let control = self.u16_at(PM_OFFSET + PM_CTRL);
            if matches!(control & PM_CTRL_STATE_MASK, 1 | 2) {
                let kept = (control & !PM_CTRL_STATE_MASK) | power_state_before;
                self.set_u16(PM_OFFSET + PM_CTRL, kept);
            }
        }
        if let Some(msi) = self.offsets.msi {
            if touches(msi + MSI_CONTROL, 2) {
                let control = self.u16_at(msi + MSI_CONTROL);
                let capable = (control & MSI_CONTROL_CAPABLE_MASK) >> 1;
                let enabled = (control & MSI_CONTROL_ENABLED_MASK) >> 4;
                if enabled > capable {
                    let clamped = (control & !MSI_CONTROL_ENABLED_MASK) | (capable << 4);
                    self.set_u16(msi + MSI_CONTROL, clamped);
                }
            }
        }
        if let Some(exp) = self.offsets.exp {
            if touches(exp + EXP_DEVCTL, 2)
                && self.u16_at(exp + EXP_DEVCTL) & EXP_DEVCTL_INITIATE_FLR != 0
            {
                self.reset();
            }
        }
        Ok(())
    }

    /// Function-level reset: every register back to its power-on value (the
    /// bit that asked for the reset included), as built from the spec.
    pub fn reset(&mut self) {
        self.bytes.copy_from_slice(&self.power_on);
        self.resets += 1;
    }

    /// How many function-level resets happened, so a device model can reset
    /// its own state when software initiated FLR through a config write.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let b = &self.bytes[offset..offset + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16_at(COMMAND)
    }

    /// The status register.
    pub fn status(&self) -> u16 {
        self.u16_at(STATUS)
    }

    /// Whether the function decodes its memory BARs.
    pub fn memory_enabled(&self) -> bool {
        self.command() & COMMAND_MEMORY != 0
    }

    /// Whether the function decodes its I/O BARs.
    pub fn io_enabled(&self) -> bool {
        self.command() & COMMAND_IO != 0
    }

    /// Whether the function may issue DMA and MSI writes.
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_BUS_MASTER != 0
    }

    /// Whether software disabled INTx.
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// The interrupt line register (the OS's note of the routing).
    pub fn interrupt_line(&self) -> u8 {
        self.bytes[INTERRUPT_LINE]
    }

    /// The device side: reflects whether the function asserts INTx in the
    /// status register's Interrupt Status bit (read-only to software).
    pub fn set_interrupt_status(&mut self, asserted: bool) {
        let status = self.status() & !STATUS_INTERRUPT;
        let bit = if asserted { STATUS_INTERRUPT } else { 0 };
        self.set_u16(STATUS, status | bit);
    }

    /// The power state in the PM capability: 0 for D0, 3 for D3hot.
    pub fn power_state(&self) -> u8 {
        (self.u16_at(PM_OFFSET + PM_CTRL) & PM_CTRL_STATE_MASK) as u8
    }

    /// The address programmed in BAR `index`, without its type bits; for a
    /// 64-bit BAR, both halves (ask by its lower index). `None` for a slot
    /// with no BAR or the upper half of a 64-bit BAR. While software sizes
    /// the BAR this is the size mask, as on hardware.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        self.bar_address_in(BAR0, &self.spec.bars, index)
    }

    /// The address programmed in VF BAR `index` of the SR-IOV capability
    /// (VF 0's window; VF `n`'s is `n * size` further), as
    /// [`ConfigSpace::bar_address`].
    pub fn vf_bar_address(&self, index: u8) -> Option<u64> {
        let (sriov, spec) = (self.offsets.sriov?, self.spec.sriov.as_ref()?);
        self.bar_address_in(sriov + SRIOV_VF_BAR0, &spec.vf_bars, index)
    }

    fn bar_address_in(&self, base: usize, bars: &[crate::BarSpec], index: u8) -> Option<u64> {
        let bar = bars.iter().find(|b| b.index == index)?;
        let low = self.u32_at(base + 4 * usize::from(index));
        Some(match bar.kind {
            BarKind::Io => u64::from(low & !BAR_IO_FLAG_BITS),
            BarKind::Mem32 { .. } => u64::from(low & !BAR_MEM_FLAG_BITS),
            BarKind::Mem64 { .. } => {
                let high = self.u32_at(base + 4 * usize::from(index) + 4);
                (u64::from(high) << 32) | u64::from(low & !BAR_MEM_FLAG_BITS)
            }
        })
    }

    /// The standard capability list as `(capability ID, offset)`, walked from
    /// the capabilities pointer. The walk ignores the two reserved low bits
    /// of each pointer and stops at 0, at a pointer into the header, or after
    /// as many steps as the space has room for, so it always ends.
    pub fn capabilities(&self) -> Vec<(u8, u16)> {
        let mut found = Vec::new();
        if self.status() & STATUS_CAP_LIST == 0 {
            return found;
        }
        let mut offset = usize::from(self.bytes[CAPABILITY_LIST] & !0x3);
        // 0x40..0x100 holds at most 48 four-byte capabilities.
        while offset >= 0x40 && found.len() < 48 {
            found.push((self.bytes[offset + CAP_ID], offset as u16));
            offset = usize::from(self.bytes[offset + CAP_NEXT] & !0x3);
        }
        found
    }

    /// The extended capability list from 0x100 as `(capability ID, offset)`;
    /// empty for conventional PCI and when 0x100 reads 0. Bounded like
    /// [`ConfigSpace::capabilities`].
    pub fn extended_capabilities(&self) -> Vec<(u16, u16)> {
        let mut found = Vec::new();
        if self.len() < EXPRESS_SPACE_LEN {
            return found;
        }
        let mut offset = EXT_CAP_START;
        // 0x100..0x1000 holds at most 960 four-byte capabilities.
        while offset >= EXT_CAP_START && found.len() < 960 {
            let header = self.u32_at(offset);
            if header == 0 {
                break;
            }
            found.push((header as u16, offset as u16));
            offset = (header >> 20) as usize & !0x3;
        }
        found
    }

    /// The MSI capability's programmed state, if the function has MSI.
    pub fn msi(&self) -> Option<MsiState> {
        let base = self.offsets.msi?;
        let control = self.u16_at(base + MSI_CONTROL);
        let per_vector = control & MSI_CONTROL_PER_VECTOR_MASK != 0;
        Some(MsiState {
            enabled: control & MSI_CONTROL_ENABLE != 0,
            address: (u64::from(self.u32_at(base + MSI_ADDRESS_HI)) << 32)
                | u64::from(self.u32_at(base + MSI_ADDRESS_LO)),
            data: self.u16_at(base + MSI_DATA),
            vectors_capable: 1 << ((control & MSI_CONTROL_CAPABLE_MASK) >> 1),
            vectors_enabled: 1 << ((control & MSI_CONTROL_ENABLED_MASK) >> 4),
            mask_bits: per_vector.then(|| self.u32_at(base + MSI_MASK)),
            pending_bits: per_vector.then(|| self.u32_at(base + MSI_PENDING)),
        })
    }

    /// The device side: sets or clears MSI vector `vector`'s pending bit
    /// (read-only to software). Ignored without MSI or past the capable
    /// vectors.
    pub fn set_msi_pending(&mut self, vector: u8, pending: bool) {
        let Some(base) = self.offsets.msi else { return };
        if vector >= self.spec.msi_vectors {
            return;
        }
        let bits = self.u32_at(base + MSI_PENDING) & !(1 << vector);
        self.set_u32(base + MSI_PENDING, bits | (u32::from(pending) << vector));
    }

    /// The MSI-X capability's programmed state, if the function has MSI-X.
    pub fn msix(&self) -> Option<MsixState> {
        let base = self.offsets.msix?;
        let control = self.u16_at(base + MSIX_CONTROL);
        let table = self.u32_at(base + MSIX_TABLE);
        let pba = self.u32_at(base + MSIX_PBA);
        Some(MsixState {
            enabled: control & MSIX_CONTROL_ENABLE != 0,
            function_mask: control & MSIX_CONTROL_FUNCTION_MASK != 0,
            vectors: (control & MSIX_CONTROL_TABLE_SIZE_MASK) + 1,
            table_bar: (table & MSIX_BIR_MASK) as u8,
            table_offset: table & !MSIX_BIR_MASK,
            pba_bar: (pba & MSIX_BIR_MASK) as u8,
            pba_offset: pba & !MSIX_BIR_MASK,
        })
    }

    /// NumVFs, if the function has SR-IOV.
    pub fn sriov_num_vfs(&self) -> Option<u16> {
        Some(self.u16_at(self.offsets.sriov? + SRIOV_NUM_VFS))
    }

    /// SR-IOV control register, if the function has SR-IOV.
    pub fn sriov_control(&self) -> Option<u16> {
        Some(self.u16_at(self.offsets.sriov? + SRIOV_CTRL))
    }

    /// Whether VF Enable is set (false without SR-IOV).
    pub fn sriov_vfs_enabled(&self) -> bool {
        self.sriov_control()
            .is_some_and(|c| c & SRIOV_CTRL_VF_ENABLE != 0)
    }

    /// Sets NumVFs as a PF driver does before setting VF Enable. Config
    /// writes may store any value there, as hardware does; this checked
    /// path refuses more than TotalVFs and any change while VFs are
    /// enabled.
    pub fn set_sriov_num_vfs(&mut self, n: u16) -> Result<(), ConfigError> {
        let (Some(base), Some(spec)) = (self.offsets.sriov, &self.spec.sriov) else {
            return Err(ConfigError::NoSriov);
        };
        if n > spec.total_vfs {
            return Err(ConfigError::TooManyVfs {
                requested: n,
                total: spec.total_vfs,
            });
        }
        if self.sriov_vfs_enabled() {
            return Err(ConfigError::VfsEnabled);
        }
        self.set_u16(base + SRIOV_NUM_VFS, n);
        Ok(())
    }

    /// Enables `n` VFs as Linux's `sriov_enable` does: NumVFs, then VF
    /// Enable and VF Memory Space Enable in SR-IOV control. `n == 0`
    /// disables them (control cleared, NumVFs 0).
    pub fn set_sriov_enabled(&mut self, n: u16) -> Result<(), ConfigError> {
        let base = self.offsets.sriov.ok_or(ConfigError::NoSriov)?;
        let control =
            self.u16_at(base + SRIOV_CTRL) & !(SRIOV_CTRL_VF_ENABLE | SRIOV_CTRL_VF_MEMORY);
        if n == 0 {
            self.set_u16(base + SRIOV_CTRL, control);
            self.set_u16(base + SRIOV_NUM_VFS, 0);
            return Ok(());
        }
        self.set_u16(base + SRIOV_CTRL, control);
        self.set_sriov_num_vfs(n)?;
        self.set_u16(
            base + SRIOV_CTRL,
            control | SRIOV_CTRL_VF_ENABLE | SRIOV_CTRL_VF_MEMORY,
        );
        Ok(())
    }

    /// Sets bytes at `offset` as the device does (error status bits, for
    /// one), whatever software may write there. `OutOfRange` past the end.
    pub fn set_by_device(&mut self, offset: u64, data: &[u8]) -> Result<(), ConfigError> {
        let range = self.range(offset, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }

    /// Bits of each byte a config write may set or clear: `(writable,
    /// write-1-to-clear)` for byte `offset`, `None` past the end. What is in
    /// neither is read-only to software.
    pub fn byte_masks(&self, offset: usize) -> Option<(u8, u8)> {
        Some((*self.write_mask.get(offset)?, *self.clear_mask.get(offset)?))
    }

    /// Offset of the PCI Express capability, if the function has one.
    pub fn express_offset(&self) -> Option<u16> {
        self.offsets.exp.map(|_| EXP_OFFSET as u16)
    }
}
