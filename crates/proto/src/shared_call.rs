//! The shared call page: the one implementation of how a call and its reply
//! cross the page, used by the shim (program side) and the server.
//!
//! Vocabulary:
//! - **call number**: `call_seq`, bumped by the program for each call; the
//!   server answers call `n` by storing `n` in `reply_seq`.
//! - **publish**: write the message, then store its number (sequentially
//!   consistent, so it also releases the message) and wake the other side
//!   if it said it sleeps.
//! - **wait**: poll the number for a bounded time, then sleep on a futex on
//!   it, waking every [`SLEEP_SLICE`] to ask whether the other side still
//!   exists. The server also sleeps on a [`Hangup`] word, which whoever
//!   sees the program's end of the channel close raises: a program that
//!   exits is noticed at once, and an idle channel's thread sleeps for
//!   [`WATCHED_SLEEP_SLICE`] at a time.
//!
//! Mapping the page needs `unsafe`, which lives only in each side's `sys`
//! module; what can be safe is here: making and checking the memory, and
//! everything done through the mapped page.

use crate::{Call, Reply};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The size of the shared call page.
pub const SHARED_PAGE_SIZE: usize = 4096;

/// How long a program polls for a reply before it sleeps: most calls are
/// answered well within it, so a call usually costs no sleep and wake-up.
pub const PROGRAM_SPIN: Duration = Duration::from_micros(200);

/// How long the server polls for a program's next call before it sleeps:
/// long enough to catch a program that issues calls back to back, short
/// enough that an idle channel costs nothing.
pub const SERVER_SPIN: Duration = Duration::from_micros(50);

/// How long a sleeper waits before it checks that the other side still
/// exists.
pub const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// How long a server sleeps between checks when a [`Hangup`] watches its
/// channel: the check is then only a safeguard.
pub const WATCHED_SLEEP_SLICE: Duration = Duration::from_secs(30);

/// The futex form of [`SLEEP_SLICE`].
const SLEEP_SLICE_TS: rustix::thread::futex::Timespec = rustix::thread::futex::Timespec {
    tv_sec: SLEEP_SLICE.as_secs() as i64,
    tv_nsec: SLEEP_SLICE.subsec_nanos() as i64,
};

/// A word that ends a server's wait for the next call: raised by whoever
/// notices that the program's end of the channel has closed (the server's
/// hang-up watcher). Without it a dead program's channel was noticed only
/// at the next [`SLEEP_SLICE`], so a program that forked often left a
/// crowd of server threads behind it. Private to the server's process.
#[derive(Debug, Default)]
pub struct Hangup(AtomicU32);

impl Hangup {
    /// Marks the channel's program gone and wakes its server thread.
    pub fn raise(&self) {
        self.0.store(1, Ordering::SeqCst);
        let _ =
            rustix::thread::futex::wake(&self.0, rustix::thread::futex::Flags::PRIVATE, u32::MAX);
    }

    /// Whether [`raise`](Self::raise) was called.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }
}

/// Whether this kernel lacks `futex_waitv` (Linux < 5.16): a watched
/// server then sleeps as an unwatched one does.
static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sleeps while `seq` holds `now` and `hangup` is not raised, for at most
/// [`WATCHED_SLEEP_SLICE`]; `false` when the kernel cannot wait on both.
fn sleep_watched(seq: &AtomicU32, now: u32, hangup: &Hangup) -> bool {
    use rustix::thread::futex::{self, Wait, WaitFlags, WaitPtr, WaitvFlags};
    if NO_WAITV.load(Ordering::Relaxed) {
        return false;
    }
    let start = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let end_ns = start.tv_nsec as i64 + WATCHED_SLEEP_SLICE.subsec_nanos() as i64;
    let deadline = futex::Timespec {
        tv_sec: start.tv_sec + WATCHED_SLEEP_SLICE.as_secs() as i64 + end_ns / 1_000_000_000,
        tv_nsec: (end_ns % 1_000_000_000) as _,
    };
    let mut call = Wait::new();
    call.val = u64::from(now);
    call.uaddr = WaitPtr::new(seq.as_ptr().cast());
    // Shared: the program wakes it through its own mapping of the page.
    call.flags = WaitFlags::SIZE_U32;
    let mut gone = Wait::new();
    gone.uaddr = WaitPtr::new(hangup.0.as_ptr().cast());
    gone.flags = WaitFlags::SIZE_U32 | WaitFlags::PRIVATE;
    use rustix::io::Errno;
    match futex::waitv(
        &[call, gone],
        WaitvFlags::empty(),
        Some(&deadline),
        futex::ClockId::Monotonic,
    ) {
        Ok(_) | Err(Errno::TIMEDOUT | Errno::AGAIN | Errno::INTR) => true,
        // No such call (Linux < 5.16), or one a seccomp filter refuses
        // (EPERM): falling back beats retrying a call that fails at once.
        Err(_) => {
            NO_WAITV.store(true, Ordering::Relaxed);
            false
        }
    }
}

