//! An index of free IOVA holes for automatic allocation in O(log n).
//!
//! Holes are disjoint inclusive ranges `[start, last]`, kept in a treap
//! ordered by `start` and augmented with a bound of the largest hole of each
//! subtree, so the lowest hole of at least a given size is found by one
//! descent instead of a scan over every area (Linux scans; with a million
//! areas that is the difference between microseconds and milliseconds).
//!
//! A map at a fixed IOVA and its unmap must stay cheap beside a million
//! holes, so neither restructures the tree in the common case. A map that
//! fills a hole from its start leaves the hole's node in place, dead (a
//! tombstone); the unmap of that range finds it by the same key and brings
//! it back to life. A hole that shrinks keeps its node and its ancestors'
//! bounds (still upper bounds); a hole that grows raises the bounds on its
//! path as the descent passes.
//!
//! Invariants, besides the treap's (`treap.rs`): live holes never overlap;
//! no node's start lies inside a live hole (so the hole holding an address
//! is always on that address's search path); a dead node's start lies in
//! IOVA carved and not released since.

mod treap;

use treap::{reach_of_span, Treap, NIL};

/// A hole's `(start, last)`.
type Hole = (u64, u64);

/// The hole index.
#[derive(Clone, Debug)]
pub struct FreeSpace {
    tree: Treap,
    /// Live holes.
    len: usize,
}

impl Default for FreeSpace {
    fn default() -> Self {
        Self::new()
    }
}

impl FreeSpace {
    /// An index with no holes.
    pub fn new() -> Self {
        FreeSpace {
            tree: Treap::new(),
            len: 0,
        }
    }

    /// Number of holes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no hole.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds hole `[start, last]`; the caller guarantees it overlaps no hole
    /// and that no tombstone starts at `start`.
    pub fn insert(&mut self, start: u64, last: u64) {
        self.tree.insert(start, last);
        self.len += 1;
    }

    fn bounds(&self, t: u32) -> Hole {
        let n = self.tree.node(t);
        (n.start, n.last)
    }

    /// The live hole that holds `addr`, in one descent: it is the node with
    /// the largest start ≤ `addr`, as no start lies inside a live hole.
    fn holder_of(&self, addr: u64) -> Option<u32> {
        let mut t = self.tree.root;
        while t != NIL {
            let n = self.tree.node(t);
            if addr < n.start {
                t = n.left;
            } else if n.live && addr <= n.last {
                return Some(t);
            } else {
                t = n.right;
            }
        }
        None
    }

    /// Marks `[start, last]` used: trims or splits every hole it touches.
    pub fn carve(&mut self, start: u64, last: u64) {
        let mut next = match self.holder_of(start) {
            Some(t) => {
                let (s, l) = self.bounds(t);
                if s < start {
                    self.tree.node_mut(t).last = start - 1;
                    if l > last {
                        // The hole kept its lower part; its upper part is new.
                        self.insert(last + 1, l);
                        return;
                    }
                } else if l > last {
                    // The start moves up inside the old hole: no node lies
                    // between, so the order stays.
                    self.tree.node_mut(t).start = last + 1;
                    return;
                } else {
                    // Filled from its start: a tombstone keyed by `start`,
                    // which lies inside the carved range.
                    self.tree.node_mut(t).live = false;
                    self.len -= 1;
                }
                if l >= last {
                    return;
                }
                l + 1
            }
            None => start,
        };
        // Holes that start inside the range (a carve over several).
        while let Some(t) = self.tree.at_or_after(next) {
            let (s, l) = self.bounds(t);
            if s > last {
                break;
            }
            if !self.tree.node(t).live {
                // Carved before and not released: not a hole.
                match s.checked_add(1) {
                    Some(n) if s < last => next = n,
                    _ => break,
                }
                continue;
            }
            if l > last {
                self.tree.node_mut(t).start = last + 1;
                break;
            }
            self.tree.remove(s);
            self.len -= 1;
            if l == last {
                break;
            }
            next = l + 1;
        }
    }

    /// One descent to `key`, raising every bound on the way to `reach`:
    /// the node starting at `key` (if any) and the nodes just before and
    /// just after it in address order.
    fn around_raising(&mut self, key: u64, reach: u64) -> (u32, u32, u32) {
        let (mut t, mut at, mut before, mut after) = (self.tree.root, NIL, NIL, NIL);
        while t != NIL {
            let n = self.tree.node_mut(t);
            n.reach = n.reach.max(reach);
            if n.start < key {
                before = t;
                t = n.right;
            } else if n.start > key {
                after = t;
                t = n.left;
            } else {
                at = t;
                break;
            }
        }
        if at != NIL {
            let mut l = self.tree.node(at).left;
            while l != NIL {
                before = l;
                l = self.tree.node(l).right;
            }
            let mut r = self.tree.node(at).right;
            while r != NIL {
                after = r;
                r = self.tree.node(r).left;
            }
        }
        (at, before, after)
    }

