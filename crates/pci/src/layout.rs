//! Where each structure sits, and the power-on image a [`FunctionSpec`]
//! builds: the register values plus, for every byte, which bits software may
//! write and which it clears by writing 1.
//!
//! Capabilities sit at fixed offsets whether or not their neighbours exist,
//! so a given capability is always found at the same place; only the chain
//! of next pointers changes.

use crate::regs::*;
use crate::spec::{BarKind, BarSpec, FunctionSpec};

/// Offset of the power-management capability (always present, first).
pub const PM_OFFSET: usize = 0x40;
/// Offset of the MSI capability (64-bit address, per-vector masking).
pub const MSI_OFFSET: usize = 0x50;
/// Offset of the MSI-X capability.
pub const MSIX_OFFSET: usize = 0x70;
/// Offset of the PCI Express capability (version 2, endpoint).
pub const EXP_OFFSET: usize = 0x80;
/// Offset of the SR-IOV extended capability when the spec has one.
pub const SRIOV_OFFSET: usize = EXT_CAP_START;

/// Offset of the ACS extended capability: right after SR-IOV, or first in
/// the extended list without it.
pub fn acs_offset(spec: &FunctionSpec) -> usize {
    if spec.sriov.is_some() {
        SRIOV_OFFSET + SRIOV_CAP_LEN
    } else {
        EXT_CAP_START
    }
}

/// The offsets of the capabilities a spec has; `None` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapOffsets {
    pub(crate) msi: Option<usize>,
    pub(crate) msix: Option<usize>,
    pub(crate) exp: Option<usize>,
    pub(crate) sriov: Option<usize>,
}

impl CapOffsets {
    pub(crate) fn of(spec: &FunctionSpec) -> Self {
        CapOffsets {
            msi: (spec.msi_vectors != 0).then_some(MSI_OFFSET),
            msix: spec.msix.is_some().then_some(MSIX_OFFSET),
            exp: spec.pcie.then_some(EXP_OFFSET),
            sriov: spec.sriov.is_some().then_some(SRIOV_OFFSET),
        }
    }
}

/// A configuration space under construction. The three vectors have the
/// same length; `write[i]` holds the bits of byte `i` a write may change,
/// `clear[i]` the bits a written 1 clears. No bit is in both.
pub(crate) struct Image {
    pub(crate) bytes: Vec<u8>,
    pub(crate) write: Vec<u8>,
    pub(crate) clear: Vec<u8>,
}

impl Image {
    fn new(len: usize) -> Self {
        Image {
            bytes: vec![0; len],
            write: vec![0; len],
            clear: vec![0; len],
        }
    }

    /// Sets `width` little-endian bytes at `offset`: value, writable bits and
    /// write-1-to-clear bits.
    fn set(&mut self, offset: usize, width: usize, value: u32, write: u32, clear: u32) {
        let (value, write, clear) = (
            value.to_le_bytes(),
            write.to_le_bytes(),
            clear.to_le_bytes(),
        );
        self.bytes[offset..offset + width].copy_from_slice(&value[..width]);
        self.write[offset..offset + width].copy_from_slice(&write[..width]);
        self.clear[offset..offset + width].copy_from_slice(&clear[..width]);
    }

    fn ro8(&mut self, offset: usize, value: u8) {
        self.set(offset, 1, value.into(), 0, 0);
    }

    fn ro16(&mut self, offset: usize, value: u16) {
        self.set(offset, 2, value.into(), 0, 0);
    }

    fn ro32(&mut self, offset: usize, value: u32) {
        self.set(offset, 4, value, 0, 0);
    }

    fn reg16(&mut self, offset: usize, value: u16, write: u16, clear: u16) {
        self.set(offset, 2, value.into(), write.into(), clear.into());
    }

    fn reg32(&mut self, offset: usize, value: u32, write: u32) {
        self.set(offset, 4, value, write, 0);
    }

    /// Builds the power-on image of a validated spec.
    pub(crate) fn build(spec: &FunctionSpec) -> Self {
        let len = if spec.pcie {
            EXPRESS_SPACE_LEN
        } else {
            CONVENTIONAL_SPACE_LEN
        };
        let mut image = Image::new(len);
        image.header(spec);
        image.bars(BAR0, &spec.bars);
        image.capabilities(spec);
        image.extended_capabilities(spec);
        for r in &spec.device_registers {
            image.set(
                usize::from(r.offset),
                usize::from(r.width),
                r.value,
                r.writable,
                r.write_1_to_clear,
            );
        }
        image
    }