/// The shared call page. Protocol: the program publishes a call
/// ([`publish_call`](Self::publish_call)) and waits for its reply
/// ([`wait_for_reply`](Self::wait_for_reply)); the server waits for the
/// next call ([`wait_for_call`](Self::wait_for_call)) and publishes its
/// reply ([`publish_reply`](Self::publish_reply)). A side about to sleep
/// first sets its `*_sleeping` flag, then re-reads the number it waits on;
/// the other side stores the number before it reads the flag (all four
/// sequentially consistent), so no wake-up is lost. Messages are kept in
/// atomic words, so neither side needs more than a shared reference to the
/// page, and any bit pattern is a valid page.
///
/// Layout: what the program writes (`call_seq`, `program_sleeping`, the
/// call) fills the first cache line, the payload follows from the second,
/// and what the server writes (`reply_seq`, `server_sleeping`, the reply)
/// fills the page's last line, so a call moves one line each way besides
/// the struct. A call that spilled into the reply's line made every round
/// trip measurably slower (7%), and so did a payload that began in it
/// (5%); a payload right after the call, in the line the CPU fetches with
/// the call's (its 128-byte pair), measured 3-4% faster than one a line
/// further on.
#[repr(C)]
#[derive(Debug)]
pub struct SharedCall {
    call_seq: AtomicU32,
    program_sleeping: AtomicU32,
    call: [AtomicU64; CALL_WORDS],
    /// An ioctl's argument struct, staged by the program (a call's `len`
    /// says how many bytes) and as the server left it after the call.
    payload: [AtomicU64; PAYLOAD_WORDS],
    reply_seq: AtomicU32,
    server_sleeping: AtomicU32,
    reply: [AtomicU64; REPLY_WORDS],
}

