//! A process named by handles that stay bound to it, never by a pid that
//! a later process may be given.

use crate::errno::{Errno, Result};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

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
}

impl ProcessHandle {
    /// This process.
    pub fn current() -> Arc<ProcessHandle> {
        Arc::new(ProcessHandle {
            pid: nix::unistd::getpid(),
            dir: None,
            pidfd: None,
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
        let handle = ProcessHandle {
            pid: nix::unistd::Pid::from_raw(pid),
            dir: Some(dir),
            pidfd: Some(pidfd),
        };
        // Alive now and alive when the pidfd was made: the pid was never
        // free in between, so the directory opened is this process's.
        if handle.exited() {
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

    /// Whether the process has exited (a zombie counts as exited), as its
    /// pidfd says now: one `poll`, so that a check made right before a copy
    /// sees an exit that happened right before it.
    pub fn exited(&self) -> bool {
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
