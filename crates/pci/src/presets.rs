//! Functions of real devices that softiommu has device models for, as their
//! configuration space looks: identity, BARs, interrupts and the
//! device-specific configuration registers their drivers touch.

use crate::spec::{BarKind, BarSpec, DeviceRegister, FunctionSpec, MsixSpec, PciIds};

/// Configuration offset of I/OAT's uncorrectable DMA error status
/// (`IOAT_PCI_DMAUNCERRSTS_OFFSET`), write-1-to-clear.
pub const IOAT_DMAUNCERRSTS: u16 = 0x148;
/// Configuration offset of I/OAT's internal channel error register
/// (`IOAT_PCI_CHANERR_INT_OFFSET`), write-1-to-clear.
pub const IOAT_CHANERR_INT: u16 = 0x180;
/// Configuration offset of its mask (`IOAT_PCI_CHANERRMASK_INT_OFFSET`).
pub const IOAT_CHANERRMASK_INT: u16 = 0x184;

/// One channel of Intel's Crystal Beach DMA engine on Skylake-SP
/// (8086:2021, I/OAT version 3.3): a 16 KiB BAR 0 with the device and
/// channel registers, one MSI vector, one MSI-X vector whose table and PBA
/// live in BAR 0, and the PCI-side error registers.
pub fn ioat_skx() -> FunctionSpec {
    let w1c = |offset| DeviceRegister {
        offset,
        width: 4,
        value: 0,
        writable: 0,
        write_1_to_clear: !0,
    };
    FunctionSpec {
        ids: PciIds {
            vendor: 0x8086,
            device: 0x2021,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0000,
            class: 0x08_80_00,
            revision: 0x04,
        },
        bars: vec![BarSpec {
            index: 0,
            size: 16 << 10,
            kind: BarKind::Mem64 {
                prefetchable: false,
            },
        }],
        msi_vectors: 1,
        msix: Some(MsixSpec {
            vectors: 1,
            table_bar: 0,
            table_offset: 0x2000,
            pba_bar: 0,
            pba_offset: 0x3000,
        }),
        pcie: true,
        sriov: None,
        acs: false,
        interrupt_pin: 1,
        device_registers: vec![
            w1c(IOAT_DMAUNCERRSTS),
            w1c(IOAT_CHANERR_INT),
            DeviceRegister {
                offset: IOAT_CHANERRMASK_INT,
                width: 4,
                value: 0,
                writable: !0,
                write_1_to_clear: 0,
            },
        ],
    }
}

/// Intel's Data Streaming Accelerator on Sapphire Rapids (8086:0b25):
/// BAR 0 with the device registers and configuration tables (its MSI-X
/// table and PBA at 0x2000 and 0x3000), BAR 2 with the work-queue portals,
/// and two MSI-X vectors (0 for device events, 1 for completions).
pub fn dsa_spr() -> FunctionSpec {
    FunctionSpec {
        ids: PciIds {
            vendor: 0x8086,
            device: 0x0b25,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0000,
            class: 0x08_80_00,
            revision: 0x01,
        },
        bars: vec![
            BarSpec {
                index: 0,
                size: 64 << 10,
                kind: BarKind::Mem64 {
                    prefetchable: false,
                },
            },
            BarSpec {
                index: 2,
                size: 128 << 10,
                kind: BarKind::Mem64 { prefetchable: true },
            },
        ],
        msi_vectors: 0,
        msix: Some(MsixSpec {
            vectors: 2,
            table_bar: 0,
            table_offset: 0x2000,
            pba_bar: 0,
            pba_offset: 0x3000,
        }),
        pcie: true,
        sriov: None,
        acs: false,
        interrupt_pin: 0,
        device_registers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigSpace;

    #[test]
    fn the_ioat_error_registers_clear_by_writing_one() {
        let spec = ioat_skx();
        spec.validate().unwrap();
        let mut space = ConfigSpace::new(&spec).unwrap();
        let at = u64::from(IOAT_CHANERR_INT);
        space.set_by_device(at, &0x103u32.to_le_bytes()).unwrap();
        space.write(at, &0x101u32.to_le_bytes()).unwrap();
        let mut v = [0; 4];
        space.read(at, &mut v).unwrap();
        assert_eq!(u32::from_le_bytes(v), 0x2);
        let mask = u64::from(IOAT_CHANERRMASK_INT);
        space.write(mask, &0xffu32.to_le_bytes()).unwrap();
        space.read(mask, &mut v).unwrap();
        assert_eq!(u32::from_le_bytes(v), 0xff);
        // A register inside a capability is refused.
        dsa_spr().validate().unwrap();
        let mut bad = ioat_skx();
        bad.device_registers[0].offset = 0x84;
        assert!(bad.validate().is_err());
    }
}
