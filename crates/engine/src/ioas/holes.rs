//! An index of free IOVA holes for automatic allocation in O(log n).
//!
//! Holes are disjoint inclusive ranges `[start, last]`, kept in a treap ordered
//! by `start` and augmented with the largest `last - start` of each subtree, so
//! the lowest hole of at least a given size is found by one descent instead of
//! a scan over every area (Linux scans; with a million areas that is the
//! difference between microseconds and milliseconds).
//!
//! Invariants: holes never overlap; `max_span` of a node is the maximum of its
//! own span and its children's; priorities form a max-heap.

const NIL: u32 = u32::MAX;

/// A hole's `(start, last)`.
type Hole = (u64, u64);

#[derive(Clone, Debug)]
struct Node {
    start: u64,
    last: u64,
    /// Largest `last - start` in this subtree.
    max_span: u64,
    priority: u32,
    left: u32,
    right: u32,
}

/// The hole index. Nodes live in an arena; freed slots are reused.
#[derive(Clone, Debug)]
pub struct FreeSpace {
    nodes: Vec<Node>,
    free_slots: Vec<u32>,
    root: u32,
    len: usize,
    rng: u64,
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
            nodes: Vec::new(),
            free_slots: Vec::new(),
            root: NIL,
            len: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
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

    /// Removes every hole.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free_slots.clear();
        self.root = NIL;
        self.len = 0;
    }

    fn next_priority(&mut self) -> u32 {
        // xorshift64: priorities only need to look random.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    fn max_of(&self, i: u32) -> u64 {
        if i == NIL {
            0
        } else {
            self.node(i).max_span
        }
    }

    fn has_any(&self, i: u32, min_span: u64) -> bool {
        i != NIL && self.node(i).max_span >= min_span
    }

    fn update(&mut self, i: u32) {
        let n = self.node(i);
        let (l, r, own) = (n.left, n.right, n.last - n.start);
        let m = own.max(self.max_of(l)).max(self.max_of(r));
        self.nodes[i as usize].max_span = m;
    }

    /// Splits `t` into (starts < key, starts ≥ key).
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.node(t).start < key {
            let (a, b) = self.split(self.node(t).right, key);
            self.nodes[t as usize].right = a;
            self.update(t);
            (t, b)
        } else {
            let (a, b) = self.split(self.node(t).left, key);
            self.nodes[t as usize].left = b;
            self.update(t);
            (a, t)
        }
    }

    /// Joins two treaps where every start of `a` is below every start of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.node(a).priority > self.node(b).priority {
            let r = self.merge(self.node(a).right, b);
            self.nodes[a as usize].right = r;
            self.update(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.nodes[b as usize].left = l;
            self.update(b);
            b
        }
    }

    /// Adds hole `[start, last]`; the caller guarantees it overlaps no hole.
    pub fn insert(&mut self, start: u64, last: u64) {
        debug_assert!(start <= last);
        let priority = self.next_priority();
        let node = Node {
            start,
            last,
            max_span: last - start,
            priority,
            left: NIL,
            right: NIL,
        };
        let i = match self.free_slots.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.root = self.insert_in(self.root, i);
        self.len += 1;
    }

    /// Puts node `i` into subtree `t`: down the search path to where its
    /// priority belongs, then the subtree there split around it (one
    /// descent; a split and two merges of the whole tree cost three).
    fn insert_in(&mut self, t: u32, i: u32) -> u32 {
        if t == NIL {
            return i;
        }
        if self.node(i).priority > self.node(t).priority {
            let (a, b) = self.split(t, self.node(i).start);
            let n = &mut self.nodes[i as usize];
            (n.left, n.right) = (a, b);
            self.update(i);
            return i;
        }
        if self.node(i).start < self.node(t).start {
            let l = self.insert_in(self.node(t).left, i);
            self.nodes[t as usize].left = l;
        } else {
            let r = self.insert_in(self.node(t).right, i);
            self.nodes[t as usize].right = r;
        }
        self.update(t);
        t
    }

    /// Removes the hole that starts at `start`; returns its last.
    pub fn remove(&mut self, start: u64) -> Option<u64> {
        let (root, removed) = self.remove_in(self.root, start);
        self.root = root;
        removed
    }

    /// Takes the node starting at `start` out of subtree `t`, its children
    /// merged in its place.
    fn remove_in(&mut self, t: u32, start: u64) -> (u32, Option<u64>) {
        if t == NIL {
            return (NIL, None);
        }
        let (at, left, right, last) = {
            let n = self.node(t);
            (n.start, n.left, n.right, n.last)
        };
        if start == at {
            let joined = self.merge(left, right);
            self.free_slots.push(t);
            self.len -= 1;
            return (joined, Some(last));
        }
        let removed = if start < at {
            let (l, removed) = self.remove_in(left, start);
            self.nodes[t as usize].left = l;
            removed
        } else {
            let (r, removed) = self.remove_in(right, start);
            self.nodes[t as usize].right = r;
            removed
        };
        if removed.is_some() {
            self.update(t);
        }
        (t, removed)
    }

    /// Moves the bounds of the hole starting at `start` to `[new_start,
    /// new_last]`, and fixes the spans on its path. The caller keeps the
    /// order of holes: the new bounds lie within the old ones, or reach out
    /// over free IOVA only.
    fn move_bounds(&mut self, start: u64, new_start: u64, new_last: u64) {
        self.root = self.move_bounds_in(self.root, start, new_start, new_last);
    }

    fn move_bounds_in(&mut self, t: u32, start: u64, new_start: u64, new_last: u64) -> u32 {
        if t == NIL {
            return t;
        }
        let at = self.node(t).start;
        if start == at {
            let n = &mut self.nodes[t as usize];
            (n.start, n.last) = (new_start, new_last);
        } else if start < at {
            self.move_bounds_in(self.node(t).left, start, new_start, new_last);
        } else {
            self.move_bounds_in(self.node(t).right, start, new_start, new_last);
        }
        self.update(t);
        t
    }

    /// The hole with the largest start ≤ `key`.
    pub fn at_or_before(&self, key: u64) -> Option<(u64, u64)> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = self.node(t);
            if n.start <= key {
                best = Some((n.start, n.last));
                t = n.right;
            } else {
                t = n.left;
            }
        }
        best
    }

    /// The holes with the largest start < `key` and the smallest start ≥
    /// `key`, in one descent.
    fn around(&self, key: u64) -> (Option<Hole>, Option<Hole>) {
        let (mut t, mut below, mut above) = (self.root, None, None);
        while t != NIL {
            let n = self.node(t);
            if n.start < key {
                below = Some((n.start, n.last));
                t = n.right;
            } else {
                above = Some((n.start, n.last));
                t = n.left;
            }
        }
        (below, above)
    }

    /// The hole with the smallest start ≥ `key`.
    pub fn at_or_after(&self, key: u64) -> Option<(u64, u64)> {
        let mut t = self.root;
        let mut best = None;
        while t != NIL {
            let n = self.node(t);
            if n.start >= key {
                best = Some((n.start, n.last));
                t = n.left;
            } else {
                t = n.right;
            }
        }
        best
    }

    /// The lowest hole with start ≥ `from` and `last - start ≥ min_span`.
    pub fn first_fit(&self, min_span: u64, from: u64) -> Option<(u64, u64)> {
        self.first_fit_in(self.root, min_span, from)
    }

    fn first_fit_in(&self, t: u32, min_span: u64, from: u64) -> Option<(u64, u64)> {
        if !self.has_any(t, min_span) {
            return None;
        }
        let n = self.node(t);
        if n.start >= from {
            if let Some(hit) = self.first_fit_in(n.left, min_span, from) {
                return Some(hit);
            }
            if n.last - n.start >= min_span {
                return Some((n.start, n.last));
            }
        }
        self.first_fit_in(n.right, min_span, from)
    }

    /// Every hole in address order (for tests and debugging).
    pub fn to_vec(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = Vec::new();
        let mut t = self.root;
        while t != NIL || !stack.is_empty() {
            while t != NIL {
                stack.push(t);
                t = self.node(t).left;
            }
            let Some(i) = stack.pop() else { break };
            let n = self.node(i);
            out.push((n.start, n.last));
            t = n.right;
        }
        out
    }

    /// Marks `[start, last]` used: trims or splits every hole it touches.
    pub fn carve(&mut self, start: u64, last: u64) {
        let (root, held) = self.cut_in(self.root, start, last);
        self.root = root;
        let mut next = match held {
            Some((s, l)) if s < start && l > last => {
                // The hole kept its lower part; its upper part is new.
                self.insert(last + 1, l);
                return;
            }
            Some((_, l)) if l >= last => return,
            Some((_, l)) => l + 1,
            None => start,
        };
        // Holes that start inside the range (a carve over several).
        while let Some((s, l)) = self.at_or_after(next) {
            if s > last {
                break;
            }
            if l > last {
                self.move_bounds(s, last + 1, l);
                break;
            }
            self.remove(s);
            if l == last {
                break;
            }
            next = l + 1;
        }
    }

    /// Cuts `[start, last]` out of the hole of subtree `t` that holds
    /// `start`, in one descent: the lower part left keeps the node, moved
    /// in place; else the upper part does; a hole with neither goes. The
    /// hole's old bounds are returned (`None` when no hole holds `start`);
    /// an upper part beside a lower one is the caller's to insert.
    fn cut_in(&mut self, t: u32, start: u64, last: u64) -> (u32, Option<Hole>) {
        if t == NIL {
            return (NIL, None);
        }
        let (s, l, left, right) = {
            let n = self.node(t);
            (n.start, n.last, n.left, n.right)
        };
        let held = if start < s {
            let (sub, held) = self.cut_in(left, start, last);
            self.nodes[t as usize].left = sub;
            held
        } else if start > l {
            let (sub, held) = self.cut_in(right, start, last);
            self.nodes[t as usize].right = sub;
            held
        } else {
            match (s < start, l > last) {
                (true, _) => self.nodes[t as usize].last = start - 1,
                (false, true) => self.nodes[t as usize].start = last + 1,
                (false, false) => {
                    let joined = self.merge(left, right);
                    self.free_slots.push(t);
                    self.len -= 1;
                    return (joined, Some((s, l)));
                }
            }
            Some((s, l))
        };
        if held.is_some() {
            self.update(t);
        }
        (t, held)
    }

    /// Marks `[start, last]` free, merging with touching holes. The caller
    /// guarantees the range overlaps no hole and belongs to one allowed span.
    pub fn release(&mut self, start: u64, last: u64) {
        // No hole overlaps the range, so the holes either side of `start`
        // are the only ones that can touch it: one descent finds both.
        let (before, after) = self.around(start);
        let before = before.filter(|&(_, l)| l.checked_add(1) == Some(start));
        let after = after.filter(|&(s, _)| last.checked_add(1) == Some(s));
        // A touching hole grows in place (its order among the holes stays);
        // only a hole touching none is a new node.
        match (before, after) {
            (Some((s, _)), Some((a, l))) => {
                self.remove(a);
                self.move_bounds(s, s, l);
            }
            (Some((s, _)), None) => self.move_bounds(s, s, last),
            (None, Some((a, l))) => self.move_bounds(a, start, l),
            (None, None) => self.insert(start, last),
        }
    }
}

#[cfg(test)]
mod tests;