impl Default for SharedCall {
    /// A zeroed page, as a fresh memfd maps.
    fn default() -> Self {
        SharedCall {
            call_seq: AtomicU32::new(0),
            program_sleeping: AtomicU32::new(0),
            call: std::array::from_fn(|_| AtomicU64::new(0)),
            payload: std::array::from_fn(|_| AtomicU64::new(0)),
            reply_seq: AtomicU32::new(0),
            server_sleeping: AtomicU32::new(0),
            reply: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

const CALL_WORDS: usize = std::mem::size_of::<Call>() / 8;
const REPLY_WORDS: usize = std::mem::size_of::<Reply>() / 8;
/// The reply's line is the page's last, away from the call and payload.
const REPLY_AT: usize = SHARED_PAGE_SIZE - 64;
const PAYLOAD_WORDS: usize = (REPLY_AT - 64) / 8;

/// The largest argument struct a call can stage in the page.
pub const PAYLOAD_MAX: usize = PAYLOAD_WORDS * 8;
const _: () = assert!(std::mem::size_of::<Call>() % 8 == 0);
const _: () = assert!(std::mem::size_of::<Reply>() % 8 == 0);
const _: () = assert!(std::mem::size_of::<SharedCall>() <= SHARED_PAGE_SIZE);
const _: () = assert!(std::mem::offset_of!(SharedCall, payload) == 64);
const _: () = assert!(std::mem::offset_of!(SharedCall, reply_seq) == REPLY_AT);

fn store_words<T: IntoBytes + Immutable>(words: &[AtomicU64], value: &T) {
    for (word, chunk) in words.iter().zip(value.as_bytes().chunks_exact(8)) {
        store_chunk(word, chunk);
    }
}

/// Stores up to eight bytes in `word`, zero past their end.
fn store_chunk(word: &AtomicU64, chunk: &[u8]) {
    let mut raw = [0u8; 8];
    raw[..chunk.len()].copy_from_slice(chunk);
    word.store(u64::from_ne_bytes(raw), Ordering::Relaxed);
}

fn load_words<T: FromBytes + IntoBytes + Default>(words: &[AtomicU64]) -> T {
    let mut value = T::default();
    for (word, chunk) in words.iter().zip(value.as_mut_bytes().chunks_exact_mut(8)) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    value
}

/// Waiters of this process polling right now.
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How many waiters of one process may poll at once: half the CPUs
/// (after any CPU quota), at least one, and none when the process may
/// run on one CPU only. There a poller only keeps the other side from
/// running until the scheduler preempts it: a map+unmap pair took 230 µs
/// so, and 13 µs with both sides sleeping on the futex at once
/// (BENCHMARKS.md). A quota of one CPU over several still polls: the two
/// sides then run at once, and polling beats a futex wake-up even when
/// the quota throttles it.
fn max_spinners() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| {
        let runnable_on = rustix::thread::sched_getaffinity(None).map_or(2, |set| set.count());
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        spinners_for(runnable_on as usize, parallelism)
    })
}

/// [`max_spinners`] for a process that may run on `runnable_on` CPUs and
/// has `parallelism` of them by its quota.
fn spinners_for(runnable_on: usize, parallelism: usize) -> usize {
    if runnable_on <= 1 {
        0
    } else {
        (parallelism / 2).max(1)
    }
}

/// Stores `value` in `seq` and wakes whoever sleeps on it.
fn publish(seq: &AtomicU32, value: u32, other_sleeping: &AtomicU32) {
    seq.store(value, Ordering::SeqCst);
    if other_sleeping.load(Ordering::SeqCst) != 0 {
        let _ = rustix::thread::futex::wake(seq, rustix::thread::futex::Flags::empty(), u32::MAX);
    }
}

/// Waits until `done` holds for `seq`'s value, and returns that value:
/// polls for `spin`, then sleeps on the futex with `sleeping` set. `None`
/// once `alive` says the other side is gone.
fn wait_until(
    seq: &AtomicU32,
    done: impl Fn(u32) -> bool,
    sleeping: &AtomicU32,
    spin: Duration,
    hangup: Option<&Hangup>,
    mut alive: impl FnMut() -> bool,
) -> Option<u32> {
    // At most half the CPUs poll at once in this process; the other
    // waiters sleep at once, so pollers never take the CPU the other side
    // needs to answer (eight threads of a program polling on two cores
    // slowed every call down).
    let polling = SPINNING.fetch_add(1, Ordering::Relaxed) < max_spinners();
    let start = Instant::now();
    let mut found: Option<u32> = None;
    if polling {
        while found.is_none() && start.elapsed() < spin {
            for _ in 0..64 {
                let now = seq.load(Ordering::Acquire);
                if done(now) {
                    found = Some(now);
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    SPINNING.fetch_sub(1, Ordering::Relaxed);
    if found.is_some() {
        return found;
    }
    loop {
        sleeping.store(1, Ordering::SeqCst);
        let now = seq.load(Ordering::SeqCst);
        if done(now) {
            sleeping.store(0, Ordering::SeqCst);
            return Some(now);
        }
        if !hangup.is_some_and(|h| sleep_watched(seq, now, h)) {
            let _ = rustix::thread::futex::wait(
                seq,
                rustix::thread::futex::Flags::empty(),
                now,
                Some(&SLEEP_SLICE_TS),
            );
        }
        sleeping.store(0, Ordering::SeqCst);
        let now = seq.load(Ordering::Acquire);
        if done(now) {
            return Some(now);
        }
        if hangup.is_some_and(Hangup::raised) || !alive() {
            return None;
        }
    }
}

impl SharedCall {
    /// Program side: writes `call` and hands it to the server; returns its
    /// number, for [`wait_for_reply`](Self::wait_for_reply).
    pub fn publish_call(&self, call: &Call) -> u32 {
        store_words(&self.call, call);
        let seq = self.call_seq.load(Ordering::Relaxed).wrapping_add(1);
        publish(&self.call_seq, seq, &self.server_sleeping);
        seq
    }

    /// Program side: the reply to call `seq`; `None` once `alive` says the
    /// server has gone.
    pub fn wait_for_reply(&self, seq: u32, alive: impl FnMut() -> bool) -> Option<Reply> {
        wait_until(
            &self.reply_seq,
            |now| now == seq,
            &self.program_sleeping,
            PROGRAM_SPIN,
            None,
            alive,
        )?;
        Some(load_words(&self.reply))
    }

    /// Server side: the call after call `last` (0 before the first, as the
    /// page starts zeroed), with its number; `None` once `hangup` is raised
    /// or `alive` says the program has gone.
    pub fn wait_for_call(
        &self,
        last: u32,
        hangup: Option<&Hangup>,
        alive: impl FnMut() -> bool,
    ) -> Option<(u32, Call)> {
        let seq = wait_until(
            &self.call_seq,
            |now| now != last,
            &self.server_sleeping,
            SERVER_SPIN,
            hangup,
            alive,
        )?;
        Some((seq, load_words(&self.call)))
    }

    /// Writes `bytes` (at most [`PAYLOAD_MAX`]) to the payload: the
    /// program before it publishes a call, the server before it publishes
    /// the reply.
    pub fn store_payload(&self, bytes: &[u8]) {
        for (word, chunk) in self.payload.iter().zip(bytes.chunks(8)) {
            store_chunk(word, chunk);
        }
    }

    /// Writes the words of `bytes` that differ from `before` (what
    /// [`load_payload`](Self::load_payload) gave, as long): the server
    /// answering a call that left most of its struct as it was. A word
    /// left alone stays in the program's cache, so the program reads the
    /// reply without fetching it back.
    pub fn store_payload_changes(&self, bytes: &[u8], before: &[u8]) {
        let pairs = bytes.chunks(8).zip(before.chunks(8));
        for (word, (chunk, old)) in self.payload.iter().zip(pairs) {
            if chunk != old {
                store_chunk(word, chunk);
            }
        }
    }

    /// Reads the payload's first `out.len()` bytes (at most
    /// [`PAYLOAD_MAX`]): the server after a call arrived, the program after
    /// its reply.
    pub fn load_payload(&self, out: &mut [u8]) {
        for (word, chunk) in self.payload.iter().zip(out.chunks_mut(8)) {
            let raw = word.load(Ordering::Relaxed).to_ne_bytes();
            chunk.copy_from_slice(&raw[..chunk.len()]);
        }
    }

    /// Server side: writes `reply` and hands it to the program as the
    /// answer to call `seq`.
    pub fn publish_reply(&self, seq: u32, reply: &Reply) {
        store_words(&self.reply, reply);
        publish(&self.reply_seq, seq, &self.program_sleeping);
    }
}

/// Program side: the memory of a new call page, to map and to send to the
/// server: one page, sealed against shrinking (see [`is_page_memory`]).
pub fn new_page_memory() -> Option<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let memory = rustix::fs::memfd_create(
        "softiommu-call",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .ok()?;
    rustix::fs::ftruncate(&memory, SHARED_PAGE_SIZE as u64).ok()?;
    rustix::fs::fcntl_add_seals(
        &memory,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )
    .ok()?;
    Some(memory)
}

/// Server side: whether `memory` may be mapped as a call page: at least a
/// page long and sealed against shrinking, so that a program cannot make
/// the server fault by truncating it.
pub fn is_page_memory(memory: impl AsFd) -> bool {
    let sealed = rustix::fs::fcntl_get_seals(&memory)
        .is_ok_and(|seals| seals.contains(rustix::fs::SealFlags::SHRINK));
    sealed && rustix::fs::fstat(&memory).is_ok_and(|st| st.st_size >= SHARED_PAGE_SIZE as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn call(n: u64) -> Call {
        Call {
            op: crate::CALL_IOCTL,
            arg: n,
            ..Call::default()
        }
    }

    /// A server thread answering every call with `result = arg + 1`, after
    /// `delay` (long enough to send the program to sleep when not zero).
    fn serve(page: Arc<SharedCall>, calls: u32, delay: Duration) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut last = 0;
            for _ in 0..calls {
                let (seq, call) = page.wait_for_call(last, None, || true).unwrap();
                last = seq;
                std::thread::sleep(delay);
                let reply = Reply {
                    result: call.arg as i64 + 1,
                    ..Reply::default()
                };
                page.publish_reply(seq, &reply);
            }
        })
    }

    #[test]
    fn calls_answered_while_polling_get_their_own_replies() {
        let page = Arc::new(SharedCall::default());
        let server = serve(page.clone(), 1000, Duration::ZERO);
        for n in 0..1000 {
            let seq = page.publish_call(&call(n));
            let reply = page.wait_for_reply(seq, || true).unwrap();
            assert_eq!(reply.result, n as i64 + 1);
        }
        server.join().unwrap();
    }

    #[test]
    fn both_sides_sleep_and_are_woken() {
        // The server answers after the program's polling time; the program
        // calls again after the server's: each side goes to its futex.
        let page = Arc::new(SharedCall::default());
        let server = serve(page.clone(), 3, PROGRAM_SPIN * 5);
        for n in 0..3 {
            std::thread::sleep(SERVER_SPIN * 5);
            let seq = page.publish_call(&call(n));
            let reply = page.wait_for_reply(seq, || true).unwrap();
            assert_eq!(reply.result, n as i64 + 1);
        }
        server.join().unwrap();
    }

    #[test]
    fn a_reply_writes_back_only_the_words_the_call_changed() {
        let page = SharedCall::default();
        let program: Vec<u8> = (0..40u8).collect();
        page.store_payload(&program);
        let mut served = vec![0u8; program.len()];
        page.load_payload(&mut served);
        assert_eq!(served, program);
        let before = served.clone();
        served[9] = 0xee;
        // A word the call left alone is not written: what the page holds
        // there (here marked by hand) stays.
        page.payload[3].store(7, Ordering::Relaxed);
        page.store_payload_changes(&served, &before);
        let mut seen = vec![0u8; program.len()];
        page.load_payload(&mut seen);
        assert_eq!(seen[8..16], served[8..16]);
        assert_eq!(seen[24..32], 7u64.to_ne_bytes());
        assert_eq!(seen[..8], program[..8]);
        assert_eq!(seen[32..], program[32..]);
    }

    #[test]
    fn nobody_polls_on_one_cpu() {
        assert_eq!(spinners_for(1, 1), 0);
        assert_eq!(spinners_for(2, 2), 1);
        assert_eq!(spinners_for(16, 16), 8);
        // A quota of one CPU over several: the sides still run at once.
        assert_eq!(spinners_for(8, 1), 1);
    }

    #[test]
    fn this_process_polls_when_it_may_use_two_cpus() {
        let cpus = rustix::thread::sched_getaffinity(None).unwrap().count();
        assert_eq!(max_spinners() == 0, cpus <= 1);
    }

    #[test]
    fn a_waiter_gives_up_once_the_other_side_is_gone() {
        let page = SharedCall::default();
        assert!(page.wait_for_call(0, None, || false).is_none());
        let seq = page.publish_call(&call(1));
        assert!(page.wait_for_reply(seq, || false).is_none());
    }

    #[test]
    fn a_raised_hangup_wakes_a_sleeping_server() {
        // The program stays "alive" throughout: only the hang-up can end
        // the wait before the watched slice does.
        let page = Arc::new(SharedCall::default());
        let hangup = Arc::new(Hangup::default());
        let waiter = {
            let (page, hangup) = (page.clone(), hangup.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let call = page.wait_for_call(0, Some(&hangup), || true);
                (call.is_none(), start.elapsed())
            })
        };
        // Long past the server's polling: it sleeps by now.
        std::thread::sleep(SERVER_SPIN * 20);
        hangup.raise();
        let (ended, waited) = waiter.join().unwrap();
        assert!(ended, "a raised hangup ends the wait with None");
        assert!(
            waited < WATCHED_SLEEP_SLICE,
            "woken, not timed out: {waited:?}"
        );
    }

    #[test]
    fn a_watched_server_still_answers_calls() {
        let page = Arc::new(SharedCall::default());
        let hangup = Arc::new(Hangup::default());
        let server = {
            let (page, hangup) = (page.clone(), hangup.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while let Some((seq, call)) = page.wait_for_call(last, Some(&hangup), || true) {
                    last = seq;
                    let reply = Reply {
                        result: call.arg as i64 + 1,
                        ..Reply::default()
                    };
                    page.publish_reply(seq, &reply);
                }
            })
        };
        for n in 0..3 {
            // Each call finds the server asleep on both words.
            std::thread::sleep(SERVER_SPIN * 20);
            let seq = page.publish_call(&call(n));
            let reply = page.wait_for_reply(seq, || true).unwrap();
            assert_eq!(reply.result, n as i64 + 1);
        }
        hangup.raise();
        server.join().unwrap();
        assert!(page.wait_for_call(3, Some(&hangup), || true).is_none());
    }

    #[test]
    fn page_memory_is_sealed_and_accepted() {
        let memory = new_page_memory().unwrap();
        assert!(is_page_memory(&memory));
        let plain = rustix::fs::memfd_create("plain", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&plain, SHARED_PAGE_SIZE as u64).unwrap();
        assert!(!is_page_memory(&plain), "a page that may shrink is refused");
    }
}
