//! Inclusive IOVA ranges.
//!
//! A range is `[start, last]`: `last` is the final byte, so a range may end at
//! `u64::MAX` without overflow. Construct ranges from a start and a length with
//! [`IovaRange::from_len`], which checks the arithmetic.

/// The bytes `start..=last`. Invariant: `start <= last` (a range is never empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IovaRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub last: u64,
}

impl IovaRange {
    /// `[start, last]`, or `None` when `last < start`.
    pub fn new(start: u64, last: u64) -> Option<Self> {
        (start <= last).then_some(Self { start, last })
    }

    /// `len` bytes from `start`; `None` when `len` is 0 or the end overflows.
    pub fn from_len(start: u64, len: u64) -> Option<Self> {
        let last = start.checked_add(len.checked_sub(1)?)?;
        Some(Self { start, last })
    }

    /// Whether `iova` lies inside.
    pub fn contains(&self, iova: u64) -> bool {
        self.start <= iova && iova <= self.last
    }

    /// Whether `other` lies entirely inside.
    pub fn contains_range(&self, other: &IovaRange) -> bool {
        self.start <= other.start && other.last <= self.last
    }

    /// Whether the two ranges share a byte.
    pub fn overlaps(&self, other: &IovaRange) -> bool {
        self.start <= other.last && other.start <= self.last
    }

    /// The bytes in both, if any.
    pub fn intersection(&self, other: &IovaRange) -> Option<IovaRange> {
        IovaRange::new(self.start.max(other.start), self.last.min(other.last))
    }

    /// The smallest range holding both.
    pub fn hull(&self, other: &IovaRange) -> IovaRange {
        IovaRange {
            start: self.start.min(other.start),
            last: self.last.max(other.last),
        }
    }

    /// Length in bytes; `None` for the full 2^64-byte space.
    pub fn size(&self) -> Option<u64> {
        (self.last - self.start).checked_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_len_rejects_zero_and_overflow() {
        assert_eq!(IovaRange::from_len(5, 0), None);
        assert_eq!(IovaRange::from_len(u64::MAX, 2), None);
        let top = IovaRange::from_len(u64::MAX, 1).unwrap();
        assert_eq!(top.last, u64::MAX);
        assert_eq!(top.size(), Some(1));
    }

    #[test]
    fn full_space_has_no_u64_length() {
        let all = IovaRange::new(0, u64::MAX).unwrap();
        assert_eq!(all.size(), None);
    }

    #[test]
    fn overlap_and_hull() {
        let a = IovaRange::new(0x1000, 0x1fff).unwrap();
        let b = IovaRange::new(0x1fff, 0x2fff).unwrap();
        let c = IovaRange::new(0x2000, 0x2fff).unwrap();
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert_eq!(a.hull(&c), IovaRange::new(0x1000, 0x2fff).unwrap());
        assert_eq!(a.intersection(&c), None);
    }
}
