//! Dirty tracking (Linux `IOMMU_HWPT_SET_DIRTY_TRACKING` and
//! `IOMMU_HWPT_GET_DIRTY_BITMAP`): the dirty bits are the page tables' own,
//! set by device writes while tracking is on, read (and cleared) into a user
//! bitmap with one bit per `page_size` bytes.

use crate::context::{Caller, Context};
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use softiommu_pt::DirtyBitmap;

/// Largest bitmap read at once, in bits (32 MiB of bitmap).
const MAX_BITMAP_BITS: u64 = 1 << 28;

impl Context {
    /// Turns dirty tracking on or off for paging HWPT `hwpt`. Enabling clears
    /// every dirty bit first, so the next read starts from a clean snapshot.
    /// `EOPNOTSUPP` unless the HWPT was allocated for dirty tracking.
    pub fn hwpt_set_dirty_tracking(&mut self, hwpt: u32, enable: bool) -> Result<()> {
        let h = self.objects.hwpt_paging(hwpt)?;
        if !h.flags.dirty_tracking {
            return Err(Errno::EOPNOTSUPP);
        }
        let (table, ioas) = (h.table.clone(), h.ioas);
        let areas: Vec<(u64, u64)> = self
            .ioas(ioas)?
            .areas()
            .map(|a| (a.start, a.length()))
            .collect();
        let mut table = table.locked();
        if enable {
            for (start, len) in areas {
                let Some(mut scratch) =
                    DirtyBitmap::new(start, table.min_page_size(), len / table.min_page_size())
                else {
                    continue;
                };
                if let Ok(gather) = table.read_and_clear_dirty(start, len, &mut scratch, true) {
                    let _ = gather.into_range();
                }
            }
        }
        table.set_dirty_tracking(enable);
        Ok(())
    }

    /// Reads the dirty bits of `[iova, iova + length)` of HWPT `hwpt` into the
    /// caller's bitmap at `data` (bits are set, never cleared there), one bit per
    /// `page_size` bytes; clears them in the page table unless `no_clear`.
    #[allow(clippy::too_many_arguments)]
    pub fn hwpt_get_dirty_bitmap(
        &mut self,
        caller: &Caller<'_>,
        hwpt: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        data: u64,
        no_clear: bool,
    ) -> Result<()> {
        let h = self.objects.hwpt_paging(hwpt)?;
        let (table, ioas, tracking_capable) = (h.table.clone(), h.ioas, h.flags.dirty_tracking);
        let iopt = self.ioas(ioas)?;
        let last = iova
            .checked_add(length.wrapping_sub(1))
            .ok_or(Errno::EOVERFLOW)?;
        let align = iopt.iova_alignment();
        let end = last.wrapping_add(1);
        if iova % align != 0 || end % align != 0 {
            return Err(Errno::EINVAL);
        }
        if page_size == 0
            || !page_size.is_power_of_two()
            || iova % page_size != 0
            || end % page_size != 0
        {
            return Err(Errno::EINVAL);
        }
        if !tracking_capable {
            return Err(Errno::EOPNOTSUPP);
        }
        let pages = length / page_size;
        if pages > MAX_BITMAP_BITS {
            return Err(Errno::ENOMEM);
        }
        let mut bitmap = DirtyBitmap::new(iova, page_size, pages).ok_or(Errno::EINVAL)?;
        // The range must be covered by contiguous areas.
        let mut pieces = Vec::new();
        let mut cur = iova;
        loop {
            let area = iopt.area_at(cur).ok_or(Errno::EINVAL)?;
            let piece_last = area.last.min(last);
            pieces.push((cur, piece_last - cur + 1));
            if piece_last == last {
                break;
            }
            cur = piece_last + 1;
        }
        {
            let mut table = table.locked();
            for (start, len) in pieces {
                let gather = table
                    .read_and_clear_dirty(start, len, &mut bitmap, !no_clear)
                    .map_err(|_| Errno::EINVAL)?;
                let _ = gather.into_range();
            }
        }
        // OR the bits into the caller's bitmap.
        let bytes = pages.div_ceil(8) as usize;
        let mut user = vec![0u8; bytes];
        caller.mem.read(data, &mut user)?;
        for bit in bitmap.iter_set() {
            user[(bit / 8) as usize] |= 1 << (bit % 8);
        }
        caller.mem.write(data, &user)
    }

    /// The selftest's `DIRTY`: marks dirty, as device writes would, the page
    /// of `page_size` at every set bit of the caller's bitmap at `uptr`.
    /// Returns how many bits were set. Tracking must be on (`EINVAL`).
    pub fn test_mark_dirty(
        &mut self,
        caller: &Caller<'_>,
        hwpt: u32,
        iova: u64,
        length: u64,
        page_size: u64,
        uptr: u64,
    ) -> Result<u64> {
        if page_size == 0 || iova % page_size != 0 || length % page_size != 0 || uptr == 0 {
            return Err(Errno::EINVAL);
        }
        let table = self.objects.hwpt_paging(hwpt)?.table.clone();
        let mut table = table.locked();
        if !table.dirty_tracking() {
            return Err(Errno::EINVAL);
        }
        let max = length / page_size;
        if max > MAX_BITMAP_BITS {
            return Err(Errno::ENOMEM);
        }
        let mut bits = vec![0u8; max.div_ceil(8) as usize];
        caller.mem.read(uptr, &mut bits)?;
        let mut count = 0;
        for i in 0..max {
            if bits[(i / 8) as usize] & (1 << (i % 8)) != 0 {
                table.set_dirty(iova + i * page_size);
                count += 1;
            }
        }
        Ok(count)
    }
}
