//! The raw entries a walk reads, as a driver's debug view prints them.

use softiommu_pt::formats::VtdSecondStage;
use softiommu_pt::{AnyPageTable, FormatKind, Prot};

fn vtd() -> AnyPageTable {
    AnyPageTable::new(
        FormatKind::VtdSecondStage,
        VtdSecondStage::config(48, true, true),
    )
    .unwrap()
}

#[test]
fn a_4k_leaf_is_reached_through_four_levels_and_a_2m_leaf_through_three() {
    let mut t = vtd();
    t.map(0x1000, 0x20_0000, 0x1000, Prot::READ_WRITE).unwrap();
    t.map(0x4000_0000, 0x4000_0000, 2 << 20, Prot::READ_WRITE)
        .unwrap();
    let small = t.walk_entries(0x1000);
    assert_eq!(small.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 2, 1, 0]);
    assert!(small.iter().all(|e| e.1 != 0));
    let big = t.walk_entries(0x4000_0000 + 0x1234);
    assert_eq!(big.iter().map(|e| e.0).collect::<Vec<_>>(), [3, 2, 1]);
    assert!(t.walk_entries(0x2000).is_empty(), "nothing mapped there");
    assert!(
        t.walk_entries(u64::MAX).is_empty(),
        "past the address width"
    );
}
