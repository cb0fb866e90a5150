//! Random sequences of map / unmap / copy / allow / reserve / huge-page
//! changes, run against the engine and against a deliberately naive model of
//! the IOVA space (linear scans, Linux's rules written out plainly). Every
//! result, errno and resulting set of areas must agree. 16 cases × 800
//! operations = 12 800 operations per run.

mod common;
use common::*;
use proptest::prelude::*;
use softiommu_engine::ioas::{Prot, HPAGE_SIZE};
use softiommu_engine::{Errno, MapArgs};

const MAX: u64 = u64::MAX;

#[derive(Clone, Debug)]
enum Op {
    Map {
        ioas: usize,
        va_off: u64,
        len: u64,
        iova: Option<u64>,
        write: bool,
    },
    /// With `pick`, the range is exactly an existing area's.
    Unmap {
        ioas: usize,
        iova: u64,
        len: u64,
        pick: Option<usize>,
    },
    UnmapAll {
        ioas: usize,
    },
    Copy {
        dst: usize,
        src: usize,
        src_iova: u64,
        len: u64,
        dst_iova: Option<u64>,
        write: bool,
        /// When set, the copy starts at an existing source area.
        pick: Option<usize>,
    },
    Allow {
        ioas: usize,
        ranges: Vec<(u64, u64)>,
    },
    Reserve {
        ioas: usize,
        start: u64,
        len: u64,
    },
    HugePages {
        ioas: usize,
        on: bool,
    },
}

fn page_or_odd() -> impl Strategy<Value = u64> {
    prop_oneof![8 => (0u64..64).prop_map(|p| p * PAGE), 1 => 0u64..(64 * PAGE)]
}

fn length() -> impl Strategy<Value = u64> {
    prop_oneof![8 => (1u64..12).prop_map(|p| p * PAGE), 1 => 0u64..(3 * PAGE), 1 => Just(0)]
}

fn iova() -> impl Strategy<Value = u64> {
    prop_oneof![
        10 => (0u64..160).prop_map(|p| p * PAGE),
        1 => 0u64..(160 * PAGE),
        1 => Just(MAX - 4 * PAGE + 1),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let ioas = 0usize..2;
    prop_oneof![
        10 => (ioas.clone(), page_or_odd(), length(), prop::option::weighted(0.6, iova()), any::<bool>())
            .prop_map(|(ioas, va_off, len, iova, write)| Op::Map { ioas, va_off, len, iova, write }),
        6 => (ioas.clone(), iova(), prop_oneof![(1u64..20).prop_map(|p| p * PAGE), Just(0), Just(MAX)], prop::option::weighted(0.5, 0usize..64))
            .prop_map(|(ioas, iova, len, pick)| Op::Unmap { ioas, iova, len, pick }),
        1 => ioas.clone().prop_map(|ioas| Op::UnmapAll { ioas }),
        4 => (ioas.clone(), ioas.clone(), iova(), length(), prop::option::weighted(0.5, iova()), any::<bool>(), prop::option::weighted(0.7, 0usize..64))
            .prop_map(|(dst, src, src_iova, len, dst_iova, write, pick)| Op::Copy { dst, src, src_iova, len, dst_iova, write, pick}),
        1 => (ioas.clone(), prop::collection::vec((iova(), length()), 0..3))
            .prop_map(|(ioas, v)| Op::Allow { ioas, ranges: v.into_iter().map(|(s, l)| (s, s.saturating_add(l).saturating_sub(1))).collect() }),
        1 => (ioas.clone(), iova(), length()).prop_map(|(ioas, start, len)| Op::Reserve { ioas, start, len }),
        1 => (ioas, any::<bool>()).prop_map(|(ioas, on)| Op::HugePages { ioas, on }),
    ]
}

/// A model area: IOVA range, the source address of its first byte, and
/// whether its pages may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MArea {
    start: u64,
    last: u64,
    va: u64,
    writable: bool,
}