    /// Moves the live hole starting at `key` to the larger `[start, last]`,
    /// raising the bounds on its path. Its order among the nodes stays: the
    /// caller only grows it over released IOVA, where no node starts.
    fn grow(&mut self, key: u64, start: u64, last: u64) {
        let reach = reach_of_span(last - start);
        let mut t = self.tree.root;
        while t != NIL {
            let n = self.tree.node_mut(t);
            n.reach = n.reach.max(reach);
            if key < n.start {
                t = n.left;
            } else if key > n.start {
                t = n.right;
            } else {
                (n.start, n.last) = (start, last);
                return;
            }
        }
        debug_assert!(false, "no hole starts at {key:#x}");
    }

    /// Marks `[start, last]` free, merging with touching holes. The caller
    /// guarantees the range overlaps no hole and belongs to one allowed span.
    pub fn release(&mut self, start: u64, last: u64) {
        let reach = reach_of_span(last - start);
        let (at, before, after) = loop {
            let (at, before, after) = self.around_raising(start, reach);
            // A tombstone further inside the range (that range was carved
            // again since) goes; the range is one hole now.
            if after != NIL && self.tree.node(after).start <= last {
                debug_assert!(!self.tree.node(after).live);
                let s = self.tree.node(after).start;
                self.tree.remove(s);
                continue;
            }
            break (at, before, after);
        };
        debug_assert!(at == NIL || !self.tree.node(at).live);
        let live = |t: u32| t != NIL && self.tree.node(t).live;
        let before = live(before)
            .then(|| self.bounds(before))
            .filter(|&(_, l)| l.checked_add(1) == Some(start));
        let after = live(after)
            .then(|| self.bounds(after))
            .filter(|&(s, _)| last.checked_add(1) == Some(s));
        if before.is_none() && after.is_none() {
            match at {
                // The range a map filled comes back: its tombstone lives
                // again, with the bounds on its path raised already.
                NIL => self.insert(start, last),
                t => {
                    let n = self.tree.node_mut(t);
                    (n.live, n.last) = (true, last);
                    self.len += 1;
                }
            }
            return;
        }
        // A neighbour grows over the range: the tombstone in it goes.
        if at != NIL {
            self.tree.remove(start);
        }
        match (before, after) {
            (Some((s, _)), Some((a, l))) => {
                self.tree.remove(a);
                self.len -= 1;
                self.grow(s, s, l);
            }
            (Some((s, _)), None) => self.grow(s, s, last),
            (None, Some((a, l))) => self.grow(a, start, l),
            (None, None) => unreachable!("handled above"),
        }
    }

    /// The lowest hole with start ≥ `from` and `last - start ≥ min_span`.
    /// Takes `&mut self` to tighten the bounds of subtrees found to hold
    /// no fit.
    pub fn first_fit(&mut self, min_span: u64, from: u64) -> Option<(u64, u64)> {
        self.first_fit_in(self.tree.root, min_span, from)
    }

    fn first_fit_in(&mut self, t: u32, min_span: u64, from: u64) -> Option<(u64, u64)> {
        if t == NIL || self.tree.reach(t) < reach_of_span(min_span) {
            return None;
        }
        let n = self.tree.node(t);
        let (start, last, live, left, right) = (n.start, n.last, n.live, n.left, n.right);
        if start < from {
            return self.first_fit_in(right, min_span, from);
        }
        if let Some(hit) = self.first_fit_in(left, min_span, from) {
            return Some(hit);
        }
        if live && last - start >= min_span {
            return Some((start, last));
        }
        let hit = self.first_fit_in(right, min_span, from);
        if hit.is_none() {
            // Nothing in this subtree fits: its bound comes down.
            self.tree.update(t);
        }
        hit
    }

    /// Every hole in address order (for tests and debugging).
    pub fn to_vec(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = Vec::new();
        let mut t = self.tree.root;
        while t != NIL || !stack.is_empty() {
            while t != NIL {
                stack.push(t);
                t = self.tree.node(t).left;
            }
            let Some(i) = stack.pop() else { break };
            let n = self.tree.node(i);
            if n.live {
                out.push((n.start, n.last));
            }
            t = n.right;
        }
        out
    }

    /// Nodes in the tree, holes and tombstones; for tests.
    #[cfg(test)]
    fn nodes_in_use(&self) -> usize {
        self.tree.nodes_in_use()
    }

    /// Checks every invariant; for tests.
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.tree.check(), self.len);
        let holes = self.to_vec();
        for w in holes.windows(2) {
            assert!(w[0].1 < w[1].0, "holes overlap or are out of order");
        }
        // No node starts inside a live hole.
        let mut t = self.tree.at_or_after(0);
        while let Some(i) = t {
            let s = self.tree.node(i).start;
            let inside = holes.iter().any(|&(hs, hl)| hs < s && s <= hl);
            assert!(!inside, "a node starts inside a hole at {s:#x}");
            t = s.checked_add(1).and_then(|k| self.tree.at_or_after(k));
        }
    }
}

#[cfg(test)]
mod tests;
