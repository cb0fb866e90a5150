//! Notices at once when a program's end of a call channel closes.
//!
//! A call channel's thread sleeps on a futex in the shared page, where a
//! socket's end-of-file cannot wake it; before this watcher it asked every
//! 100 ms whether the program still existed, so each process that exited
//! left its thread (and that thread's stack and allocator arena) for up to
//! that long, and a program that forked often kept a crowd of them. One
//! thread now waits on every channel socket at once (`epoll`, one-shot
//! `EPOLLRDHUP`) and raises the channel's [`Hangup`], which its thread
//! sleeps on beside the page.
//!
//! Ownership: the watcher is one per process, started by the first
//! [`watch`]; each [`Watched`] is owned by its channel's thread and removes
//! its socket from the watch when dropped (before the socket closes, so a
//! descriptor number reused later is never watched by mistake).

use softiommu_proto::Hangup;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The process's watcher: its epoll descriptor and the hang-up word of
/// each watched channel, by token.
#[derive(Debug)]
struct Watcher {
    epoll: OwnedFd,
    /// Invariant: a token is here exactly while its socket is in `epoll`'s
    /// interest list (removed together by [`Watched`]'s drop); tokens are
    /// never reused.
    channels: Mutex<HashMap<u64, Arc<Hangup>>>,
    next_token: AtomicU64,
}

static WATCHER: OnceLock<Option<Arc<Watcher>>> = OnceLock::new();

/// The watcher, started on first use; `None` when it could not start (no
/// descriptor or thread to be had): channels then fall back to asking on
/// each sleep slice.
fn watcher() -> Option<&'static Arc<Watcher>> {
    WATCHER
        .get_or_init(|| {
            let epoll =
                rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).ok()?;
            let watcher = Arc::new(Watcher {
                epoll,
                channels: Mutex::new(HashMap::new()),
                next_token: AtomicU64::new(0),
            });
            let running = watcher.clone();
            std::thread::Builder::new()
                .name("hangup-watcher".into())
                .stack_size(64 << 10)
                .spawn(move || running.run())
                .ok()?;
            Some(watcher)
        })
        .as_ref()
}

impl Watcher {
    fn run(&self) {
        use rustix::event::epoll;
        let mut events: Vec<epoll::Event> = Vec::with_capacity(64);
        loop {
            events.clear();
            let spare = rustix::buffer::spare_capacity(&mut events);
            if let Err(e) = epoll::wait(&self.epoll, spare, None) {
                if e == rustix::io::Errno::INTR {
                    continue;
                }
                return;
            }
            let channels = crate::lock(&self.channels);
            for event in &events {
                let data = event.data;
                if let Some(hangup) = channels.get(&data.u64()) {
                    hangup.raise();
                }
            }
        }
    }
}

/// A channel socket under watch; dropping it ends the watch (it borrows
/// the socket, so it cannot outlive it).
#[derive(Debug)]
pub(crate) struct Watched<'socket> {
    watcher: &'static Watcher,
    token: u64,
    hangup: Arc<Hangup>,
    socket: BorrowedFd<'socket>,
}

impl Watched<'_> {
    /// The word the channel's thread sleeps on beside its page.
    pub(crate) fn hangup(&self) -> &Hangup {
        &self.hangup
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        let _ = rustix::event::epoll::delete(&self.watcher.epoll, self.socket);
        crate::lock(&self.watcher.channels).remove(&self.token);
    }
}

/// Starts watching `socket` (a call channel's): its hang-up raises the
/// returned watch's word. `None` when there is no watcher or the socket
/// could not be added.
pub(crate) fn watch<'socket>(socket: &'socket impl AsFd) -> Option<Watched<'socket>> {
    use rustix::event::epoll;
    let watcher = watcher()?;
    let token = watcher.next_token.fetch_add(1, Ordering::Relaxed);
    let hangup = Arc::new(Hangup::default());
    // Listed before the socket is added, so a hang-up already there finds
    // its word.
    crate::lock(&watcher.channels).insert(token, hangup.clone());
    let added = epoll::add(
        &watcher.epoll,
        socket.as_fd(),
        epoll::EventData::new_u64(token),
        epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT,
    );
    if added.is_err() {
        crate::lock(&watcher.channels).remove(&token);
        return None;
    }
    Some(Watched {
        watcher,
        token,
        hangup,
        socket: socket.as_fd(),
    })
}
