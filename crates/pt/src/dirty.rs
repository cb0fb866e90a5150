//! A bitmap of dirty pages over an IOVA range.
//!
//! Bit `i` stands for the page `[base + i·page_size, base + (i+1)·page_size − 1]`.
//! Recording a dirty leaf sets every bit whose page overlaps it; bits outside
//! the bitmap are ignored.

use crate::range::IovaRange;

/// Dirty pages, one bit each.
///
/// Invariants: `page_size_lg2 < 64`; `words.len() * 64 >= pages`; bits at
/// index `>= pages` are always 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyBitmap {
    base: u64,
    page_size_lg2: u32,
    pages: u64,
    words: Vec<u64>,
}

impl DirtyBitmap {
    /// A clear bitmap of `pages` pages of `page_size` bytes (a power of two)
    /// from `base`. `None` for a bad page size or an overflowing extent.
    pub fn new(base: u64, page_size: u64, pages: u64) -> Option<Self> {
        if !page_size.is_power_of_two() || pages == 0 {
            return None;
        }
        let page_size_lg2 = page_size.trailing_zeros();
        pages
            .checked_mul(page_size)?
            .checked_sub(1)
            .and_then(|span| base.checked_add(span))?;
        let words = usize::try_from(pages.div_ceil(64)).ok()?;
        Some(Self {
            base,
            page_size_lg2,
            pages,
            words: vec![0; words],
        })
    }

    /// The IOVA range the bitmap describes.
    pub fn range(&self) -> IovaRange {
        IovaRange {
            start: self.base,
            last: self.base + ((self.pages << self.page_size_lg2) - 1),
        }
    }

    /// Page size in bytes.
    pub fn page_size(&self) -> u64 {
        1 << self.page_size_lg2
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Mark every page overlapping `range` dirty.
    pub fn record(&mut self, range: IovaRange) {
        let Some(range) = range.intersection(&self.range()) else {
            return;
        };
        let first = (range.start - self.base) >> self.page_size_lg2;
        let last = (range.last - self.base) >> self.page_size_lg2;
        for page in first..=last {
            self.words[(page / 64) as usize] |= 1 << (page % 64);
        }
    }

    /// Whether page `index` is marked.
    pub fn is_set(&self, index: u64) -> bool {
        index < self.pages && self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Indices of the marked pages, ascending.
    pub fn iter_set(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.pages).filter(|&page| self.is_set(page))
    }

    /// Number of marked pages.
    pub fn count(&self) -> u64 {
        self.words
            .iter()
            .map(|word| u64::from(word.count_ones()))
            .sum()
    }

    /// The raw words (bit `i % 64` of word `i / 64` is page `i`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Clear every bit.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_marks_overlapping_pages_and_clips() {
        let mut bitmap = DirtyBitmap::new(0x10000, 0x1000, 8).unwrap();
        bitmap.record(IovaRange::new(0x11800, 0x12000).unwrap());
        assert_eq!(bitmap.iter_set().collect::<Vec<_>>(), vec![1, 2]);
        bitmap.record(IovaRange::new(0, 0x10fff).unwrap());
        bitmap.record(IovaRange::new(0x17fff, u64::MAX).unwrap());
        assert_eq!(bitmap.iter_set().collect::<Vec<_>>(), vec![0, 1, 2, 7]);
        assert_eq!(bitmap.count(), 4);
    }

    #[test]
    fn rejects_overflowing_extent() {
        assert!(DirtyBitmap::new(u64::MAX - 0xfff, 0x1000, 2).is_none());
        assert!(DirtyBitmap::new(u64::MAX - 0xfff, 0x1000, 1).is_some());
        assert!(DirtyBitmap::new(0, 3, 1).is_none());
    }
}
