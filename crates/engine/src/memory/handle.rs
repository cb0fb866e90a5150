//! A process named by handles that stay bound to it, never by a pid that
//! a later process may be given.

use crate::errno::{Errno, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// A process the engine acts for. For another process (the server path),
/// `/proc/<pid>` is opened while the process is known to be alive: lookups
/// under that directory reach this process or fail once it is gone, and
/// never the process that is later given its pid. The pidfd tells whether
/// it has exited. This process itself (the library path) needs neither.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: nix::unistd::Pid,
    /// `/proc/<pid>`, or `None` for this process (`/proc/self`).
    dir: Option<OwnedFd>,
    /// A pidfd of the process; `None` for this process.
    pidfd: Option<OwnedFd>,
    /// Set by the [`ExitWatch`] thread as soon as the process exits, so
    /// that a copy can check liveness without a system call.
    exited: Arc<AtomicBool>,
    /// The handle's key in the [`ExitWatch`], if it is watched.
    watch_key: Option<u64>,
}

impl ProcessHandle {
    /// This process.
    pub fn current() -> Arc<ProcessHandle> {
        Arc::new(ProcessHandle {
            pid: nix::unistd::getpid(),
            dir: None,
            pidfd: None,
            exited: Arc::new(AtomicBool::new(false)),
            watch_key: None,
        })
    }

    /// Process `pid`, which `pidfd` refers to (the server takes it from
    /// `SO_PEERPIDFD`, so it is the process that connected even if that
    /// process has exited since). `ESRCH` once that process has exited:
    /// then `/proc/<pid>` might be another's.
    pub fn bind(pid: i32, pidfd: OwnedFd) -> Result<Arc<ProcessHandle>> {
        let dir = rustix::fs::open(
            format!("/proc/{pid}"),
            rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|_| Errno(libc::ESRCH))?;
        let exited = Arc::new(AtomicBool::new(false));
        let watch_key = ExitWatch::get().and_then(|w| w.add(&pidfd, &exited));
        let handle = ProcessHandle {
            pid: nix::unistd::Pid::from_raw(pid),
            dir: Some(dir),
            pidfd: Some(pidfd),
            exited,
            watch_key,
        };
        // Alive now and alive when the pidfd was made: the pid was never
        // free in between, so the directory opened is this process's.
        if handle.poll_exited() {
            return Err(Errno(libc::ESRCH));
        }
        Ok(Arc::new(handle))
    }

    /// The process's id (in the server's pid namespace).
    pub fn pid(&self) -> nix::unistd::Pid {
        self.pid
    }

    /// The process's pidfd; `None` for this process.
    pub fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The inode of the file `name` (under `/proc/<pid>`) leads to, as
    /// `stat` follows a descriptor link.
    pub fn inode(&self, name: &str) -> Result<u64> {
        let stat = match &self.dir {
            Some(dir) => rustix::fs::statat(dir, name, rustix::fs::AtFlags::empty()),
            None => rustix::fs::stat(format!("/proc/self/{name}")),
        }
        .map_err(|e| Errno(e.raw_os_error()))?;
        Ok(stat.st_ino)
    }

    /// Whether this is the engine's own process.
    pub fn is_current(&self) -> bool {
        self.dir.is_none()
    }

    /// Whether the process has exited (a zombie counts as exited): what
    /// the exit watcher has seen, or, where there is no watcher, the pidfd.
    pub fn exited(&self) -> bool {
        if self.watch_key.is_some() {
            return self.exited.load(Ordering::Acquire);
        }
        self.poll_exited()
    }

    /// Whether the pidfd says the process has exited.
    fn poll_exited(&self) -> bool {
        let Some(pidfd) = &self.pidfd else {
            return false;
        };
        let mut fds = [rustix::event::PollFd::new(
            pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())) {
            Ok(n) => n > 0,
            Err(_) => true,
        }
    }

    /// Opens `name` (a path under `/proc/<pid>`) for reading, or for reading
    /// and writing.
    pub fn open(&self, name: &str, write: bool) -> Result<File> {
        let mode = if write {
            rustix::fs::OFlags::RDWR
        } else {
            rustix::fs::OFlags::RDONLY
        };
        let flags = mode | rustix::fs::OFlags::CLOEXEC;
        let fd = match &self.dir {
            Some(dir) => rustix::fs::openat(dir, name, flags, rustix::fs::Mode::empty()),
            None => rustix::fs::open(
                format!("/proc/self/{name}"),
                flags,
                rustix::fs::Mode::empty(),
            ),
        }
        .map_err(|e| Errno(e.raw_os_error()))?;
        Ok(File::from(fd))
    }

