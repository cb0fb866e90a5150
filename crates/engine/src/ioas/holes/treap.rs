//! The treap under the hole index: nodes in an arena, ordered by `start`,
//! heap-ordered by a random priority, each carrying an upper bound of the
//! largest live hole in its subtree.
//!
//! Invariants: starts are unique; priorities form a max-heap; a node's
//! `reach` is at least `reach_of_span` of every live hole in its subtree
//! (an upper bound, not always exact: a hole that shrinks or dies leaves
//! its ancestors' bounds as they were, and the next search that finds no
//! fit below a node tightens it). Freed slots are reused.

/// No node.
pub(super) const NIL: u32 = u32::MAX;

/// One hole, or the tombstone of one (`live == false`).
#[derive(Clone, Debug)]
pub(super) struct Node {
    pub start: u64,
    pub last: u64,
    /// Upper bound of `reach_of_span` over the live holes of this subtree;
    /// 0 only when it has none.
    pub reach: u64,
    pub priority: u32,
    pub left: u32,
    pub right: u32,
    /// A dead node holds no free IOVA; it keeps its place so that the
    /// range that consumed it can give it back without restructuring.
    pub live: bool,
}

/// `span + 1` (saturating), so that 0 can mean "no live hole". A search
/// for `min_span` looks at subtrees with `reach >= reach_of_span(min_span)`;
/// saturation only makes that test let a subtree through, never skip one.
pub(super) fn reach_of_span(span: u64) -> u64 {
    span.saturating_add(1)
}

/// The arena and its root.
#[derive(Clone, Debug)]
pub(super) struct Treap {
    nodes: Vec<Node>,
    free_slots: Vec<u32>,
    pub root: u32,
    rng: u64,
}

impl Treap {
    pub fn new() -> Self {
        Treap {
            nodes: Vec::new(),
            free_slots: Vec::new(),
            root: NIL,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Nodes in use, live or dead; for tests.
    #[cfg(test)]
    pub fn nodes_in_use(&self) -> usize {
        self.nodes.len() - self.free_slots.len()
    }

    pub fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    pub fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    pub fn reach(&self, i: u32) -> u64 {
        if i == NIL {
            0
        } else {
            self.node(i).reach
        }
    }

    fn next_priority(&mut self) -> u32 {
        // xorshift64: priorities only need to look random.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    /// Recomputes node `i`'s bound from its own hole and its children's
    /// bounds.
    pub fn update(&mut self, i: u32) {
        let n = self.node(i);
        let own = if n.live {
            reach_of_span(n.last - n.start)
        } else {
            0
        };
        let m = own.max(self.reach(n.left)).max(self.reach(n.right));
        self.node_mut(i).reach = m;
    }

    /// The node with the smallest start ≥ `key`, live or dead.
    pub fn at_or_after(&self, key: u64) -> Option<u32> {
        let (mut t, mut best) = (self.root, None);
        while t != NIL {
            let n = self.node(t);
            if n.start >= key {
                best = Some(t);
                t = n.left;
            } else {
                t = n.right;
            }
        }
        best
    }

    /// Splits `t` into (starts < key, starts ≥ key).
    fn split(&mut self, t: u32, key: u64) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.node(t).start < key {
            let (a, b) = self.split(self.node(t).right, key);
            self.node_mut(t).right = a;
            self.update(t);
            (t, b)
        } else {
            let (a, b) = self.split(self.node(t).left, key);
            self.node_mut(t).left = b;
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
            self.node_mut(a).right = r;
            self.update(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.node_mut(b).left = l;
            self.update(b);
            b
        }
    }

    /// Adds live hole `[start, last]`; the caller guarantees no node starts
    /// at `start`.
    pub fn insert(&mut self, start: u64, last: u64) {
        debug_assert!(start <= last);
        let priority = self.next_priority();
        let node = Node {
            start,
            last,
            reach: reach_of_span(last - start),
            priority,
            left: NIL,
            right: NIL,
            live: true,
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
            let n = self.node_mut(i);
            (n.left, n.right) = (a, b);
            self.update(i);
            return i;
        }
        if self.node(i).start < self.node(t).start {
            let l = self.insert_in(self.node(t).left, i);
            self.node_mut(t).left = l;
        } else {
            let r = self.insert_in(self.node(t).right, i);
            self.node_mut(t).right = r;
        }
        self.update(t);
        t
    }

    /// Takes the node starting at `start` out of the tree; returns whether
    /// it was live.
    pub fn remove(&mut self, start: u64) -> Option<bool> {
        let (root, removed) = self.remove_in(self.root, start);
        self.root = root;
        removed
    }

    /// Takes the node starting at `start` out of subtree `t`, its children
    /// merged in its place.
    fn remove_in(&mut self, t: u32, start: u64) -> (u32, Option<bool>) {
        if t == NIL {
            return (NIL, None);
        }
        let (at, left, right, live) = {
            let n = self.node(t);
            (n.start, n.left, n.right, n.live)
        };
        if start == at {
            let joined = self.merge(left, right);
            self.free_slots.push(t);
            return (joined, Some(live));
        }
        let removed = if start < at {
            let (l, removed) = self.remove_in(left, start);
            self.node_mut(t).left = l;
            removed
        } else {
            let (r, removed) = self.remove_in(right, start);
            self.node_mut(t).right = r;
            removed
        };
        if removed.is_some() {
            self.update(t);
        }
        (t, removed)
    }

    /// Checks every invariant; for tests. Returns the live count.
    #[cfg(test)]
    pub fn check(&self) -> usize {
        fn walk(t: &Treap, i: u32, lo: Option<u64>, hi: Option<u64>, live: &mut usize) -> u64 {
            if i == NIL {
                return 0;
            }
            let n = t.node(i);
            assert!(lo.is_none_or(|lo| n.start > lo) && hi.is_none_or(|hi| n.start < hi));
            for c in [n.left, n.right] {
                assert!(c == NIL || t.node(c).priority <= n.priority);
            }
            let own = if n.live {
                *live += 1;
                reach_of_span(n.last - n.start)
            } else {
                0
            };
            let l = walk(t, n.left, lo, Some(n.start), live);
            let r = walk(t, n.right, Some(n.start), hi, live);
            let truth = own.max(l).max(r);
            assert!(n.reach >= truth, "bound below the largest hole");
            truth
        }
        let mut live = 0;
        walk(self, self.root, None, None, &mut live);
        live
    }
}