    fn header(&mut self, spec: &FunctionSpec) {
        let ids = &spec.ids;
        self.ro16(VENDOR_ID, ids.vendor);
        self.ro16(DEVICE_ID, ids.device);
        let command_writable = COMMAND_IO
            | COMMAND_MEMORY
            | COMMAND_BUS_MASTER
            | COMMAND_PARITY
            | COMMAND_SERR
            | COMMAND_INTX_DISABLE;
        self.reg16(COMMAND, 0, command_writable, 0);
        self.reg16(STATUS, STATUS_CAP_LIST, 0, STATUS_ERROR_BITS);
        self.ro8(REVISION_ID, ids.revision);
        let class = ids.class.to_le_bytes();
        self.bytes[CLASS_CODE..CLASS_CODE + 3].copy_from_slice(&class[..3]);
        self.set(CACHE_LINE_SIZE, 1, 0, 0xff, 0);
        // Latency timer, header type (single-function type 0) and BIST (not
        // capable) stay 0, as do CardBus CIS and the absent ROM BAR.
        self.ro16(SUBSYSTEM_VENDOR_ID, ids.subsystem_vendor);
        self.ro16(SUBSYSTEM_ID, ids.subsystem_device);
        self.ro8(CAPABILITY_LIST, PM_OFFSET as u8);
        self.set(INTERRUPT_LINE, 1, 0, 0xff, 0);
        self.ro8(INTERRUPT_PIN, spec.interrupt_pin);
    }

    /// Six BAR registers from `base`. A BAR's writable bits are exactly its
    /// address bits above its size, so writing all ones and reading back
    /// gives the size mask with the type bits: the sizing protocol falls out
    /// of the masks with no special case.
    fn bars(&mut self, base: usize, bars: &[BarSpec]) {
        for bar in bars {
            let offset = base + 4 * usize::from(bar.index);
            let address_mask = !(bar.size - 1);
            match bar.kind {
                BarKind::Io => {
                    let write = address_mask as u32 & !BAR_IO_FLAG_BITS;
                    self.reg32(offset, BAR_IO_SPACE, write);
                }
                BarKind::Mem32 { prefetchable } => {
                    let flags = if prefetchable { BAR_MEM_PREFETCH } else { 0 };
                    let write = address_mask as u32 & !BAR_MEM_FLAG_BITS;
                    self.reg32(offset, flags, write);
                }
                BarKind::Mem64 { prefetchable } => {
                    let flags = BAR_MEM_TYPE_64 | if prefetchable { BAR_MEM_PREFETCH } else { 0 };
                    let low_write = address_mask as u32 & !BAR_MEM_FLAG_BITS;
                    self.reg32(offset, flags, low_write);
                    self.reg32(offset + 4, 0, (address_mask >> 32) as u32);
                }
            }
        }
    }

    /// The capability list: PM, then MSI, MSI-X and PCI Express when present,
    /// each at its fixed offset and linked in that order.
    fn capabilities(&mut self, spec: &FunctionSpec) {
        let offsets = CapOffsets::of(spec);
        let mut chain = vec![(PM_OFFSET, CAP_ID_PM)];
        chain.extend(offsets.msi.map(|o| (o, CAP_ID_MSI)));
        chain.extend(offsets.msix.map(|o| (o, CAP_ID_MSIX)));
        chain.extend(offsets.exp.map(|o| (o, CAP_ID_EXP)));
        for (i, &(offset, id)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(0, |&(next, _)| next as u8);
            self.ro8(offset + CAP_ID, id);
            self.ro8(offset + CAP_NEXT, next);
        }

        // PM: D0 and D3hot only, no PME; D3hot -> D0 keeps the state, so a
        // power cycle through D3hot does not look like a reset.
        self.ro16(PM_OFFSET + PM_PMC, PM_PMC_VERSION_1_2);
        self.reg16(
            PM_OFFSET + PM_CTRL,
            PM_CTRL_NO_SOFT_RESET,
            PM_CTRL_STATE_MASK,
            0,
        );

        if let Some(msi) = offsets.msi {
            self.msi(msi, spec.msi_vectors);
        }
        if let (Some(msix), Some(m)) = (offsets.msix, &spec.msix) {
            let control = (m.vectors - 1) & MSIX_CONTROL_TABLE_SIZE_MASK;
            let control_write = MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK;
            self.reg16(msix + MSIX_CONTROL, control, control_write, 0);
            self.ro32(msix + MSIX_TABLE, m.table_offset | u32::from(m.table_bar));
            self.ro32(msix + MSIX_PBA, m.pba_offset | u32::from(m.pba_bar));
        }
        if let Some(exp) = offsets.exp {
            self.express(exp);
        }
    }

    fn msi(&mut self, base: usize, vectors: u8) {
        let capable_log2 = vectors.trailing_zeros() as u16;
        let control = (capable_log2 << 1) | MSI_CONTROL_64BIT | MSI_CONTROL_PER_VECTOR_MASK;
        let control_write = MSI_CONTROL_ENABLE | MSI_CONTROL_ENABLED_MASK;
        self.reg16(base + MSI_CONTROL, control, control_write, 0);
        // The address is dword aligned: its two low bits are hardwired to 0.
        self.reg32(base + MSI_ADDRESS_LO, 0, !0x3);
        self.reg32(base + MSI_ADDRESS_HI, 0, !0);
        self.reg16(base + MSI_DATA, 0, !0, 0);
        // Mask bits of vectors the function lacks are reserved (read 0).
        let implemented = if vectors == 32 {
            !0
        } else {
            (1u32 << vectors) - 1
        };
        self.reg32(base + MSI_MASK, 0, implemented);
        self.ro32(base + MSI_PENDING, 0);
    }

