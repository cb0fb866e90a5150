//! Automatic IOVA allocation and the holes it searches (Linux `iopt_alloc_iova`).

use super::*;

impl IoPagetable {
    /// Recomputes where automatic allocation may search after the allowed or
    /// reserved ranges changed, and drops the hole index: the next
    /// automatic allocation builds it again.
    pub(super) fn rebuild_free_space(&mut self) {
        self.free = None;
        self.alloc_spans.clear();
        let (lo, hi) = (PAGE_SIZE, ULONG_MAX - PAGE_SIZE);
        if self.allowed.is_empty() {
            self.alloc_spans.insert(lo, hi);
        } else {
            let mut cur: Option<(u64, u64)> = None;
            for (&s, &l) in &self.allowed {
                let (s, l) = (s.max(lo), l.min(hi));
                if s > l {
                    continue;
                }
                cur = match cur {
                    Some((cs, cl)) if cl.checked_add(1).is_some_and(|n| n >= s) => {
                        Some((cs, cl.max(l)))
                    }
                    Some(prev) => {
                        self.alloc_spans.insert(prev.0, prev.1);
                        Some((s, l))
                    }
                    None => Some((s, l)),
                };
            }
            if let Some((s, l)) = cur {
                self.alloc_spans.insert(s, l);
            }
        }
    }

    /// The hole index computed from scratch: the allocation spans minus the
    /// reserved ranges and the areas.
    pub(super) fn build_free_space(&self) -> FreeSpace {
        // Used = reserved ∪ areas, both sorted and disjoint among themselves.
        let mut used: Vec<(u64, u64)> = self.reserved_spans.iter().map(|(&s, &l)| (s, l)).collect();
        used.extend(self.areas.values().map(|a| (a.start, a.last)));
        used.sort_unstable();
        let mut free = FreeSpace::new();
        for (&ss, &sl) in &self.alloc_spans {
            let mut next = Some(ss);
            let begin = used.partition_point(|&(_, l)| l < ss);
            for &(us, ul) in &used[begin..] {
                let Some(n) = next else { break };
                if us > sl {
                    break;
                }
                if us > n {
                    free.insert(n, us - 1);
                }
                next = ul.checked_add(1).map(|x| x.max(n));
            }
            if let Some(n) = next {
                if n <= sl {
                    free.insert(n, sl);
                }
            }
        }
        free
    }

    pub(super) fn free_released(&mut self, start: u64, last: u64) {
        let Some(free) = self.free.as_mut() else {
            return;
        };
        let spans = self
            .alloc_spans
            .range(..=last)
            .rev()
            .take_while(|(_, &l)| l >= start)
            .map(|(&s, &l)| (s.max(start), l.min(last)));
        for (s, l) in spans {
            if s <= l {
                free.release(s, l);
            }
        }
    }

    /// Adds `area`; the caller has checked the budget's room.
    pub(super) fn insert_area(&mut self, area: Area) {
        if let Some(free) = self.free.as_mut() {
            free.carve(area.start, area.last);
        }
        self.areas.insert(area.start, area);
        self.budget.add(1);
    }

    pub(super) fn remove_area(&mut self, start: u64) -> Option<Area> {
        let area = self.areas.remove(&start)?;
        self.budget.remove(1);
        self.free_released(area.start, area.last);
        Some(area)
    }

    /// Chooses an IOVA for `length` bytes whose source address is `addr`
    /// (Linux `iopt_alloc_iova`): the lowest fitting hole, aligned to
    /// min(roundup_pow2(length), lowest set bit of addr, 2 MiB), keeping the
    /// source's page offset. Never IOVA 0.
    pub fn alloc_iova(&mut self, addr: u64, length: u64) -> Result<u64> {
        if length == 0 || length >= ULONG_MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let page_offset = addr % PAGE_SIZE;
        let by_length = length.next_power_of_two();
        let mut align = if addr == 0 {
            by_length
        } else {
            by_length.min(1 << addr.trailing_zeros())
        };
        if align >= HPAGE_SIZE {
            align = HPAGE_SIZE;
        }
        if align < self.iova_alignment {
            return Err(Errno::EINVAL);
        }
        // The hole index, built here if no automatic allocation needed it
        // yet, and kept from now on.
        let mut free = match self.free.take() {
            Some(free) => free,
            None => self.build_free_space(),
        };
        let found = self.lowest_fit(&mut free, length, align, page_offset);
        self.free = Some(free);
        found
    }

    /// The lowest IOVA in the holes of `free` where `length` bytes fit with
    /// `align` and `page_offset`, inside one allocation span.
    fn lowest_fit(
        &self,
        free: &mut FreeSpace,
        length: u64,
        align: u64,
        page_offset: u64,
    ) -> Result<u64> {
        let mut from = 0;
        while let Some((hs, hl)) = free.first_fit(length - 1, from) {
            let Some((&ss, &sl)) = self.alloc_spans.range(..=hs).next_back() else {
                break;
            };
            match fit_in(ss, sl, length, align, page_offset) {
                // Nothing in this allowed span can fit: skip the whole span.
                None => match sl.checked_add(1) {
                    Some(n) => from = n,
                    None => break,
                },
                Some(span_start) => {
                    if let Some(iova) = fit_in(hs.max(span_start), hl, length, align, page_offset) {
                        return Ok(iova);
                    }
                    match hs.checked_add(1) {
                        Some(n) => from = n,
                        None => break,
                    }
                }
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Checks a fixed IOVA (Linux `iopt_check_iova`).
    pub fn check_iova(&self, iova: u64, length: u64) -> Result<()> {
        if iova & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova
            .checked_add(length.wrapping_sub(1))
            .ok_or(Errno::EOVERFLOW)?;
        if self.reserved_intersects(iova, last) {
            return Err(Errno::EINVAL);
        }
        if self.area_intersects(iova, last) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }
}