    /// The text of `/proc/<pid>/<name>`; `EFAULT` once the process is gone.
    pub fn read_to_string(&self, name: &str) -> Result<String> {
        use std::io::Read;
        let mut text = String::new();
        self.open(name, false)?
            .read_to_string(&mut text)
            .map_err(|_| Errno::EFAULT)?;
        Ok(text)
    }

    /// The targets of the process's descriptor links (`/proc/<pid>/fd`), by
    /// descriptor number.
    pub fn descriptors(&self) -> Result<Vec<(i32, String)>> {
        let dir = self.open_dir("fd")?;
        let mut links = Vec::new();
        let entries = rustix::fs::Dir::read_from(&dir).map_err(|_| Errno(libc::ESRCH))?;
        for entry in entries {
            let Ok(entry) = entry else { break };
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(number) = name.parse::<i32>() else {
                continue;
            };
            if let Ok(target) = rustix::fs::readlinkat(&dir, name.as_str(), Vec::new()) {
                links.push((number, target.to_string_lossy().into_owned()));
            }
        }
        Ok(links)
    }

    /// Opens the directory `name` under `/proc/<pid>`.
    fn open_dir(&self, name: &str) -> Result<OwnedFd> {
        let flags = rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::RDONLY
            | rustix::fs::OFlags::CLOEXEC;
        match &self.dir {
            Some(dir) => rustix::fs::openat(dir.as_fd(), name, flags, rustix::fs::Mode::empty()),
            None => rustix::fs::open(
                format!("/proc/self/{name}"),
                flags,
                rustix::fs::Mode::empty(),
            ),
        }
        .map_err(|_| Errno(libc::ESRCH))
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if let (Some(key), Some(watch)) = (self.watch_key, ExitWatch::get()) {
            watch.forget(key);
        }
    }
}

/// One thread that waits on the pidfds of every bound process and marks
/// each exited as soon as it exits. A copy by pid checks the mark before
/// and after: for the pid to reach another process in between, it would
/// have to be freed and handed out again (a full turn of the kernel's
/// cyclic pid allocator) before this thread wakes.
struct ExitWatch {
    epoll: OwnedFd,
    next_key: AtomicU64,
    /// The marks of watched processes by key. Lock order: a leaf.
    marks: Mutex<HashMap<u64, Weak<AtomicBool>>>,
}

impl ExitWatch {
    /// The process-wide watcher, started on first use; `None` if epoll is
    /// unavailable (then every check polls the pidfd).
    fn get() -> Option<&'static ExitWatch> {
        static WATCH: OnceLock<Option<&'static ExitWatch>> = OnceLock::new();
        *WATCH.get_or_init(|| {
            let epoll =
                rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).ok()?;
            let watch: &'static ExitWatch = Box::leak(Box::new(ExitWatch {
                epoll,
                next_key: AtomicU64::new(1),
                marks: Mutex::new(HashMap::new()),
            }));
            std::thread::Builder::new()
                .name("softiommu-exit-watch".into())
                .spawn(move || watch.run())
                .ok()?;
            Some(watch)
        })
    }

    fn add(&self, pidfd: &OwnedFd, mark: &Arc<AtomicBool>) -> Option<u64> {
        use rustix::event::epoll;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(key, Arc::downgrade(mark));
        let added = epoll::add(
            &self.epoll,
            pidfd,
            epoll::EventData::new_u64(key),
            epoll::EventFlags::IN | epoll::EventFlags::ONESHOT,
        );
        if added.is_err() {
            self.forget(key);
            return None;
        }
        Some(key)
    }

    fn forget(&self, key: u64) {
        // The epoll entry goes when the pidfd is closed.
        self.lock().remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Weak<AtomicBool>>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        use rustix::event::epoll;
        let mut events = Vec::with_capacity(64);
        loop {
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                None,
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return,
            }
            for event in &events {
                let key = event.data.u64();
                if let Some(mark) = self.lock().get(&key).and_then(Weak::upgrade) {
                    mark.store(true, Ordering::Release);
                }
            }
        }
    }
}
