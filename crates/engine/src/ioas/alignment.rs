//! The IOVA alignment every area keeps, large pages, and cutting areas
//! (Linux `iopt_calculate_iova_alignment`, `iopt_cut_iova`).

use super::*;

impl IoPagetable {
    pub(super) fn check_alignment(&self, align: u64) -> Result<()> {
        let mask = align - 1;
        if self
            .areas
            .values()
            .any(|a| a.start & mask != 0 || a.length() & mask != 0 || a.page_offset() & mask != 0)
        {
            return Err(Errno::EADDRINUSE);
        }
        Ok(())
    }

    /// Recomputes the alignment from the large-page setting (Linux
    /// `iopt_calculate_iova_alignment`, before domains and accesses add theirs).
    pub(super) fn recalculate_alignment(&mut self, extra: u64) -> Result<()> {
        let mut align = if self.disable_large_pages {
            PAGE_SIZE
        } else {
            1
        };
        align = align.max(extra);
        if self.pinning_accesses > 0 {
            align = align.max(PAGE_SIZE);
        }
        for d in &self.domains {
            align = align.max(1 << d.lock().pgsize_bitmap().trailing_zeros());
        }
        if align > self.iova_alignment {
            self.check_alignment(align)?;
        }
        self.iova_alignment = align;
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` = 0: map page by page from now on.
    pub fn disable_large_pages(&mut self) -> Result<()> {
        if self.disable_large_pages {
            return Ok(());
        }
        // Domains may already hold large leaves.
        if !self.domains.is_empty() && !self.areas.is_empty() {
            return Err(Errno::EINVAL);
        }
        self.disable_large_pages = true;
        if let Err(e) = self.recalculate_alignment(1) {
            self.disable_large_pages = false;
            return Err(e);
        }
        Ok(())
    }

    /// `IOMMU_OPTION_HUGE_PAGES` = 1.
    pub fn enable_large_pages(&mut self) {
        self.disable_large_pages = false;
        // Lowering the alignment cannot misalign an area.
        let _ = self.recalculate_alignment(1);
    }

    /// Splits areas so that each IOVA in `iovas` becomes the last byte of an
    /// area (VFIO type1 v1 unmaps inside mappings; Linux `iopt_cut_iova`).
    pub fn cut(&mut self, iovas: &[u64]) -> Result<()> {
        // Room for every split first, so that a refusal splits nothing.
        let splits = iovas
            .iter()
            .filter(|&&iova| {
                self.area_at(iova)
                    .is_some_and(|a| iova != a.start && iova != a.last)
            })
            .count();
        self.budget.room(splits as u64)?;
        for &iova in iovas {
            let Some(area) = self.area_at(iova).cloned() else {
                continue;
            };
            if iova == area.start || iova == area.last {
                continue;
            }
            // Linux `iopt_area_split`: a dma-buf's area never splits.
            if area.pages.is_dmabuf() {
                return Err(Errno::EOPNOTSUPP);
            }
            if area.num_pins != 0 || (!self.domains.is_empty() && !self.disable_large_pages) {
                return Err(Errno::EINVAL);
            }
            let new_start = iova + 1;
            let mask = self.iova_alignment - 1;
            if new_start & mask != 0 || area.byte_at(new_start) & mask != 0 {
                return Err(Errno::EINVAL);
            }
            self.fail_nth.check()?;
            self.fail_nth.check()?;
            self.areas.remove(&area.start);
            let mut lhs = area.clone();
            lhs.last = iova;
            let rhs = Area {
                start: new_start,
                start_byte: area.byte_at(new_start),
                ..area
            };
            self.areas.insert(lhs.start, lhs);
            self.areas.insert(rhs.start, rhs);
            self.budget.add(1);
        }
        Ok(())
    }

    /// Registers an access that pins pages (Linux `iopt_add_access`):
    /// `EADDRINUSE` if an area is not page aligned.
    pub fn add_pinning_access(&mut self) -> Result<()> {
        self.pinning_accesses += 1;
        if let Err(e) = self.recalculate_alignment(1) {
            self.pinning_accesses -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// Undoes [`add_pinning_access`](Self::add_pinning_access).
    pub fn remove_pinning_access(&mut self) {
        self.pinning_accesses = self.pinning_accesses.saturating_sub(1);
        let _ = self.recalculate_alignment(1);
    }

    /// Pin ids whose pages intersect `[start, last]`.
    pub fn pins_in(&self, start: u64, last: u64) -> Vec<u64> {
        self.pins
            .iter()
            .filter(|(_, p)| {
                p.pieces.iter().any(|&(area, _, _)| {
                    self.areas
                        .get(&area)
                        .is_some_and(|a| a.start <= last && start <= a.last)
                })
            })
            .map(|(&id, _)| id)
            .collect()
    }
}
