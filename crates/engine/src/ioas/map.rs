//! Mapping, unmapping and sharing pages between areas (Linux `iopt_map_pages`,
//! `iopt_unmap_iova`, `iopt_get_pages`): all or nothing.

use super::*;

impl IoPagetable {
    /// Maps `slices` back to back at `iova` (or at an allocated IOVA when
    /// `iova` is `None`), `length` bytes in all. Returns the IOVA. All or nothing.
    pub fn map_pages(
        &mut self,
        slices: &[PagesSlice],
        length: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        // One area allocation per slice, before anything else (as Linux does).
        for _ in slices {
            self.fail_nth.check()?;
        }
        self.budget.room(slices.len() as u64)?;
        if length == 0 || length & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let first = slices.first().ok_or(Errno::EINVAL)?;
        let dst = match iova {
            None => {
                let addr = match first.pages.source() {
                    crate::pages::Source::User { base, .. }
                    | crate::pages::Source::File { base, .. } => {
                        base.wrapping_add(first.start_byte)
                    }
                };
                let got = self.alloc_iova(addr, length)?;
                debug_assert!(self.check_iova(got, length).is_ok());
                got
            }
            Some(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
        };
        let mut at = dst;
        let mut inserted = Vec::with_capacity(slices.len());
        let mut outcome = Ok(dst);
        for s in slices {
            match self.check_slice(s, at, prot) {
                Ok(area) => {
                    let next = at.checked_add(s.length);
                    inserted.push(area.start);
                    self.insert_area(area);
                    match next {
                        Some(n) => at = n,
                        None => break,
                    }
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() && !self.domains.is_empty() {
            for (i, &start) in inserted.iter().enumerate() {
                if let Err(e) = self.fill_area(start) {
                    for &done in &inserted[..i] {
                        self.unfill_area(done);
                    }
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_err() {
            for start in inserted {
                self.remove_area(start);
            }
        }
        outcome
    }

    /// Linux `iopt_insert_area`'s checks.
    pub(super) fn check_slice(&self, s: &PagesSlice, iova: u64, prot: Prot) -> Result<Area> {
        if prot.write && !s.pages.writable() {
            return Err(Errno::EPERM);
        }
        let page_offset = s.start_byte % PAGE_SIZE;
        if page_offset & (self.iova_alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(s.length - 1).ok_or(Errno::EOVERFLOW)?;
        let last_byte = s
            .start_byte
            .checked_add(s.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        if last_byte / PAGE_SIZE >= s.pages.npages() {
            return Err(Errno::EOVERFLOW);
        }
        Ok(Area {
            start: iova,
            last,
            pages: s.pages.clone(),
            start_byte: s.start_byte,
            prot,
            num_pins: 0,
        })
    }

    /// Unmaps every area inside `[start, last]`; returns the bytes unmapped.
    /// `ENOENT` if none is, or if one only partly is (then nothing changes);
    /// `EBUSY` if one holds pins.
    pub fn unmap_range(&mut self, start: u64, last: u64) -> Result<u64> {
        let mut victims = Vec::new();
        // The areas that meet `[start, last]`, in order: the one holding
        // `start` (if any), then those starting inside, in one walk.
        let from = first_intersecting(&self.areas, start, last, |a| a.last).unwrap_or(start);
        for (&s, a) in self.areas.range(from..=last) {
            if a.start < start || a.last > last {
                return Err(Errno::ENOENT);
            }
            if a.num_pins != 0 {
                return Err(Errno::EBUSY);
            }
            victims.push(s);
        }
        if victims.is_empty() {
            return Err(Errno::ENOENT);
        }
        let mut unmapped = 0;
        for s in victims {
            if !self.domains.is_empty() {
                self.unfill_area(s);
            }
            if let Some(a) = self.remove_area(s) {
                unmapped += a.length();
            }
        }
        Ok(unmapped)
    }

    /// Linux `iopt_unmap_iova`.
    pub fn unmap(&mut self, iova: u64, length: u64) -> Result<u64> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        self.unmap_range(iova, last)
    }

    /// Unmaps everything; an empty table is success with 0 bytes.
    pub fn unmap_all(&mut self) -> Result<u64> {
        match self.unmap_range(0, ULONG_MAX) {
            Err(Errno::ENOENT) => Ok(0),
            other => other,
        }
    }

    /// The slices of pages behind `[iova, iova + length)`, which contiguous
    /// areas must cover exactly (Linux `iopt_get_pages`, for `IOAS_COPY`).
    pub fn get_pages(&self, iova: u64, length: u64) -> Result<Vec<PagesSlice>> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        let mut out = Vec::new();
        let mut cur = iova;
        loop {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            self.fail_nth.check()?;
            let piece_last = area.last.min(last);
            out.push(PagesSlice {
                pages: area.pages.clone(),
                start_byte: area.byte_at(cur),
                length: piece_last - cur + 1,
            });
            if piece_last == last {
                return Ok(out);
            }
            cur = piece_last + 1;
        }
    }
}