    /// A version-2 endpoint capability: FLR capable, one 8 GT/s lane,
    /// 256-byte maximum payload.
    fn express(&mut self, base: usize) {
        const VERSION_2_ENDPOINT: u16 = 2;
        const MAX_PAYLOAD_256: u32 = 1;
        const LINK_SPEED_8GT: u32 = 3;
        const LINK_WIDTH_X1: u32 = 1 << 4;
        self.ro16(base + EXP_FLAGS, VERSION_2_ENDPOINT);
        let devcap = MAX_PAYLOAD_256 | EXP_DEVCAP_ROLE_BASED_ERRORS | EXP_DEVCAP_FLR;
        self.ro32(base + EXP_DEVCAP, devcap);
        // Device control: error reporting enables (3:0), relaxed ordering
        // (4), max payload (7:5), extended tags (8), aux power PM (10), no
        // snoop (11), max read request (14:12) and initiate FLR (15) are
        // writable; phantom functions (9) are not supported. Power-on value:
        // relaxed ordering and no snoop on, 512-byte read requests.
        let devctl_write = 0xfdff;
        let devctl = (1 << 4) | (1 << 11) | (2 << 12);
        self.reg16(base + EXP_DEVCTL, devctl, devctl_write, 0);
        self.reg16(base + EXP_DEVSTA, 0, 0, EXP_DEVSTA_ERROR_BITS);
        self.ro32(base + EXP_LNKCAP, LINK_SPEED_8GT | LINK_WIDTH_X1);
        // Link control: ASPM control (1:0), read completion boundary (3),
        // common clock (6), extended synch (7).
        self.reg16(base + EXP_LNKCTL, 0, 0x00cb, 0);
        self.ro16(base + EXP_LNKSTA, (LINK_SPEED_8GT | LINK_WIDTH_X1) as u16);
        // Supported speeds vector: 2.5, 5 and 8 GT/s.
        self.ro32(base + EXP_LNKCAP2, 0b1110);
        // Link control 2: target link speed (3:0).
        self.reg16(base + EXP_LNKCTL2, LINK_SPEED_8GT as u16, 0xf, 0);
    }

    /// SR-IOV then ACS, packed from 0x100. Without either, 0x100 reads 0,
    /// which is how a PCI Express function says "no extended capabilities".
    fn extended_capabilities(&mut self, spec: &FunctionSpec) {
        let mut chain = Vec::new();
        if spec.sriov.is_some() {
            chain.push((SRIOV_OFFSET, EXT_CAP_ID_SRIOV));
        }
        if spec.acs {
            chain.push((acs_offset(spec), EXT_CAP_ID_ACS));
        }
        const VERSION_1: u32 = 1 << 16;
        for (i, &(offset, id)) in chain.iter().enumerate() {
            let next = chain.get(i + 1).map_or(0, |&(next, _)| next as u32);
            self.ro32(offset, u32::from(id) | VERSION_1 | (next << 20));
        }
        if let Some(sriov) = &spec.sriov {
            let base = SRIOV_OFFSET;
            let control_write = SRIOV_CTRL_VF_ENABLE | SRIOV_CTRL_VF_MEMORY | SRIOV_CTRL_ARI;
            self.reg16(base + SRIOV_CTRL, 0, control_write, 0);
            self.ro16(base + SRIOV_INITIAL_VFS, sriov.total_vfs);
            self.ro16(base + SRIOV_TOTAL_VFS, sriov.total_vfs);
            self.reg16(base + SRIOV_NUM_VFS, 0, !0, 0);
            self.ro16(base + SRIOV_VF_OFFSET, sriov.first_vf_offset);
            self.ro16(base + SRIOV_VF_STRIDE, sriov.vf_stride);
            self.ro16(base + SRIOV_VF_DEVICE_ID, sriov.vf_device);
            // 4K, 8K, 64K, 256K, 1M and 4M pages; 4 KiB selected at power-on.
            const SUPPORTED_PAGE_SIZES: u32 = 0x553;
            self.ro32(base + SRIOV_SUPPORTED_PAGE_SIZES, SUPPORTED_PAGE_SIZES);
            self.reg32(base + SRIOV_SYSTEM_PAGE_SIZE, 1, SUPPORTED_PAGE_SIZES);
            self.bars(base + SRIOV_VF_BAR0, &sriov.vf_bars);
        }
        if spec.acs {
            let base = acs_offset(spec);
            let redirect = ACS_REQUEST_REDIRECT | ACS_COMPLETION_REDIRECT;
            self.ro16(base + ACS_CAP, redirect);
            self.reg16(base + ACS_CTRL, 0, redirect, 0);
        }
    }
}
