//! What each descriptor number of this process is, as far as the shim has
//! learned, so that an `ioctl` need not `fstat` its descriptor (about 370 ns
//! on a VM, more than the rest of a staged call's own work) to know whether
//! the server serves it.
//!
//! One slot per descriptor number below [`SLOTS`]. A slot says either
//! nothing, or that the number holds a served file (its inode and kind), or
//! that it holds a file the server does not serve. Only a lookup that
//! asked the kernel (`fstat`) fills a slot; the shim's own hooks empty it
//! whenever a number's file can change under it: `close`, `dup2`, `dup3`,
//! `close_range` and `closefrom`. A number that `open`, `socket`, `dup` or
//! a received descriptor hands out was free, so its slot was emptied when
//! its last file was closed. libc's own closes of a stream's or a
//! directory's descriptor are seen through `fclose`, `pclose`, `freopen`,
//! `freopen64` and `closedir` (glibc's `fcloseall` flushes streams but
//! closes no descriptor). Every served file the shim hands out renews its number's
//! slot. `fork` copies the table with the descriptors; `exec` starts empty.
//!
//! What the shim cannot see, it cannot follow: a descriptor closed or
//! replaced by a raw system call or by io_uring keeps its slot until the
//! shim's own hooks touch that number again. A stale "not served" is then
//! harmless (a served file at that number renewed it); a stale "served"
//! needs a served file closed behind the shim's back and its number reused
//! by another file. Programs that do that are outside what the shim
//! supports (they bypass its `ioctl` too).
//!
//! Races with closes in other threads: a slot also carries a generation,
//! which every close of its number advances, and a count of closes in
//! flight. A lookup fills a slot only if its generation has not moved since
//! the lookup read it and no close of that number was under way then, so a
//! file that was being closed while `fstat` looked at it is never written
//! down as the number's file.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many descriptor numbers have a slot; higher ones are looked up each
/// time.
pub(crate) const SLOTS: usize = 4096;

/// What the shim knows a descriptor number holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    /// A context (`/dev/iommu`, the legacy container), by its inode.
    Context(u32),
    /// A VFIO device or group file the server serves, by its inode.
    Vfio(u32),
    /// Any file the server does not serve.
    NotServed,
}

/// A slot's value seen by a lookup that missed, to fill it with afterwards.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Miss {
    fd: usize,
    seen: u64,
}

// Slot layout: bits 0..32 the inode, 32..34 the kind (0: nothing known),
// 34..40 closes in flight, 40..64 the generation.
const KIND_SHIFT: u32 = 32;
const CLOSES_SHIFT: u32 = 34;
const CLOSES_MASK: u64 = 0x3f << CLOSES_SHIFT;
const GENERATION_SHIFT: u32 = 40;
const KIND_CONTEXT: u64 = 1;
const KIND_VFIO: u64 = 2;
const KIND_NOT_SERVED: u64 = 3;

static TABLE: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

fn decode(value: u64) -> Option<Known> {
    let ino = value as u32;
    match (value >> KIND_SHIFT) & 3 {
        KIND_CONTEXT => Some(Known::Context(ino)),
        KIND_VFIO => Some(Known::Vfio(ino)),
        KIND_NOT_SERVED => Some(Known::NotServed),
        _ => None,
    }
}

/// What `fd` holds, if known (`Ok`); otherwise what to hand to
/// [`learn`] once the kernel has been asked (`Err`, `None` for a number
/// without a slot).
pub(crate) fn look_up(fd: i32) -> Result<Known, Option<Miss>> {
    let Some(slot) = usize::try_from(fd).ok().filter(|&i| i < SLOTS) else {
        return Err(None);
    };
    let seen = TABLE[slot].load(Ordering::Acquire);
    decode(seen).ok_or(Some(Miss { fd: slot, seen }))
}

