//! Which paths the shim serves from the session instead of the system: the
//! parts of sysfs that describe the machine's emulated PCI functions and
//! IOMMU groups, which the server writes under `<session>/sys` (see the
//! server's `sysfs` module). A path is sent there only when the session's
//! tree has the device or group it names, so the host's own devices stay
//! visible as they are.

use std::path::Path;

/// The sysfs and debugfs directories whose entries the session may shadow;
/// the first component after each names a PCI function, an IOMMU group, or
/// an IOMMU driver's debugfs directory.
const SHADOWED: [&str; 3] = [
    "/sys/bus/pci/devices/",
    "/sys/kernel/iommu_groups/",
    "/sys/kernel/debug/iommu/",
];

/// debugfs, whose fault-injection directories (`failslab`,
/// `fail_page_alloc`, …) the session provides as plain files: the engine's
/// failure points are armed through a task's fail-nth file alone, and the
/// knobs are there so that tests that set them up find them.
const DEBUGFS: &str = "/sys/kernel/debug";

/// Whether `path` is under one of debugfs's fault-injection directories.
pub fn is_fault_injection_knob(path: &str) -> bool {
    path.strip_prefix(DEBUGFS)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|rest| rest.starts_with("fail"))
}

/// The session's copy of `path`, when the session has the entry it names.
pub fn redirect(path: &str, session: &Path) -> Option<String> {
    // debugfs's root and its fault-injection directories, once the session
    // offers them (a listing of the root then shows the session's debugfs).
    let session_debugfs = format!("{}{DEBUGFS}", session.display());
    if Path::new(&session_debugfs).join("failslab").is_dir()
        && (path.trim_end_matches('/') == DEBUGFS || is_fault_injection_knob(path))
    {
        let entry = path[DEBUGFS.len()..].trim_start_matches('/');
        let entry = entry.split('/').next().unwrap_or("");
        if entry.is_empty() || Path::new(&session_debugfs).join(entry).exists() {
            return Some(format!("{}{path}", session.display()));
        }
    }
    for prefix in SHADOWED {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        let entry = rest.split('/').next().unwrap_or("");
        if entry.is_empty() || entry == "." || entry == ".." {
            return None;
        }
        let shadow_entry = format!("{}{}{entry}", session.display(), prefix);
        if Path::new(&shadow_entry).symlink_metadata().is_ok() {
            return Some(format!("{}{path}", session.display()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_entries_the_session_has_are_redirected() {
        let root = std::env::temp_dir().join(format!("softiommu-paths-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sys/bus/pci/devices/0000:02:00.0")).unwrap();
        std::fs::create_dir_all(root.join("sys/kernel/iommu_groups/1/devices")).unwrap();
        let r = |p: &str| redirect(p, &root);
        let ours = format!("{}/sys/bus/pci/devices/0000:02:00.0/vendor", root.display());
        assert_eq!(r("/sys/bus/pci/devices/0000:02:00.0/vendor"), Some(ours));
        assert!(r("/sys/kernel/iommu_groups/1/devices").is_some());
        assert_eq!(
            r("/sys/bus/pci/devices/0000:00:1f.0/vendor"),
            None,
            "a host device"
        );
        assert_eq!(r("/sys/kernel/iommu_groups/7"), None);
        assert_eq!(r("/sys/bus/pci/devices/"), None);
        assert_eq!(r("/sys/bus/pci/devices/../x"), None);
        assert_eq!(r("/proc/self/status"), None);
        assert_eq!(r("/sys/kernel/debug/"), None, "no fault injection offered");
        std::fs::create_dir_all(root.join("sys/kernel/debug/failslab")).unwrap();
        assert!(r("/sys/kernel/debug/").is_some());
        assert!(r("/sys/kernel/debug/failslab/verbose").is_some());
        assert_eq!(r("/sys/kernel/debug/fail_futex/verbose"), None);
        assert_eq!(r("/sys/kernel/debug/tracing"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
