//! The sysfs attributes a program writes to change the machine:
//! `sriov_numvfs`, whose writes create or remove VFs. A descriptor opened
//! for writing on one is remembered here with the path the program gave,
//! and each `write(2)` on it goes to the server, which answers as the
//! attribute's store does (the count, or an errno such as `EBUSY`).
//! Writes through stdio (`fprintf`) and through a `dup` of the descriptor
//! are not seen; they change nothing.

use libc::c_int;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Attributes whose writes the server acts on.
const WRITABLE: [&str; 1] = ["/sriov_numvfs"];

/// Descriptor → the attribute's path as the program spelt it.
static TRACKED: Mutex<Option<HashMap<c_int, String>>> = Mutex::new(None);
/// Whether `TRACKED` may hold anything: every other `write` skips the lock.
static ANY: AtomicBool = AtomicBool::new(false);

/// Whether `path` opened with `flags` is a write to an attribute here.
pub(crate) fn is_attribute_write(path: &str, flags: c_int) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
        && path.starts_with("/sys/")
        && WRITABLE.iter().any(|a| path.ends_with(a))
}

/// Remembers that `fd` writes the attribute at `path`.
pub(crate) fn track(fd: c_int, path: &str) {
    TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(fd, path.to_owned());
    ANY.store(true, Ordering::Release);
}

/// The attribute `fd` writes, if it is one.
pub(crate) fn path_of(fd: c_int) -> Option<String> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()?
        .get(&fd)
        .cloned()
}

/// Forgets `fd` (its close).
pub(crate) fn untrack(fd: c_int) {
    if ANY.load(Ordering::Acquire) {
        if let Some(map) = TRACKED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            map.remove(&fd);
        }
    }
}
