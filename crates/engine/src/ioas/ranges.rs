//! Reserved IOVA (never mapped) and allowed IOVA (where automatic allocation
//! may look): Linux `iopt_reserve_iova`, `iopt_set_allow_iova`.

use super::*;

impl IoPagetable {
    /// Reserves `[start, last]` for `owner` (Linux `iopt_reserve_iova`).
    pub fn reserve(&mut self, start: u64, last: u64, owner: ReservedOwner) -> Result<()> {
        if self.area_intersects(start, last) || self.allowed_intersects(start, last) {
            return Err(Errno::EADDRINUSE);
        }
        self.budget.room(1)?;
        self.fail_nth.check()?;
        self.reserved.push(Reserved { start, last, owner });
        self.budget.add(1);
        self.rebuild_reserved();
        Ok(())
    }

    /// Drops every range `owner` reserved.
    pub fn remove_reserved(&mut self, owner: ReservedOwner) {
        let before = self.reserved.len();
        self.reserved.retain(|r| r.owner != owner);
        self.budget.remove((before - self.reserved.len()) as u64);
        if self.reserved.len() != before {
            self.rebuild_reserved();
        }
    }

    pub(super) fn rebuild_reserved(&mut self) {
        let mut all: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        all.sort_unstable();
        self.reserved_spans.clear();
        let mut cur: Option<(u64, u64)> = None;
        for (s, l) in all {
            cur = match cur {
                Some((cs, cl)) if cl.checked_add(1).is_none_or(|n| n >= s) => Some((cs, cl.max(l))),
                Some(prev) => {
                    self.reserved_spans.insert(prev.0, prev.1);
                    Some((s, l))
                }
                None => Some((s, l)),
            };
        }
        if let Some((s, l)) = cur {
            self.reserved_spans.insert(s, l);
        }
        self.rebuild_free_space();
    }

    /// Replaces the allowed ranges. The caller has checked each range
    /// (`start < last`, no overlaps among them). `EADDRINUSE` if one hits a
    /// reserved range; then nothing changes.
    pub fn set_allowed(&mut self, ranges: &[(u64, u64)]) -> Result<()> {
        if ranges.iter().any(|&(s, l)| self.reserved_intersects(s, l)) {
            return Err(Errno::EADDRINUSE);
        }
        let allowed: BTreeMap<u64, u64> = ranges.iter().copied().collect();
        let (old, new) = (self.allowed.len() as u64, allowed.len() as u64);
        self.budget.room(new.saturating_sub(old))?;
        self.budget.remove(old);
        self.budget.add(new);
        self.allowed = allowed;
        self.rebuild_free_space();
        Ok(())
    }

    /// How many allowed ranges are set.
    pub fn allowed_count(&self) -> usize {
        self.allowed.len()
    }

    /// The allowed ranges as `(start, last)`, exactly as given, by start.
    pub fn allowed(&self) -> Vec<(u64, u64)> {
        self.allowed.iter().map(|(&s, &l)| (s, l)).collect()
    }

    /// The holes between reserved ranges over the whole IOVA space
    /// (`IOAS_IOVA_RANGES`).
    pub fn usable_ranges(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = Some(0u64);
        for (&s, &l) in &self.reserved_spans {
            let Some(n) = next else { break };
            if s > n {
                out.push((n, s - 1));
            }
            next = l.checked_add(1);
        }
        if let Some(n) = next {
            out.push((n, ULONG_MAX));
        }
        out
    }
}
