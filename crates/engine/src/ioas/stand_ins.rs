//! Areas on stand-in pages (see [`Pages::stand_in`]): finding the stand-in
//! a new map shares, and giving areas pages of their own before anything
//! pins them or shares their pages, undone if that operation fails.

use super::*;

/// How many stand-ins a table offers to new maps.
const MAX_STAND_INS: usize = 8;

/// Areas that took pages of their own during one operation, with the
/// stand-in and byte offset each had, so that a failed operation leaves
/// them as it found them.
#[must_use = "a failed operation gives the stand-ins back"]
#[derive(Debug, Default)]
pub struct OwnedPages(Vec<(u64, Arc<Pages>, u64)>);

impl IoPagetable {
    /// The stand-in pages for a map of `mm`'s memory with these access and
    /// owner, made on first need.
    pub fn stand_in(
        &mut self,
        mm: &Arc<dyn crate::memory::AddressSpace>,
        allow_device: bool,
        writable: bool,
        owner: AccountOwner,
        shared: &Arc<crate::pages::EngineState>,
    ) -> Arc<Pages> {
        self.stand_ins.retain(|w| w.strong_count() > 0);
        let found = self
            .stand_ins
            .iter()
            .filter_map(Weak::upgrade)
            .find(|p| p.stands_in_for(mm, allow_device, writable, owner));
        found.unwrap_or_else(|| {
            let made = Pages::stand_in(mm.clone(), allow_device, writable, owner, shared);
            // A few sources at a time is the rule (one process, read-only
            // and writable); past that the oldest is no longer offered for
            // new maps, so that the search stays short.
            if self.stand_ins.len() >= MAX_STAND_INS {
                self.stand_ins.remove(0);
            }
            self.stand_ins.push(Arc::downgrade(&made));
            made
        })
    }

    /// Gives every area meeting `[start, last]` that maps a stand-in pages
    /// of its own, before something pins it or shares its pages.
    pub(super) fn own_pages_in(&mut self, start: u64, last: u64) -> OwnedPages {
        let mut owned = OwnedPages::default();
        let from = first_intersecting(&self.areas, start, last, |a| a.last).unwrap_or(start);
        for area in self.areas.range_mut(from..=last).map(|(_, a)| a) {
            if area.pages.is_stand_in() {
                let (own, start_byte) = area.pages.own(area.start_byte, area.length());
                let stand_in = std::mem::replace(&mut area.pages, own);
                let old_byte = std::mem::replace(&mut area.start_byte, start_byte);
                owned.0.push((area.start, stand_in, old_byte));
            }
        }
        owned
    }

    /// Puts areas that took pages of their own back on their stand-ins,
    /// after the operation that needed the pages failed (so nothing holds
    /// or pins them).
    pub fn give_back(&mut self, owned: OwnedPages) {
        for (start, stand_in, start_byte) in owned.0 {
            if let Some(area) = self.areas.get_mut(&start) {
                debug_assert_eq!(area.pages.pinned(), 0);
                area.pages = stand_in;
                area.start_byte = start_byte;
            }
        }
    }

    /// [`get_pages`](Self::get_pages) for `IOAS_COPY` and pins: the areas
    /// take pages of their own first, so that the copy or the pin shares
    /// them. The caller gives them back ([`give_back`](Self::give_back)) if
    /// its operation fails.
    pub fn share_pages(&mut self, iova: u64, length: u64) -> Result<(Vec<PagesSlice>, OwnedPages)> {
        let owned = match length.checked_sub(1).and_then(|l| iova.checked_add(l)) {
            Some(last) => self.own_pages_in(iova, last),
            None => OwnedPages::default(),
        };
        match self.get_pages(iova, length) {
            Ok(slices) => Ok((slices, owned)),
            Err(e) => {
                self.give_back(owned);
                Err(e)
            }
        }
    }
}
