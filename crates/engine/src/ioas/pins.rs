//! Pins taken by accesses (Linux `iopt_pin_pages` / `iopt_unpin_pages`),
//! CPU reads and writes through the table, and moving the accounting owner.

use super::*;

impl IoPagetable {
    /// Pins the pages behind `[iova, iova + length)`, which contiguous areas
    /// must cover (`ENOENT` otherwise; `EPERM` for a write pin of a read-only
    /// area, `EINVAL` for a dma-buf's). Returns a pin id for
    /// [`unpin`](Self::unpin). All or nothing.
    pub fn pin(&mut self, iova: u64, length: u64, write: bool) -> Result<u64> {
        let (slices, owned) = self.share_pages(iova, length)?;
        let pinned = self.pin_slices(iova, &slices, write);
        if pinned.is_err() {
            drop(slices);
            self.give_back(owned);
        }
        pinned
    }

    fn pin_slices(&mut self, iova: u64, slices: &[PagesSlice], write: bool) -> Result<u64> {
        let mut pieces = Vec::with_capacity(slices.len());
        let mut cur = iova;
        for s in slices {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            if write && !area.prot.write {
                return Err(Errno::EPERM);
            }
            if area.pages.is_dmabuf() {
                return Err(Errno::EINVAL);
            }
            pieces.push((
                area.start,
                s.start_byte / PAGE_SIZE,
                (s.start_byte + s.length - 1) / PAGE_SIZE,
            ));
            cur += s.length;
        }
        let mut done = 0;
        let mut outcome = Ok(());
        for (i, s) in slices.iter().enumerate() {
            let (_, first, last) = pieces[i];
            if let Err(e) = s.pages.pin(first, last, write) {
                outcome = Err(e);
                break;
            }
            done += 1;
        }
        if let Err(e) = outcome {
            for (i, s) in slices.iter().take(done).enumerate() {
                s.pages.unpin(pieces[i].1, pieces[i].2);
            }
            return Err(e);
        }
        for (start, _, _) in &pieces {
            if let Some(a) = self.areas.get_mut(start) {
                a.num_pins += 1;
            }
        }
        let id = self.next_pin;
        self.next_pin += 1;
        self.pins.insert(id, Pin { pieces });
        Ok(id)
    }

    /// Releases a pin; `ENOENT` for an unknown id.
    pub fn unpin(&mut self, id: u64) -> Result<()> {
        let pin = self.pins.remove(&id).ok_or(Errno::ENOENT)?;
        for (start, first, last) in pin.pieces {
            if let Some(a) = self.areas.get_mut(&start) {
                a.num_pins -= 1;
                a.pages.unpin(first, last);
            }
        }
        Ok(())
    }

    /// Reads or writes through the areas covering `[iova, iova + len)`, as an
    /// emulated device behind this IOAS would (permissions checked: `EPERM`;
    /// a dma-buf's memory is `EINVAL`).
    pub fn access_rw(&self, iova: u64, buf: &mut [u8], write: bool) -> Result<()> {
        if buf.is_empty() {
            return Err(Errno::EINVAL);
        }
        let slices = self.get_pages(iova, buf.len() as u64)?;
        let mut cur = iova;
        for s in &slices {
            let area = self.area_at(cur).ok_or(Errno::ENOENT)?;
            if (write && !area.prot.write) || (!write && !area.prot.read) {
                return Err(Errno::EPERM);
            }
            if area.pages.is_dmabuf() {
                return Err(Errno::EINVAL);
            }
            cur += s.length;
        }
        let mut done = 0usize;
        for s in &slices {
            let n = s.length as usize;
            let part = &mut buf[done..done + n];
            if write {
                s.pages.write(s.start_byte, part)?;
            } else {
                s.pages.read(s.start_byte, part)?;
            }
            done += n;
        }
        Ok(())
    }

    /// Moves the charge of every area's pinned pages to `owner`; every area
    /// must be file backed (`EINVAL`). All or nothing.
    pub fn change_owner(&mut self, owner: AccountOwner) -> Result<()> {
        if self.areas.values().any(|a| !a.pages.is_file()) {
            return Err(Errno::EINVAL);
        }
        let mut distinct: Vec<Arc<Pages>> = Vec::new();
        for a in self.areas.values() {
            if !distinct.iter().any(|p| Arc::ptr_eq(p, &a.pages)) {
                distinct.push(a.pages.clone());
            }
        }
        let mut moved: Vec<(Arc<Pages>, AccountOwner)> = Vec::new();
        for p in distinct {
            let old = p.owner();
            if let Err(e) = p.change_owner(owner) {
                for (q, prev) in moved.into_iter().rev() {
                    let _ = q.change_owner(prev);
                }
                return Err(e);
            }
            moved.push((p, old));
        }
        Ok(())
    }
}
