//! Random config writes never panic and never change a read-only bit.

mod common;

use common::*;
use proptest::prelude::*;
use softiommu_pci::ConfigSpace;

/// One config access: offset, bytes; offsets reach past the end so some
/// writes are refused.
fn write_op() -> impl Strategy<Value = (u64, Vec<u8>)> {
    prop_oneof![
        // Mostly the header and standard capabilities, where the masks vary.
        (0u64..0x100, prop::collection::vec(any::<u8>(), 0..9)),
        (0u64..0x1010, prop::collection::vec(any::<u8>(), 0..9)),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..5)),
    ]
}

/// Checks that every bit of `space` outside both masks equals the power-on
/// image, except the bits a function-level reset or the device side may
/// change (none here: no device-side calls are made).
fn read_only_bits_match(space: &ConfigSpace, fresh: &ConfigSpace) {
    let (mut got, mut want) = (vec![0; space.len()], vec![0; fresh.len()]);
    space.read(0, &mut got).unwrap();
    fresh.read(0, &mut want).unwrap();
    for (offset, (g, w)) in got.iter().zip(&want).enumerate() {
        let (write, clear) = space.byte_masks(offset).unwrap();
        let read_only = !(write | clear);
        assert_eq!(
            g & read_only,
            w & read_only,
            "read-only bits changed at {offset:#x}"
        );
        // Write-1-to-clear bits start at 0 here and software cannot set them.
        assert_eq!(
            g & clear,
            0,
            "a write-1-to-clear bit was set at {offset:#x}"
        );
    }
}

proptest! {
    #[test]
    fn random_writes_keep_read_only_bits(ops in prop::collection::vec(write_op(), 1..64), pcie in any::<bool>()) {
        let spec = if pcie { full_spec() } else { conventional_spec() };
        let fresh = ConfigSpace::new(&spec).unwrap();
        let mut space = fresh.clone();
        for (offset, data) in ops {
            let in_range = offset
                .checked_add(data.len() as u64)
                .is_some_and(|end| end <= space.len() as u64);
            prop_assert_eq!(space.write(offset, &data).is_ok(), in_range);
            let mut back = vec![0; data.len()];
            prop_assert_eq!(space.read(offset, &mut back).is_ok(), in_range);
        }
        read_only_bits_match(&space, &fresh);
        // Independently of the masks: identity, header type, capability
        // pointer and interrupt pin are as built.
        for range in [0..4usize, 8..0x10, 0x2c..0x30, 0x34..0x35, 0x3d..0x3e] {
            let (mut got, mut want) = (vec![0; range.len()], vec![0; range.len()]);
            space.read(range.start as u64, &mut got).unwrap();
            fresh.read(range.start as u64, &mut want).unwrap();
            if range.start == 8 {
                // Cache line size (0x0c) is read-write scratch.
                got[4] = want[4];
            }
            prop_assert_eq!(got, want);
        }
        // Whatever was written, the decoded views stay consistent.
        if let Some(msi) = space.msi() {
            prop_assert!(msi.vectors_enabled <= msi.vectors_capable);
        }
        prop_assert_eq!(space.capabilities(), fresh.capabilities());
        prop_assert_eq!(space.extended_capabilities(), fresh.extended_capabilities());
        space.reset();
        read_only_bits_match(&space, &fresh);
    }
}
