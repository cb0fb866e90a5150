//! Specs and access helpers shared by the integration tests.

#![allow(dead_code)]

use softiommu_pci::{BarKind, BarSpec, ConfigSpace, FunctionSpec, MsixSpec, PciIds, SriovSpec};

/// A PCI Express function with one of everything: every BAR kind, MSI,
/// MSI-X, SR-IOV with a VF BAR, ACS and INTA.
pub fn full_spec() -> FunctionSpec {
    FunctionSpec {
        ids: PciIds {
            vendor: 0x8086,
            device: 0x1572,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0001,
            class: 0x02_00_00,
            revision: 0x02,
        },
        bars: vec![
            BarSpec {
                index: 0,
                size: 0x4000,
                kind: BarKind::Mem64 { prefetchable: true },
            },
            BarSpec {
                index: 2,
                size: 0x1000,
                kind: BarKind::Mem32 {
                    prefetchable: false,
                },
            },
            BarSpec {
                index: 3,
                size: 0x20,
                kind: BarKind::Io,
            },
            BarSpec {
                index: 4,
                size: 1 << 33,
                kind: BarKind::Mem64 {
                    prefetchable: false,
                },
            },
        ],
        msi_vectors: 8,
        msix: Some(MsixSpec {
            vectors: 16,
            table_bar: 2,
            table_offset: 0,
            pba_bar: 2,
            pba_offset: 0x800,
        }),
        pcie: true,
        sriov: Some(SriovSpec {
            total_vfs: 8,
            vf_device: 0x154c,
            first_vf_offset: 0x10,
            vf_stride: 1,
            vf_bars: vec![BarSpec {
                index: 0,
                size: 0x2000,
                kind: BarKind::Mem64 { prefetchable: true },
            }],
            vf_msix: None,
        }),
        acs: true,
        interrupt_pin: 1,
        device_registers: Vec::new(),
    }
}

/// A conventional PCI function with a 32-bit BAR and nothing else.
pub fn conventional_spec() -> FunctionSpec {
    FunctionSpec {
        ids: PciIds {
            vendor: 0x1234,
            device: 0x1111,
            class: 0x03_00_00,
            ..Default::default()
        },
        bars: vec![BarSpec {
            index: 0,
            size: 0x100,
            kind: BarKind::Mem32 {
                prefetchable: false,
            },
        }],
        ..Default::default()
    }
}

pub fn read_u8(space: &ConfigSpace, offset: u64) -> u8 {
    let mut b = [0; 1];
    space.read(offset, &mut b).unwrap();
    b[0]
}

pub fn read_u16(space: &ConfigSpace, offset: u64) -> u16 {
    let mut b = [0; 2];
    space.read(offset, &mut b).unwrap();
    u16::from_le_bytes(b)
}

pub fn read_u32(space: &ConfigSpace, offset: u64) -> u32 {
    let mut b = [0; 4];
    space.read(offset, &mut b).unwrap();
    u32::from_le_bytes(b)
}

pub fn write_u16(space: &mut ConfigSpace, offset: u64, value: u16) {
    space.write(offset, &value.to_le_bytes()).unwrap();
}

pub fn write_u32(space: &mut ConfigSpace, offset: u64, value: u32) {
    space.write(offset, &value.to_le_bytes()).unwrap();
}