/// Writes down what a lookup that missed found `fd` to hold, unless a
/// close of that number began or ended since the lookup read the slot.
pub(crate) fn learn(miss: Option<Miss>, known: Known) {
    let Some(Miss { fd, seen }) = miss else {
        return;
    };
    if seen & CLOSES_MASK != 0 {
        return;
    }
    let (kind, ino) = match known {
        Known::Context(ino) => (KIND_CONTEXT, ino),
        Known::Vfio(ino) => (KIND_VFIO, ino),
        Known::NotServed => (KIND_NOT_SERVED, 0),
    };
    let generation = seen & !((1 << GENERATION_SHIFT) - 1);
    let value = generation | kind << KIND_SHIFT | u64::from(ino);
    // Fails, harmlessly, when a close moved the generation meanwhile.
    let _ = TABLE[fd].compare_exchange(seen, value, Ordering::AcqRel, Ordering::Relaxed);
}

/// Marks the numbers in `fds` as being closed (or replaced), before the
/// real call: each slot forgets its file, moves to a new generation and
/// counts one more close in flight. Pair with [`closed`].
pub(crate) fn closing(fds: std::ops::RangeInclusive<u32>) {
    for slot in slots(fds) {
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let closes = ((v & CLOSES_MASK) >> CLOSES_SHIFT)
                .saturating_add(1)
                .min(0x3f);
            Some(next_generation(v) | closes << CLOSES_SHIFT)
        });
    }
}

/// After the real call that [`closing`] announced: one close fewer in
/// flight, and a new generation again, so that a lookup that began during
/// the close cannot fill the slot with the file that was closed.
pub(crate) fn closed(fds: std::ops::RangeInclusive<u32>) {
    for slot in slots(fds) {
        let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            // A count that saturated stays there: the slot then never
            // fills again, which costs an fstat per call, never a wrong
            // answer.
            let closes = (v & CLOSES_MASK) >> CLOSES_SHIFT;
            let closes = if closes == 0x3f {
                closes
            } else {
                closes.saturating_sub(1)
            };
            Some(next_generation(v) | closes << CLOSES_SHIFT)
        });
    }
}

/// Forgets what number `fd` held: the shim is handing the program a file
/// it made (a context, a VFIO file) at a number whose last file may have
/// been closed where no hook saw it.
pub(crate) fn renew(fd: i32) {
    if let Ok(n) = u32::try_from(fd) {
        closing(n..=n);
        closed(n..=n);
    }
}

/// The slot's generation advanced by one, with nothing known and no close
/// counted.
fn next_generation(v: u64) -> u64 {
    ((v >> GENERATION_SHIFT).wrapping_add(1) << GENERATION_SHIFT)
        & !((1u64 << GENERATION_SHIFT) - 1)
}

fn slots(fds: std::ops::RangeInclusive<u32>) -> impl Iterator<Item = &'static AtomicU64> {
    let (first, last) = (*fds.start() as usize, *fds.end() as usize);
    let end = last.min(SLOTS - 1);
    TABLE.get(first..=end).unwrap_or(&[]).iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses its own descriptor numbers: the table is shared.

    #[test]
    fn a_lookup_fills_the_slot_and_a_close_empties_it() {
        let miss = look_up(10).unwrap_err();
        learn(miss, Known::Context(77));
        assert!(matches!(look_up(10), Ok(Known::Context(77))));
        closing(10..=10);
        assert!(look_up(10).is_err());
        closed(10..=10);
        let miss = look_up(10).unwrap_err();
        learn(miss, Known::NotServed);
        assert!(matches!(look_up(10), Ok(Known::NotServed)));
    }

    #[test]
    fn a_lookup_that_overlapped_a_close_writes_nothing_down() {
        // Read before the close began...
        let early = look_up(20).unwrap_err();
        closing(20..=20);
        // ...and during it.
        let during = look_up(20).unwrap_err();
        closed(20..=20);
        learn(early, Known::Vfio(5));
        learn(during, Known::Vfio(5));
        assert!(look_up(20).is_err());
    }

    #[test]
    fn ranges_clip_to_the_table_and_high_numbers_have_no_slot() {
        learn(look_up(30).unwrap_err(), Known::NotServed);
        closing(30..=u32::MAX);
        closed(30..=u32::MAX);
        assert!(look_up(30).is_err());
        assert!(matches!(look_up(SLOTS as i32), Err(None)));
        assert!(matches!(look_up(-1), Err(None)));
        learn(None, Known::NotServed);
    }
}
