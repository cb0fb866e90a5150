//! The invalidation a table change owes the IOTLB.
//!
//! Every operation that removes or weakens translations (unmap, clearing
//! dirty bits) returns an [`IotlbGather`]. It is `#[must_use]`, and dropping
//! one that still holds a range is a bug caught by a debug assertion: hand it
//! to [`crate::Iotlb::flush`], or take its range with
//! [`IotlbGather::into_range`] when the invalidation is done elsewhere (for
//! example on several IOTLBs).

use crate::range::IovaRange;

/// IOVAs whose cached translations are stale.
///
/// Invariant: `range` is `None` exactly when nothing needs invalidating.
#[must_use = "stale IOTLB entries stay visible until this gather is flushed"]
#[derive(Debug, Default)]
pub struct IotlbGather {
    range: Option<IovaRange>,
}

impl IotlbGather {
    /// Nothing to invalidate.
    pub fn empty() -> Self {
        Self { range: None }
    }

    /// Whether nothing needs invalidating.
    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// The stale range, if any, without consuming the gather.
    pub fn range(&self) -> Option<IovaRange> {
        self.range
    }

    /// Widen the gather to cover `range`.
    pub fn add(&mut self, range: IovaRange) {
        self.range = Some(match self.range {
            Some(have) => have.hull(&range),
            None => range,
        });
    }

    /// Merge another gather into this one.
    pub fn merge(&mut self, mut other: IotlbGather) {
        if let Some(range) = other.range.take() {
            self.add(range);
        }
    }

    /// Consume the gather; the caller takes over the invalidation duty.
    pub fn into_range(mut self) -> Option<IovaRange> {
        self.range.take()
    }
}

impl Drop for IotlbGather {
    fn drop(&mut self) {
        debug_assert!(
            self.range.is_none() || std::thread::panicking(),
            "IotlbGather for {:?} dropped without flushing the IOTLB",
            self.range
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_builds_the_hull() {
        let mut gather = IotlbGather::empty();
        gather.add(IovaRange::new(0x3000, 0x3fff).unwrap());
        gather.add(IovaRange::new(0x1000, 0x1fff).unwrap());
        assert_eq!(gather.into_range(), IovaRange::new(0x1000, 0x3fff));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without flushing")]
    fn dropping_a_pending_gather_is_caught() {
        let mut gather = IotlbGather::empty();
        gather.add(IovaRange::new(0, 0xfff).unwrap());
        drop(gather);
    }
}
