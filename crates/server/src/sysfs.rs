//! The part of sysfs a VFIO program reads about the machine's PCI
//! functions, written as a real directory tree in the session directory.
//! The shim sends path lookups under `/sys/bus/pci/devices/<bdf>` and
//! `/sys/kernel/iommu_groups/<n>` there, for the functions and groups this
//! machine has (Linux's layout, which programs such as the VFIO selftests'
//! library parse):
//!
//! ```text
//! sys/bus/pci/devices/<bdf>/{vendor,device,subsystem_vendor,subsystem_device,class,revision}
//! sys/bus/pci/devices/<bdf>/iommu_group -> ../../../../kernel/iommu_groups/<n>
//! sys/bus/pci/devices/<bdf>/driver -> ../../../../bus/pci/drivers/<driver>
//! sys/bus/pci/devices/<bdf>/vfio-dev/vfio<m>/dev          "<major>:<m>"
//! sys/kernel/iommu_groups/<n>/devices/<bdf> -> ../../../../bus/pci/devices/<bdf>
//! ```
//!
//! Every function is bound to vfio-pci unless the topology gives it a
//! kernel driver; the tree is written once, when the server starts.
//!
//! A machine with Intel IOMMUs also gets the driver's debugfs view of each
//! function behind one, rewritten each time a program opens it
//! ([`refresh_debugfs`]):
//!
//! ```text
//! sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct
//! ```

use softiommu_engine::pages::EngineState;
use softiommu_engine::vfio::{intel_translation_struct, VfioHost};
use softiommu_iommu::{DeviceId, Topology};
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

/// The character-device major number reported for `/dev/vfio/devices/*`
/// (Linux allocates it dynamically; any unused major does).
pub const VFIO_CDEV_MAJOR: u32 = 511;

/// The debugfs file of device `bdf` under `root`.
fn debugfs_file(root: &Path, bdf: &str) -> std::path::PathBuf {
    root.join(format!(
        "sys/kernel/debug/iommu/intel/{bdf}/domain_translation_struct"
    ))
}

/// Rewrites the Intel debugfs file of the device named by `path` (a path
/// under `/sys/kernel/debug/iommu/intel/`) with what it shows now.
pub fn refresh_debugfs(root: &Path, shared: &EngineState, path: &str) -> io::Result<()> {
    let Some(rest) = path.strip_prefix("/sys/kernel/debug/iommu/intel/") else {
        return Ok(());
    };
    let bdf = rest.split('/').next().unwrap_or_default();
    let dev = shared
        .iommu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .topology()
        .device_by_name(bdf);
    match dev.and_then(|d| intel_translation_struct(shared, d)) {
        Some(text) => std::fs::write(debugfs_file(root, bdf), text),
        None => Ok(()),
    }
}

/// Writes the Intel debugfs view of `devices` under `root`.
fn write_debugfs(
    root: &Path,
    shared: &EngineState,
    devices: &[(DeviceId, String)],
) -> io::Result<()> {
    for (dev, bdf) in devices {
        if let Some(text) = intel_translation_struct(shared, *dev) {
            let file = debugfs_file(root, bdf);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(file, text)?;
        }
    }
    Ok(())
}

/// Writes the whole tree: sysfs, and debugfs where the machine has it.
pub fn write(root: &Path, shared: &EngineState, host: &VfioHost) -> io::Result<()> {
    let devices: Vec<(DeviceId, String)> = {
        let core = shared.iommu.lock().unwrap_or_else(|e| e.into_inner());
        write_tree(root, core.topology(), host)?;
        host.devices()
            .map(|d| (d, core.topology().device(d).name.clone()))
            .collect()
    };
    write_debugfs(root, shared, &devices)
}

