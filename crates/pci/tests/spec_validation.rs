//! Specs the crate refuses, and a spec read from TOML.

mod common;

use common::*;
use softiommu_pci::{BarKind, BarSpec, ConfigSpace, FunctionSpec, MsixSpec, SpecError};

fn with(change: impl FnOnce(&mut FunctionSpec)) -> Result<(), SpecError> {
    let mut spec = full_spec();
    change(&mut spec);
    spec.validate()
}

fn bar(index: u8, size: u64, kind: BarKind) -> BarSpec {
    BarSpec { index, size, kind }
}

const MEM32: BarKind = BarKind::Mem32 {
    prefetchable: false,
};
const MEM64: BarKind = BarKind::Mem64 {
    prefetchable: false,
};

#[test]
fn full_and_conventional_specs_are_valid() {
    assert_eq!(full_spec().validate(), Ok(()));
    assert_eq!(conventional_spec().validate(), Ok(()));
}

#[test]
fn bar_slots_must_fit_and_not_overlap() {
    assert_eq!(
        with(|s| s.bars.push(bar(5, 16, MEM64))),
        Err(SpecError::BarIndexOutOfRange { index: 5 })
    );
    assert_eq!(
        with(|s| s.bars.push(bar(6, 16, MEM32))),
        Err(SpecError::BarIndexOutOfRange { index: 6 })
    );
    // BAR 0 is 64-bit, so slot 1 is taken.
    assert_eq!(
        with(|s| s.bars.push(bar(1, 16, MEM32))),
        Err(SpecError::BarOverlap { index: 1 })
    );
    assert_eq!(
        with(|s| s.bars.push(bar(2, 16, BarKind::Io))),
        Err(SpecError::BarOverlap { index: 2 })
    );
}

#[test]
fn bar_sizes_must_be_powers_of_two_in_range() {
    let cases = [
        (0x3000, MEM32),
        (8, MEM32),
        (1 << 32, MEM32),
        (0, MEM64),
        (2, BarKind::Io),
        (512, BarKind::Io),
    ];
    for (size, kind) in cases {
        let got = with(|s| {
            s.bars.clear();
            s.msix = None;
            s.bars.push(bar(1, size, kind));
        });
        assert_eq!(
            got,
            Err(SpecError::BarSize { index: 1, size }),
            "{size:#x} {kind:?}"
        );
    }
    assert_eq!(with(|s| s.bars[0].size = 1 << 63), Ok(()));
}

#[test]
fn interrupt_counts_must_be_valid() {
    assert_eq!(with(|s| s.msi_vectors = 3), Err(SpecError::MsiVectors(3)));
    assert_eq!(with(|s| s.msi_vectors = 64), Err(SpecError::MsiVectors(64)));
    assert_eq!(
        with(|s| s.msix.as_mut().unwrap().vectors = 0),
        Err(SpecError::MsixVectors(0))
    );
    assert_eq!(
        with(|s| s.msix.as_mut().unwrap().vectors = 2049),
        Err(SpecError::MsixVectors(2049))
    );
    assert_eq!(
        with(|s| s.interrupt_pin = 5),
        Err(SpecError::InterruptPin(5))
    );
}

#[test]
fn msix_structures_must_sit_aligned_inside_memory_bars() {
    let msix = |change: fn(&mut MsixSpec)| with(|s| change(s.msix.as_mut().unwrap()));
    assert_eq!(
        msix(|m| m.table_bar = 3),
        Err(SpecError::MsixBar {
            what: "table",
            bar: 3
        }),
        "I/O BAR"
    );
    assert_eq!(
        msix(|m| m.pba_bar = 1),
        Err(SpecError::MsixBar {
            what: "PBA",
            bar: 1
        }),
        "upper half"
    );
    assert_eq!(
        msix(|m| m.table_bar = 5),
        Err(SpecError::MsixBar {
            what: "table",
            bar: 5
        })
    );
    assert_eq!(
        msix(|m| m.table_offset = 4),
        Err(SpecError::MsixAlignment {
            what: "table",
            offset: 4
        })
    );
    // 16 vectors * 16 bytes past 0xf08 ends beyond the 4 KiB BAR 2.
    assert_eq!(
        msix(|m| m.table_offset = 0xf08),
        Err(SpecError::MsixOutsideBar {
            what: "table",
            bar: 2,
            offset: 0xf08
        })
    );
    assert_eq!(
        msix(|m| m.pba_offset = 0x1000),
        Err(SpecError::MsixOutsideBar {
            what: "PBA",
            bar: 2,
            offset: 0x1000
        })
    );
    assert_eq!(
        msix(|m| m.pba_offset = 0xf8),
        Err(SpecError::MsixTableOverlapsPba)
    );
    assert_eq!(
        msix(|m| m.pba_offset = 0x100),
        Ok(()),
        "right after the table"
    );
    assert_eq!(msix(|m| m.pba_bar = 0), Ok(()), "in another BAR");
}

