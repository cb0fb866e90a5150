//! The pinned pages of one [`Pages`](super::Pages), kept as runs: pages in a
//! row with the same number of users whose frames follow one another. A
//! pin of a whole mapping is one run, so pinning, unpinning and finding
//! addresses cost the same for 4 KiB as for a gigabyte.

use super::physical::Frame;
use std::collections::BTreeMap;

/// Pages `start..start + len` of a `Pages` (the key is `start`): each has
/// `users` users, page `start + k` is frame `frame.page + k` of
/// `frame.space`, seen at `va_delta` from the object, as
/// [`PageIdentity`](crate::memory::PageIdentity) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PinRun {
    pub len: u64,
    pub users: u32,
    pub frame: Frame,
    pub va_delta: u64,
    pub gigantic: bool,
}

impl PinRun {
    /// The frame of the run's page `k`.
    pub fn frame_at(&self, k: u64) -> Frame {
        Frame {
            space: self.frame.space,
            page: self.frame.page + k,
        }
    }

    /// The part of the run from its page `k` on.
    fn from(&self, k: u64) -> PinRun {
        PinRun {
            len: self.len - k,
            frame: self.frame_at(k),
            ..*self
        }
    }

    /// Whether `next`, starting right after this run, can join it.
    fn joins(&self, next: &PinRun) -> bool {
        self.users == next.users
            && next.frame == self.frame_at(self.len)
            && self.va_delta == next.va_delta
            && self.gigantic == next.gigantic
    }
}

/// Invariant: runs do not overlap; `pinned` is the sum of their lengths.
#[derive(Debug, Default)]
pub(super) struct PinRuns {
    runs: BTreeMap<u64, PinRun>,
    pinned: u64,
}

impl PinRuns {
    /// Pages with at least one user.
    pub fn pinned(&self) -> u64 {
        self.pinned
    }

    /// The run holding page `index`, with its start.
    pub fn find(&self, index: u64) -> Option<(u64, PinRun)> {
        let (&start, &run) = self.runs.range(..=index).next_back()?;
        (index - start < run.len).then_some((start, run))
    }

    /// The runs that hold pages of `first..=last`, in order, with their
    /// starts (the first and last may reach beyond).
    pub fn overlapping(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, PinRun)> + '_ {
        let from = self.find(first).map_or(first, |(start, _)| start);
        self.runs.range(from..=last).map(|(&s, &r)| (s, r))
    }

    /// The unpinned stretches of `first..=last`, as `(first, last)`.
    pub fn gaps(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut next = first;
        for (start, run) in self.overlapping(first, last) {
            if start > next {
                gaps.push((next, start - 1));
            }
            next = next.max(start + run.len);
        }
        if next <= last {
            gaps.push((next, last));
        }
        gaps
    }

    /// Cuts the run holding page `at` (if it starts before it) in two, so
    /// that a run starts at `at`.
    fn split_at(&mut self, at: u64) {
        if let Some((start, run)) = self.find(at) {
            if start < at {
                let k = at - start;
                self.runs.insert(at, run.from(k));
                if let Some(head) = self.runs.get_mut(&start) {
                    head.len = k;
                }
            }
        }
    }

    /// Joins the run ending right before `at` with the one starting there,
    /// when they agree.
    fn join_at(&mut self, at: u64) {
        let Some((start, run)) = at.checked_sub(1).and_then(|b| self.find(b)) else {
            return;
        };
        if let Some(next) = self.runs.get(&at).copied() {
            if run.joins(&next) {
                self.runs.remove(&at);
                if let Some(head) = self.runs.get_mut(&start) {
                    head.len += next.len;
                }
            }
        }
    }

    /// One more user for every pinned page of `first..=last`, and the new
    /// runs `fresh` (pages of the gaps, each with one user) added.
    pub fn add_user(&mut self, first: u64, last: u64, fresh: &[(u64, PinRun)]) {
        self.split_at(first);
        self.split_at(last + 1);
        for (_, run) in self.runs.range_mut(first..=last) {
            run.users += 1;
        }
        for &(start, run) in fresh {
            self.pinned += run.len;
            self.runs.insert(start, PinRun { users: 1, ..run });
        }
        let starts: Vec<u64> = fresh.iter().flat_map(|&(s, r)| [s, s + r.len]).collect();
        for at in [first, last + 1].into_iter().chain(starts) {
            self.join_at(at);
        }
    }

    /// One user fewer for every pinned page of `first..=last`: the runs
    /// left with none are taken out and returned.
    pub fn remove_user(&mut self, first: u64, last: u64) -> Vec<PinRun> {
        self.split_at(first);
        self.split_at(last + 1);
        let mut released = Vec::new();
        let mut emptied = Vec::new();
        for (&start, run) in self.runs.range_mut(first..=last) {
            run.users -= 1;
            if run.users == 0 {
                emptied.push(start);
                released.push(*run);
            }
        }
        for start in emptied {
            self.runs.remove(&start);
        }
        self.pinned -= released.iter().map(|r| r.len).sum::<u64>();
        self.join_at(first);
        self.join_at(last + 1);
        released
    }

    /// Takes every run out.
    pub fn take_all(&mut self) -> Vec<PinRun> {
        self.pinned = 0;
        std::mem::take(&mut self.runs).into_values().collect()
    }

    /// How many runs there are (for tests of the joining).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(len: u64, page: u64) -> PinRun {
        PinRun {
            len,
            users: 1,
            frame: Frame { space: 7, page },
            va_delta: 0,
            gigantic: false,
        }
    }

    #[test]
    fn pins_split_and_join_back() {
        let mut runs = PinRuns::default();
        runs.add_user(0, 99, &[(0, run(100, 1000))]);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs.gaps(0, 199), vec![(100, 199)]);
        // A second user of the middle splits the run in three...
        runs.add_user(10, 19, &[]);
        assert_eq!(runs.len(), 3);
        assert_eq!(runs.find(15).unwrap().1.users, 2);
        assert_eq!(runs.find(15).unwrap().1.frame_at(5).page, 1015);
        // ...and its going joins them again.
        assert!(runs.remove_user(10, 19).is_empty());
        assert_eq!(runs.len(), 1);
        assert_eq!(runs.pinned(), 100);
        let released = runs.remove_user(0, 49);
        assert_eq!(
            released,
            vec![PinRun {
                users: 0,
                ..run(50, 1000)
            }]
        );
        assert_eq!(runs.pinned(), 50);
        assert_eq!(
            runs.find(50).unwrap().1.frame,
            Frame {
                space: 7,
                page: 1050
            }
        );
        assert!(runs.find(49).is_none());
    }

    #[test]
    fn fresh_runs_fill_gaps_around_pinned_ones() {
        let mut runs = PinRuns::default();
        runs.add_user(10, 19, &[(10, run(10, 110))]);
        let gaps = runs.gaps(0, 29);
        assert_eq!(gaps, vec![(0, 9), (20, 29)]);
        runs.add_user(0, 29, &[(0, run(10, 100)), (20, run(10, 120))]);
        // Users 1, 2, 1: three runs, frames continuous.
        assert_eq!(runs.len(), 3);
        assert_eq!(runs.pinned(), 30);
        for i in 0..30 {
            let (start, r) = runs.find(i).unwrap();
            assert_eq!(r.frame_at(i - start).page, 100 + i);
        }
        let released = runs.remove_user(0, 29);
        assert_eq!(released.iter().map(|r| r.len).sum::<u64>(), 20);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs.find(10).unwrap().1.users, 1);
    }
}