/// Writes the tree under `root` (which becomes `root/sys/...`).
pub fn write_tree(root: &Path, topology: &Topology, host: &VfioHost) -> io::Result<()> {
    let sys = root.join("sys");
    let devices = sys.join("bus/pci/devices");
    let drivers = sys.join("bus/pci/drivers");
    let groups = sys.join("kernel/iommu_groups");
    std::fs::create_dir_all(&devices)?;
    std::fs::create_dir_all(drivers.join("vfio-pci"))?;
    std::fs::create_dir_all(&groups)?;
    for (minor, dev) in host.devices().enumerate() {
        let spec = topology.device(dev);
        let Some(pci) = &spec.pci else { continue };
        let dir = devices.join(&spec.name);
        std::fs::create_dir_all(&dir)?;
        let ids = &pci.ids;
        for (name, value) in [
            ("vendor", format!("0x{:04x}\n", ids.vendor)),
            ("device", format!("0x{:04x}\n", ids.device)),
            (
                "subsystem_vendor",
                format!("0x{:04x}\n", ids.subsystem_vendor),
            ),
            (
                "subsystem_device",
                format!("0x{:04x}\n", ids.subsystem_device),
            ),
            ("class", format!("0x{:06x}\n", ids.class)),
            ("revision", format!("0x{:02x}\n", ids.revision)),
        ] {
            std::fs::write(dir.join(name), value)?;
        }
        let group = spec.group.0;
        symlink(
            format!("../../../../kernel/iommu_groups/{group}"),
            dir.join("iommu_group"),
        )?;
        let driver = spec.kernel_driver.as_deref().unwrap_or("vfio-pci");
        std::fs::create_dir_all(drivers.join(driver))?;
        symlink(
            format!("../../../../bus/pci/drivers/{driver}"),
            dir.join("driver"),
        )?;
        if spec.kernel_driver.is_none() {
            let cdev = dir.join(format!("vfio-dev/vfio{minor}"));
            std::fs::create_dir_all(&cdev)?;
            std::fs::write(cdev.join("dev"), format!("{VFIO_CDEV_MAJOR}:{minor}\n"))?;
        }
        let members = groups.join(format!("{group}/devices"));
        std::fs::create_dir_all(&members)?;
        symlink(
            format!("../../../../bus/pci/devices/{}", spec.name),
            members.join(&spec.name),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_what_the_vfio_library_reads() {
        let root = std::env::temp_dir().join(format!("softiommu-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let topology = Topology::default_machine();
        let host = VfioHost::new(&topology).unwrap();
        write_tree(&root, &topology, &host).unwrap();
        let dev = root.join("sys/bus/pci/devices/0000:02:00.0");
        assert_eq!(
            std::fs::read_to_string(dev.join("vendor")).unwrap(),
            "0x8086\n"
        );
        assert_eq!(
            std::fs::read_to_string(dev.join("device")).unwrap(),
            "0x1533\n"
        );
        let group = std::fs::read_link(dev.join("iommu_group")).unwrap();
        assert_eq!(group.file_name().unwrap(), "1");
        assert!(dev.join("iommu_group/devices/0000:02:00.0/vendor").exists());
        let driver = std::fs::read_link(dev.join("driver")).unwrap();
        assert_eq!(driver.file_name().unwrap(), "vfio-pci");
        let cdevs: Vec<String> = std::fs::read_dir(dev.join("vfio-dev"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(cdevs, ["vfio3"]);
        // The NVMe drive is the kernel's: no VFIO device node.
        let nvme = root.join("sys/bus/pci/devices/0000:03:00.0");
        assert_eq!(
            std::fs::read_link(nvme.join("driver"))
                .unwrap()
                .file_name()
                .unwrap(),
            "nvme"
        );
        assert!(!nvme.join("vfio-dev").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_intel_machine_gets_the_drivers_debugfs_view() {
        let root = std::env::temp_dir().join(format!("softiommu-debugfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let engine = softiommu_engine::api::Engine::new();
        write(&root, engine.shared(), engine.vfio()).unwrap();
        let file = debugfs_file(&root, "0000:02:00.0");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("Device 0000:02:00.0 "), "{text}");
        assert_eq!(text.lines().count(), 2, "no mapping yet: {text}");
        refresh_debugfs(
            &root,
            engine.shared(),
            "/sys/kernel/debug/iommu/intel/0000:02:00.0/domain_translation_struct",
        )
        .unwrap();
        assert!(file.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
