//! The engine-wide pin counts (Linux counts pins on each `struct page`):
//! how many users each frame has across every `Pages` of every context, kept
//! as segments of consecutive frames with one count, so that pinning a
//! gigabyte is one segment and not a quarter of a million entries.

use super::physical::{Backing, Frame, PhysMap};
use std::collections::BTreeMap;

/// Frames `page..page + len` of `space` (the key is `(space, page)`) each
/// pinned `count` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    len: u64,
    count: u32,
}

/// Invariant: segments do not overlap and have a count of at least one;
/// `frames` is the sum of their lengths. A frame with a count has an
/// address in the [`PhysMap`] the table is updated with.
#[derive(Debug, Default)]
pub(super) struct PinTable {
    segments: BTreeMap<(u64, u64), Segment>,
    frames: u64,
}

impl PinTable {
    /// Frames pinned at least once.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// How many times `frame` is pinned.
    pub fn count(&self, frame: Frame) -> u32 {
        self.find(frame.space, frame.page)
            .map_or(0, |(_, s)| s.count)
    }

    fn find(&self, space: u64, page: u64) -> Option<(u64, Segment)> {
        let (&(s, start), &seg) = self.segments.range(..=(space, page)).next_back()?;
        (s == space && page - start < seg.len).then_some((start, seg))
    }

    /// Cuts the segment holding `(space, at)` so that one starts there.
    fn split_at(&mut self, space: u64, at: u64) {
        if let Some((start, seg)) = self.find(space, at) {
            if start < at {
                let k = at - start;
                self.segments.insert(
                    (space, at),
                    Segment {
                        len: seg.len - k,
                        count: seg.count,
                    },
                );
                if let Some(head) = self.segments.get_mut(&(space, start)) {
                    head.len = k;
                }
            }
        }
    }

    /// Joins the segment ending right before `(space, at)` with the one
    /// starting there, when their counts agree.
    fn join_at(&mut self, space: u64, at: u64) {
        let Some((start, seg)) = at.checked_sub(1).and_then(|b| self.find(space, b)) else {
            return;
        };
        if let Some(next) = self.segments.get(&(space, at)).copied() {
            if next.count == seg.count {
                self.segments.remove(&(space, at));
                if let Some(head) = self.segments.get_mut(&(space, start)) {
                    head.len += next.len;
                }
            }
        }
    }

    /// One more pin on each of the `len` frames from `first`; the frames
    /// pinned for the first time get their addresses in `phys`, reached
    /// through `backing` (`gigantic`: they lie in a 1 GiB huge page).
    pub fn pin(
        &mut self,
        first: Frame,
        len: u64,
        phys: &mut PhysMap,
        backing: &Backing,
        gigantic: bool,
    ) {
        let (space, lo, end) = (first.space, first.page, first.page + len);
        self.split_at(space, lo);
        self.split_at(space, end);
        let mut next = lo;
        let mut gaps = Vec::new();
        for (&(_, start), seg) in self.segments.range_mut((space, lo)..(space, end)) {
            if start > next {
                gaps.push((next, start - next));
            }
            seg.count += 1;
            next = start + seg.len;
        }
        if next < end {
            gaps.push((next, end - next));
        }
        for &(page, n) in &gaps {
            self.segments
                .insert((space, page), Segment { len: n, count: 1 });
            self.frames += n;
            phys.pin_range(Frame { space, page }, n, backing, gigantic);
        }
        let edges = gaps.iter().flat_map(|&(p, n)| [p, p + n]);
        for at in [lo, end].into_iter().chain(edges) {
            self.join_at(space, at);
        }
    }

    /// One pin fewer on each of the `len` frames from `first`; frames left
    /// with none lose their addresses in `phys`. Frames not pinned are
    /// skipped.
    pub fn unpin(&mut self, first: Frame, len: u64, phys: &mut PhysMap) {
        let (space, lo, end) = (first.space, first.page, first.page + len);
        self.split_at(space, lo);
        self.split_at(space, end);
        let mut emptied = Vec::new();
        for (&(_, start), seg) in self.segments.range_mut((space, lo)..(space, end)) {
            seg.count -= 1;
            if seg.count == 0 {
                emptied.push((start, seg.len));
            }
        }
        for (page, n) in emptied {
            self.segments.remove(&(space, page));
            self.frames -= n;
            phys.unpin_range(Frame { space, page }, n);
        }
        self.join_at(space, lo);
        self.join_at(space, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::physical::tests::backing;

    #[test]
    fn overlapping_pins_count_per_frame_and_join_back() {
        let mut table = PinTable::default();
        let mut phys = PhysMap::default();
        let at = |page| Frame { space: 3, page };
        table.pin(at(0), 1000, &mut phys, &backing(), false);
        table.pin(at(500), 1000, &mut phys, &backing(), false);
        assert_eq!(table.frames(), 1500);
        assert_eq!(
            [0, 499, 500, 999, 1000, 1499, 1500].map(|p| table.count(at(p))),
            [1, 1, 2, 2, 1, 1, 0]
        );
        assert!(phys.address(at(1499)).is_some());
        table.unpin(at(500), 1000, &mut phys);
        assert_eq!(table.frames(), 1000);
        assert_eq!(table.segments.len(), 1, "back to one segment");
        assert!(phys.address(at(1400)).is_none());
        assert!(phys.address(at(999)).is_some());
        // Another space's frames are counted apart.
        table.pin(Frame { space: 4, page: 0 }, 1, &mut phys, &backing(), false);
        assert_eq!(table.count(at(0)), 1);
        table.unpin(at(0), 1000, &mut phys);
        assert_eq!(table.frames(), 1);
        assert!(phys.address(at(0)).is_none());
    }
}