#[derive(Clone, Debug, Default)]
struct MIoas {
    areas: Vec<MArea>,
    reserved: Vec<(u64, u64)>,
    allowed: Vec<(u64, u64)>,
    no_large_pages: bool,
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

fn fit(start: u64, last: u64, len: u64, align: u64, off: u64) -> Option<u64> {
    let aligned = (start.checked_add(align - 1)? & !(align - 1)) | off;
    (aligned < last && last - aligned >= len - 1).then_some(aligned)
}

impl MIoas {
    fn align(&self) -> u64 {
        if self.no_large_pages {
            PAGE
        } else {
            1
        }
    }

    fn used_by(&self, r: (u64, u64)) -> bool {
        self.reserved.iter().any(|&x| overlaps(x, r))
            || self.areas.iter().any(|a| overlaps((a.start, a.last), r))
    }

    /// Linux's automatic allocation, by plain scanning.
    fn alloc(&self, addr: u64, len: u64) -> Result<u64, Errno> {
        if len == 0 || len >= MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let by_len = len.next_power_of_two();
        let mut align = if addr == 0 {
            by_len
        } else {
            by_len.min(1 << addr.trailing_zeros())
        };
        align = align.min(HPAGE_SIZE);
        if align < self.align() {
            return Err(Errno::EINVAL);
        }
        let off = addr % PAGE;
        let mut spans: Vec<(u64, u64)> = Vec::new();
        let mut allowed = self.allowed.clone();
        allowed.sort();
        if allowed.is_empty() {
            spans.push((PAGE, MAX - PAGE));
        }
        for (s, l) in allowed {
            let (s, l) = (s.max(PAGE), l.min(MAX - PAGE));
            if s > l {
                continue;
            }
            match spans.last_mut() {
                Some(prev) if prev.1 + 1 >= s => prev.1 = prev.1.max(l),
                _ => spans.push((s, l)),
            }
        }
        let mut used: Vec<(u64, u64)> = self.reserved.clone();
        used.extend(self.areas.iter().map(|a| (a.start, a.last)));
        used.sort();
        for (ss, sl) in spans {
            let Some(first) = fit(ss, sl, len, align, off) else {
                continue;
            };
            let mut cur = Some(first);
            for &(us, ul) in &used {
                let Some(c) = cur else { break };
                if ul < c {
                    continue;
                }
                if us > sl {
                    break;
                }
                if us > c {
                    if let Some(iova) = fit(c, us - 1, len, align, off) {
                        return Ok(iova);
                    }
                }
                cur = ul.checked_add(1).map(|n| n.max(c));
            }
            if let Some(c) = cur {
                if c <= sl {
                    if let Some(iova) = fit(c, sl, len, align, off) {
                        return Ok(iova);
                    }
                }
            }
        }
        Err(Errno::ENOSPC)
    }