#[test]
fn extended_capabilities_need_pcie_and_sane_sriov() {
    assert_eq!(
        with(|s| s.pcie = false),
        Err(SpecError::NeedsPcie("SR-IOV"))
    );
    assert_eq!(
        with(|s| {
            s.pcie = false;
            s.sriov = None;
        }),
        Err(SpecError::NeedsPcie("ACS"))
    );
    let sriov =
        |change: fn(&mut softiommu_pci::SriovSpec)| with(|s| change(s.sriov.as_mut().unwrap()));
    assert_eq!(sriov(|v| v.total_vfs = 0), Err(SpecError::NoVfs));
    assert_eq!(
        sriov(|v| v.first_vf_offset = 0),
        Err(SpecError::VfOffsetZero)
    );
    assert_eq!(sriov(|v| v.vf_stride = 0), Err(SpecError::VfStrideZero(8)));
    assert_eq!(
        sriov(|v| {
            v.total_vfs = 1;
            v.vf_stride = 0;
        }),
        Ok(())
    );
    assert_eq!(
        sriov(|v| {
            v.total_vfs = 0x8000;
            v.vf_stride = 2;
        }),
        Err(SpecError::VfRoutingOverflow)
    );
    assert_eq!(
        sriov(|v| v.vf_bars.push(bar(2, 16, BarKind::Io))),
        Err(SpecError::VfIoBar { index: 2 })
    );
    assert_eq!(
        sriov(|v| v.vf_bars.push(bar(1, 16, MEM32))),
        Err(SpecError::BarOverlap { index: 1 })
    );
}

#[test]
fn identity_must_be_a_present_function() {
    assert_eq!(
        with(|s| s.ids.vendor = 0xffff),
        Err(SpecError::InvalidVendor)
    );
    assert_eq!(
        with(|s| s.ids.class = 0x0100_0000),
        Err(SpecError::ClassTooWide(0x0100_0000))
    );
}

#[test]
fn config_space_new_refuses_an_invalid_spec() {
    let mut spec = full_spec();
    spec.msi_vectors = 5;
    assert_eq!(
        ConfigSpace::new(&spec).unwrap_err(),
        SpecError::MsiVectors(5)
    );
}

#[test]
fn spec_reads_from_toml() {
    let text = r#"
        msi_vectors = 4
        pcie = true
        interrupt_pin = 1

        [ids]
        vendor = 0x1af4
        device = 0x1041
        class = 0x020000

        [[bars]]
        index = 0
        size = 0x4000
        kind = { type = "mem64", prefetchable = true }

        [[bars]]
        index = 2
        size = 0x20
        kind = { type = "io" }

        [msix]
        vectors = 4
        table_bar = 0
        table_offset = 0x1000
        pba_bar = 0
        pba_offset = 0x2000
    "#;
    let spec: FunctionSpec = toml::from_str(text).unwrap();
    assert_eq!(spec.bars[0].kind, BarKind::Mem64 { prefetchable: true });
    assert_eq!(spec.bars[1].kind, BarKind::Io);
    assert!(spec.sriov.is_none() && !spec.acs);
    let space = ConfigSpace::new(&spec).unwrap();
    assert_eq!(space.msix().unwrap().table_offset, 0x1000);
    assert!(
        toml::from_str::<FunctionSpec>("bogus = 1\n[ids]\nvendor = 1\ndevice = 1\nclass = 0")
            .is_err()
    );
}
