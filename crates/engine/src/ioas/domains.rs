//! Domains that mirror the table: every area mapped in each (Linux
//! `iopt_table_add_domain`, `iopt_table_remove_domain`).

use super::*;

impl IoPagetable {
    /// Domains mirroring this table.
    pub fn domains(&self) -> &[DomainRef] {
        &self.domains
    }

    pub(super) fn area_pages(area: &Area) -> (u64, u64) {
        (
            area.start_byte / PAGE_SIZE,
            (area.start_byte + area.length() - 1) / PAGE_SIZE,
        )
    }

    /// Maps `area` into `domain`; on failure nothing of it stays mapped there.
    /// With `small`, leaves of at most one CPU page (large pages disabled, so
    /// that areas can later be split).
    pub(super) fn map_area_into(
        area: &Area,
        domain: &DomainRef,
        fail_nth: &FailNth,
        small: bool,
    ) -> Result<()> {
        fail_nth.check()?;
        let prot = area.prot;
        let (first, last) = Self::area_pages(area);
        // Runs of pages whose addresses follow one another, found before
        // the table is locked; one unpinned page fails the whole area.
        let runs = area.pages.address_runs(first, last).ok_or(Errno::EFAULT)?;
        let mut table = domain.lock();
        let length = area.length();
        let end_byte = area.start_byte + length;
        let mut done = 0u64;
        let mut outcome = Ok(());
        'runs: for (index, pa, pages) in runs {
            let from = (index * PAGE_SIZE).max(area.start_byte);
            let to = ((index + pages) * PAGE_SIZE).min(end_byte);
            let mut at = from;
            while at < to {
                // With `small`, leaves of at most one CPU page.
                let n = if small {
                    (PAGE_SIZE - at % PAGE_SIZE).min(to - at)
                } else {
                    to - at
                };
                let address = pa + (at - index * PAGE_SIZE);
                if let Err(e) = table.map(area.start + done, address, n, prot) {
                    done += e.mapped;
                    outcome = Err(map_errno(e.kind));
                    break 'runs;
                }
                done += n;
                at += n;
            }
        }
        if outcome.is_err() && done > 0 {
            if let Ok((_, gather)) = table.unmap(area.start, done) {
                let _ = gather.into_range();
            }
        }
        outcome
    }

    pub(super) fn unmap_area_from(area: &Area, domain: &DomainRef) {
        if let Ok((_, gather)) = domain.lock().unmap(area.start, area.length()) {
            // The engine translates by walking the tables; it keeps no IOTLB to
            // invalidate.
            let _ = gather.into_range();
        }
    }

    /// Pins an area's pages for the domains and maps it into each. All or nothing.
    pub(super) fn fill_area(&mut self, start: u64) -> Result<()> {
        // On failure the caller removes the area, pages and all.
        let _ = self.own_pages_in(start, start);
        let area = self.areas.get(&start).cloned().ok_or(Errno::ENOENT)?;
        if area.pages.revoked() {
            return Ok(());
        }
        let (first, last) = Self::area_pages(&area);
        area.pages.pin(first, last, area.prot.write)?;
        for (i, d) in self.domains.iter().enumerate() {
            if let Err(e) = Self::map_area_into(&area, d, &self.fail_nth, self.disable_large_pages)
            {
                for undo in &self.domains[..i] {
                    Self::unmap_area_from(&area, undo);
                }
                area.pages.unpin(first, last);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Undoes [`fill_area`](Self::fill_area).
    pub(super) fn unfill_area(&mut self, start: u64) {
        if let Some(area) = self
            .areas
            .get(&start)
            .cloned()
            .filter(|a| !a.pages.revoked())
        {
            for d in &self.domains {
                Self::unmap_area_from(&area, d);
            }
            let (first, last) = Self::area_pages(&area);
            area.pages.unpin(first, last);
        }
    }

    /// The exporter of file `file_id` revoked its memory: its areas leave
    /// every domain, for good (Linux `iopt_revoke_notify`; a restore by the
    /// exporter brings back new maps, never these). The areas themselves
    /// stay until unmapped.
    pub fn revoke_file(&mut self, file_id: u64) {
        let starts: Vec<u64> = self
            .areas
            .values()
            .filter(|a| a.pages.file_id() == Some(file_id) && !a.pages.revoked())
            .map(|a| a.start)
            .collect();
        for start in starts {
            self.unfill_area(start);
            if let Some(a) = self.areas.get(&start) {
                a.pages.set_revoked(true);
            }
        }
    }

    /// Starts mirroring into `domain` (Linux `iopt_table_add_domain`): raises
    /// the IOVA alignment to the domain's smallest page (`EINVAL` above
    /// PAGE_SIZE, `EADDRINUSE` if an area would be misaligned), reserves the
    /// IOVA outside its aperture (`EADDRINUSE` on conflict) and maps every area
    /// into it. All or nothing.
    pub fn add_domain(&mut self, domain: DomainRef) -> Result<()> {
        let (pgsize, aperture) = {
            let t = domain.lock();
            (t.pgsize_bitmap(), t.aperture())
        };
        let align = (1u64 << pgsize.trailing_zeros()).max(self.iova_alignment);
        if align > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        if align != self.iova_alignment {
            self.check_alignment(align)?;
        }
        let owner = ReservedOwner::Hwpt(domain.hwpt);
        let mut reserved = Ok(());
        if aperture.start != 0 {
            reserved = self.reserve(0, aperture.start - 1, owner);
        }
        if reserved.is_ok() && aperture.last != ULONG_MAX {
            reserved = self.reserve(aperture.last + 1, ULONG_MAX, owner);
        }
        if let Err(e) = reserved {
            self.remove_reserved(owner);
            return Err(e);
        }
        let first_domain = self.domains.is_empty();
        let owned = if first_domain {
            self.own_pages_in(0, ULONG_MAX)
        } else {
            OwnedPages::default()
        };
        let starts: Vec<u64> = self.areas.keys().copied().collect();
        // (index of the failing area, errno, whether that area is still pinned)
        let mut failure = None;
        for (i, &start) in starts.iter().enumerate() {
            let area = self.areas[&start].clone();
            if area.pages.revoked() {
                continue;
            }
            let (pf, pl) = Self::area_pages(&area);
            if first_domain {
                if let Err(e) = area.pages.pin(pf, pl, area.prot.write) {
                    failure = Some((i, e, false));
                    break;
                }
            }
            if let Err(e) =
                Self::map_area_into(&area, &domain, &self.fail_nth, self.disable_large_pages)
            {
                failure = Some((i, e, first_domain));
                break;
            }
        }
        if let Some((failed_at, e, still_pinned)) = failure {
            for &start in &starts[..failed_at] {
                let area = &self.areas[&start];
                if area.pages.revoked() {
                    continue;
                }
                Self::unmap_area_from(area, &domain);
                if first_domain {
                    let (pf, pl) = Self::area_pages(area);
                    area.pages.unpin(pf, pl);
                }
            }
            if still_pinned {
                let area = &self.areas[&starts[failed_at]];
                let (pf, pl) = Self::area_pages(area);
                area.pages.unpin(pf, pl);
            }
            self.remove_reserved(owner);
            self.give_back(owned);
            return Err(e);
        }
        self.iova_alignment = align;
        self.domains.push(domain);
        Ok(())
    }

    /// Stops mirroring into the domain of `hwpt`: unmaps every area from it,
    /// drops the area pins with the last domain, releases the aperture
    /// reservations and lowers the alignment again. Never fails.
    pub fn remove_domain(&mut self, hwpt: u32) {
        let Some(pos) = self.domains.iter().position(|d| d.hwpt == hwpt) else {
            return;
        };
        let domain = self.domains.remove(pos);
        let last = self.domains.is_empty();
        for area in self.areas.values().filter(|a| !a.pages.revoked()) {
            Self::unmap_area_from(area, &domain);
            if last {
                let (pf, pl) = Self::area_pages(area);
                area.pages.unpin(pf, pl);
            }
        }
        self.remove_reserved(ReservedOwner::Hwpt(hwpt));
        let _ = self.recalculate_alignment(1);
    }
}