    fn check_fixed(&self, iova: u64, len: u64) -> Result<(), Errno> {
        if iova & (self.align() - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?;
        if self.reserved.iter().any(|&r| overlaps(r, (iova, last))) {
            return Err(Errno::EINVAL);
        }
        if self
            .areas
            .iter()
            .any(|a| overlaps((a.start, a.last), (iova, last)))
        {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Maps pieces (source address, length, writable) back to back.
    fn map_pieces(
        &mut self,
        pieces: &[(u64, u64, bool)],
        len: u64,
        iova: Option<u64>,
        write: bool,
    ) -> Result<u64, Errno> {
        if len == 0 || len & (self.align() - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let dst = match iova {
            None => self.alloc(pieces[0].0, len)?,
            Some(i) => {
                self.check_fixed(i, len)?;
                i
            }
        };
        let mut at = dst;
        let mut new = Vec::new();
        for &(va, plen, writable) in pieces {
            if write && !writable {
                return Err(Errno::EPERM);
            }
            if (va % PAGE) & (self.align() - 1) != 0 {
                return Err(Errno::EINVAL);
            }
            let last = at.checked_add(plen - 1).ok_or(Errno::EOVERFLOW)?;
            new.push(MArea {
                start: at,
                last,
                va,
                writable,
            });
            at = at.wrapping_add(plen);
        }
        self.areas.extend(new);
        Ok(dst)
    }

    fn pieces(&self, iova: u64, len: u64) -> Result<Vec<(u64, u64, bool)>, Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?;
        let mut out = Vec::new();
        let mut cur = iova;
        loop {
            let a = self
                .areas
                .iter()
                .find(|a| a.start <= cur && cur <= a.last)
                .ok_or(Errno::ENOENT)?;
            let pl = a.last.min(last);
            out.push((a.va + (cur - a.start), pl - cur + 1, a.writable));
            if pl == last {
                return Ok(out);
            }
            cur = pl + 1;
        }
    }

    fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        let (start, last) = if iova == 0 && len == MAX {
            (0, MAX)
        } else {
            if iova == MAX || len == MAX {
                return Err(Errno::EOVERFLOW);
            }
            if len == 0 {
                return Err(Errno::EINVAL);
            }
            (iova, iova.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?)
        };
        let hit: Vec<MArea> = self
            .areas
            .iter()
            .copied()
            .filter(|a| overlaps((a.start, a.last), (start, last)))
            .collect();
        if hit.iter().any(|a| a.start < start || a.last > last) {
            return Err(Errno::ENOENT);
        }
        if hit.is_empty() {
            return if (start, last) == (0, MAX) {
                Ok(0)
            } else {
                Err(Errno::ENOENT)
            };
        }
        self.areas.retain(|a| !hit.contains(a));
        Ok(hit.iter().map(|a| a.last - a.start + 1).sum())
    }
}

fn run(ops: Vec<Op>) {
    let mut h = Harness::new();
    let ids = [h.ctx.ioas_alloc().unwrap(), h.ctx.ioas_alloc().unwrap()];
    let mut model = [MIoas::default(), MIoas::default()];
    // Successes per operation kind, to show the run exercised real work.
    let mut succeeded = std::collections::BTreeMap::<&str, usize>::new();
    for (n, op) in ops.into_iter().enumerate() {
        let (ctx, caller) = h.split();
        let (got, want): (Result<u64, Errno>, Result<u64, Errno>) = match &op {
            &Op::Map {
                ioas,
                va_off,
                len,
                iova,
                write,
            } => {
                let va = BUF + va_off;
                let prot = Prot { read: true, write };
                let got = ctx.ioas_map(
                    &caller,
                    ids[ioas],
                    va,
                    MapArgs {
                        iova,
                        length: len,
                        prot,
                    },
                );
                let want = if len == 0 {
                    Err(Errno::EINVAL)
                } else {
                    model[ioas].map_pieces(&[(va, len, write)], len, iova, write)
                };
                (got, want)
            }
            &Op::Unmap {
                ioas,
                mut iova,
                mut len,
                pick,
            } => {
                if let Some(k) = pick {
                    let mut areas: Vec<(u64, u64)> = model[ioas]
                        .areas
                        .iter()
                        .map(|a| (a.start, a.last))
                        .collect();
                    areas.sort();
                    if let Some(&(start, last)) = areas.get(k % areas.len().max(1)) {
                        (iova, len) = (start, last - start + 1);
                    }
                }
                (
                    h.ctx.ioas_unmap(ids[ioas], iova, len),
                    model[ioas].unmap(iova, len),
                )
            }
            &Op::UnmapAll { ioas } => (
                h.ctx.ioas_unmap(ids[ioas], 0, MAX),
                model[ioas].unmap(0, MAX),
            ),
            &Op::Copy {
                dst,
                src,
                mut src_iova,
                len,
                dst_iova,
                write,
                pick,
            } => {
                if let Some(k) = pick {
                    let mut areas: Vec<(u64, u64)> =
                        model[src].areas.iter().map(|a| (a.start, a.last)).collect();
                    areas.sort();
                    if let Some(&(start, _)) = areas.get(k % areas.len().max(1)) {
                        src_iova = start;
                    }
                }
                let prot = Prot { read: true, write };
                let got = h.ctx.ioas_copy(
                    ids[dst],
                    ids[src],
                    src_iova,
                    MapArgs {
                        iova: dst_iova,
                        length: len,
                        prot,
                    },
                );
                let want = model[src]
                    .pieces(src_iova, len)
                    .and_then(|p| model[dst].map_pieces(&p, len, dst_iova, write));
                (got, want)
            }
            Op::Allow { ioas, ranges } => {
                let got = h.ctx.ioas_allow_iovas(ids[*ioas], ranges).map(|()| 0);
                let m = &mut model[*ioas];
                let mut want = Ok(0);
                for (i, &r) in ranges.iter().enumerate() {
                    if r.0 >= r.1 || ranges[..i].iter().any(|&x| overlaps(x, r)) {
                        want = Err(Errno::EINVAL);
                        break;
                    }
                }
                if want.is_ok()
                    && ranges
                        .iter()
                        .any(|&r| m.reserved.iter().any(|&x| overlaps(x, r)))
                {
                    want = Err(Errno::EADDRINUSE);
                }
                if want.is_ok() {
                    m.allowed = ranges.clone();
                }
                (got, want)
            }
            &Op::Reserve { ioas, start, len } => {
                let got = h.ctx.ioas_add_reserved(ids[ioas], start, len).map(|()| 0);
                let m = &mut model[ioas];
                let want = if len == 0 {
                    Err(Errno::EINVAL)
                } else {
                    match start.checked_add(len - 1) {
                        None => Err(Errno::EOVERFLOW),
                        Some(last)
                            if m.used_by((start, last))
                                && m.areas
                                    .iter()
                                    .any(|a| overlaps((a.start, a.last), (start, last))) =>
                        {
                            Err(Errno::EADDRINUSE)
                        }
                        Some(last) if m.allowed.iter().any(|&x| overlaps(x, (start, last))) => {
                            Err(Errno::EADDRINUSE)
                        }
                        Some(last) => {
                            m.reserved.push((start, last));
                            Ok(0)
                        }
                    }
                };
                (got, want)
            }
            &Op::HugePages { ioas, on } => {
                let t = h.ctx.ioas_mut(ids[ioas]).unwrap();
                let got = if on {
                    t.enable_large_pages();
                    Ok(0)
                } else {
                    t.disable_large_pages().map(|()| 0)
                };
                let m = &mut model[ioas];
                let want = if on {
                    m.no_large_pages = false;
                    Ok(0)
                } else if m.no_large_pages {
                    Ok(0)
                } else if m.areas.iter().any(|a| {
                    a.start % PAGE != 0 || (a.last - a.start + 1) % PAGE != 0 || a.va % PAGE != 0
                }) {
                    Err(Errno::EADDRINUSE)
                } else {
                    m.no_large_pages = true;
                    Ok(0)
                };
                (got, want)
            }
        };
        assert_eq!(got, want, "operation {n}: {op:?}");
        if got.is_ok() {
            let kind = match &op {
                Op::Map { iova: None, .. } => "map auto",
                Op::Map { .. } => "map fixed",
                Op::Unmap { .. } => "unmap",
                Op::UnmapAll { .. } => "unmap all",
                Op::Copy { .. } => "copy",
                Op::Allow { .. } => "allow",
                Op::Reserve { .. } => "reserve",
                Op::HugePages { .. } => "huge pages",
            };
            *succeeded.entry(kind).or_default() += 1;
        }
        for (i, id) in ids.iter().enumerate() {
            let t = h.ctx.ioas(*id).unwrap();
            let mut want: Vec<(u64, u64)> =
                model[i].areas.iter().map(|a| (a.start, a.last)).collect();
            want.sort();
            let got: Vec<(u64, u64)> = t.areas().map(|a| (a.start, a.last)).collect();
            assert_eq!(got, want, "areas of IOAS {i} after operation {n}: {op:?}");
            if n % 64 == 0 {
                assert!(
                    t.free_space_is_consistent(),
                    "free-space index after operation {n}"
                );
            }
        }
    }
    for kind in ["map auto", "map fixed", "unmap", "copy"] {
        assert!(
            succeeded.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} succeeded: {succeeded:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_agrees_with_the_model(ops in prop::collection::vec(op(), 800)) {
        run(ops);
    }
}
