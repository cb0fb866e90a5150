//! A thread's `fail-nth` file (`/proc/<pid>/task/<tid>/fail-nth`), as the
//! kernel's fault-injection tests use it: writing n makes the n-th failure
//! point this task passes fail. softiommu's failure points are the engine's
//! (allocations, pins), so the file is served by the server, whose thread
//! for this program thread holds the counter. Opening it gives a memfd
//! (so `fstat` and `close` behave); reads and writes on that descriptor go
//! to the server. Another task's file is not served: only the calling
//! thread's own can be reached this way.

use libc::c_int;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Descriptors opened on the calling thread's fail-nth file.
static TRACKED: Mutex<Option<HashSet<c_int>>> = Mutex::new(None);
/// Whether `TRACKED` may hold anything: every other read skips the lock.
static ANY: AtomicBool = AtomicBool::new(false);

/// Whether `path` names the calling thread's own fail-nth file:
/// `/proc/{self,<pid>}/task/<tid>/fail-nth`, `/proc/thread-self/fail-nth`,
/// or `/proc/{self,<pid>}/fail-nth` from the main thread.
pub(crate) fn is_own(path: &[u8]) -> bool {
    let Some(rest) = std::str::from_utf8(path)
        .ok()
        .and_then(|p| p.strip_prefix("/proc/"))
        .and_then(|p| p.strip_suffix("/fail-nth"))
    else {
        return false;
    };
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let pid = std::process::id() as i32;
    let names = |part: &str, id: i32| part.parse::<i32>().ok() == Some(id);
    let process = |part: &str| part == "self" || names(part, pid);
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["thread-self"] => true,
        [p] => (process(p) && tid == pid) || names(p, tid),
        [p, "task", t] => process(p) && names(t, tid),
        _ => false,
    }
}

/// Remembers that `fd` is a fail-nth file.
pub(crate) fn track(fd: c_int) {
    TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(fd);
    ANY.store(true, Ordering::Release);
}

/// Whether `fd` is a fail-nth file.
pub(crate) fn is_tracked(fd: c_int) -> bool {
    ANY.load(Ordering::Acquire)
        && TRACKED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|s| s.contains(&fd))
}

/// Forgets `fd` (its close).
pub(crate) fn untrack(fd: c_int) {
    if ANY.load(Ordering::Acquire) {
        if let Some(set) = TRACKED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            set.remove(&fd);
        }
    }
}

/// The file's text from `offset` into `buf`: the counter as `"%u\n"`.
pub(crate) fn read(buf: &mut [u8], offset: u64) -> Result<usize, c_int> {
    let text = format!("{}\n", crate::fail_nth_call(None)?);
    let bytes = text.as_bytes();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let len = (bytes.len() - start).min(buf.len());
    buf[..len].copy_from_slice(&bytes[start..start + len]);
    Ok(len)
}

/// A write: the text goes to the server, which reads it as the kernel's
/// `kstrtouint` does (`EINVAL`, `ERANGE`); the whole count is taken.
pub(crate) fn write(data: &[u8]) -> Result<usize, c_int> {
    crate::fail_nth_call(Some(data))?;
    Ok(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_threads_file_is_its_own() {
        let pid = std::process::id();
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        assert!(is_own(format!("/proc/self/task/{tid}/fail-nth").as_bytes()));
        assert!(is_own(
            format!("/proc/{pid}/task/{tid}/fail-nth").as_bytes()
        ));
        assert!(is_own(b"/proc/thread-self/fail-nth"));
        assert!(!is_own(
            format!("/proc/self/task/{}/fail-nth", tid + 1).as_bytes()
        ));
        assert!(!is_own(b"/proc/self/task/x/fail-nth"));
        assert!(!is_own(b"/proc/self/status"));
    }
}
