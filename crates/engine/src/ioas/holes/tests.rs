//! The hole index's tests: fixed cases, and a model of free units.

use super::*;

#[test]
fn first_fit_finds_the_lowest_hole_large_enough() {
    let mut f = FreeSpace::new();
    for i in 0..1000u64 {
        f.insert(i * 100, i * 100 + 9);
    }
    f.insert(500_000, 600_000);
    f.insert(700_000, 800_000);
    assert_eq!(f.first_fit(9, 0), Some((0, 9)));
    assert_eq!(f.first_fit(9, 1), Some((100, 109)));
    assert_eq!(f.first_fit(10, 0), Some((500_000, 600_000)));
    assert_eq!(f.first_fit(10, 500_001), Some((700_000, 800_000)));
    assert_eq!(f.first_fit(200_000, 0), None);
}

#[test]
fn carve_and_release_round_trip() {
    let mut f = FreeSpace::new();
    f.insert(0, 999);
    f.carve(100, 199);
    f.carve(500, 599);
    assert_eq!(f.to_vec(), vec![(0, 99), (200, 499), (600, 999)]);
    f.carve(50, 650);
    assert_eq!(f.to_vec(), vec![(0, 49), (651, 999)]);
    f.release(50, 650);
    assert_eq!(f.to_vec(), vec![(0, 999)]);
    f.carve(0, u64::MAX);
    assert!(f.is_empty());
    f.insert(u64::MAX - 5, u64::MAX);
    f.carve(u64::MAX, u64::MAX);
    assert_eq!(f.to_vec(), vec![(u64::MAX - 5, u64::MAX - 1)]);
    f.release(u64::MAX, u64::MAX);
    assert_eq!(f.to_vec(), vec![(u64::MAX - 5, u64::MAX)]);
}

#[test]
fn a_filled_hole_comes_back_without_new_nodes() {
    let mut f = FreeSpace::new();
    for i in 0..100u64 {
        f.insert(i * 10, i * 10 + 4);
    }
    let nodes = f.nodes_in_use();
    // Filled exactly, then from its start with room to spare: both times
    // the hole's node stays, and the release brings it back.
    for (start, last) in [(500, 504), (500, 501)] {
        f.carve(start, last);
        f.check();
        f.release(start, last);
        f.check();
        assert_eq!(f.nodes_in_use(), nodes);
        assert_eq!(f.len(), 100);
    }
    // A tombstone beside a growing neighbour goes: 505..509 was never
    // free; freed, it joins the hole above, which then grows over 500.
    f.carve(500, 504);
    f.release(505, 509);
    f.release(500, 504);
    f.check();
    assert_eq!(f.to_vec()[50], (500, 514));
    assert_eq!(f.nodes_in_use(), nodes - 1);
    // Bounds left high by dead holes come down when a search finds no fit.
    for i in 0..100u64 {
        f.carve(i * 10, i * 10 + 9);
    }
    f.check();
    assert!(f.is_empty());
    assert_eq!(f.first_fit(0, 0), None);
    assert_eq!(f.tree.reach(f.tree.root), 0);
}

/// Thousands of holes, grown and then shrunk again by random carves and
/// releases, against a plain set of free units.
#[test]
fn a_deep_tree_follows_the_model() {
    const UNITS: u64 = 20_000;
    let mut f = FreeSpace::new();
    f.insert(0, UNITS - 1);
    let mut free = vec![true; UNITS as usize];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..40_000u64 {
        let start = next() % UNITS;
        let last = (start + next() % 4).min(UNITS - 1);
        let range = start as usize..=last as usize;
        // Carve more than release at first, then the other way round, so
        // that the tree grows deep and then shrinks back.
        let carve = next() % 8 < if round < 20_000 { 5 } else { 2 };
        if carve {
            f.carve(start, last);
            free[range].fill(false);
        } else if free[range.clone()].iter().all(|&x| !x) {
            f.release(start, last);
            free[range].fill(true);
        }
        if round % 997 == 0 {
            f.check();
            let holes = against_a_model::holes_of(&free);
            assert_eq!(f.to_vec(), holes, "after round {round}");
            assert_eq!(f.len(), holes.len());
            let span = next() % 6;
            let from = next() % UNITS;
            let want = holes.into_iter().find(|&(s, l)| s >= from && l - s >= span);
            assert_eq!(f.first_fit(span, from), want);
        }
    }
}

/// The index against a plain set of free units: any sequence of carves
/// and releases leaves the same holes, and first fit finds the same.
mod against_a_model {
    use super::*;
    use proptest::prelude::*;

    const UNITS: u64 = 64;

    pub(super) fn holes_of(free: &[bool]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, &f) in free.iter().enumerate() {
            let i = i as u64;
            match out.last_mut() {
                Some((_, l)) if f && *l + 1 == i => *l = i,
                _ if f => out.push((i, i)),
                _ => {}
            }
        }
        out
    }

    proptest! {
        #[test]
        fn carve_and_release_match_the_model(
            ops in proptest::collection::vec((any::<bool>(), 0..UNITS, 0..8u64), 1..200),
            fit in (0..8u64, 0..UNITS),
        ) {
            let mut f = FreeSpace::new();
            f.insert(0, UNITS - 1);
            let mut free = vec![true; UNITS as usize];
            for (carve, start, len) in ops {
                let last = (start + len).min(UNITS - 1);
                if carve {
                    f.carve(start, last);
                    free[start as usize..=last as usize].fill(false);
                } else if free[start as usize..=last as usize].iter().all(|&x| !x) {
                    // release only what is used, as the table does
                    f.release(start, last);
                    free[start as usize..=last as usize].fill(true);
                }
                f.check();
                let holes = holes_of(&free);
                prop_assert_eq!(f.to_vec(), holes.clone());
                prop_assert_eq!(f.len(), holes.len());
                // The spans kept in the tree lead first fit right.
                let (span, from) = fit;
                let want = holes.into_iter().find(|&(s, l)| s >= from && l - s >= span);
                prop_assert_eq!(f.first_fit(span, from), want);
            }
        }
    }
}
