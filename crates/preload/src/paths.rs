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

/// The session's copy of `path`, when the session has the entry it names.
pub fn redirect(path: &str, session: &Path) -> Option<String> {
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
        std::fs::remove_dir_all(&root).unwrap();
    }
}
