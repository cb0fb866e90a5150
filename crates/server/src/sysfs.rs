//! The part of sysfs a VFIO program reads about the machine's PCI
//! functions, written as a real directory tree in the session directory.
//! The shim sends path lookups under `/sys/bus/pci/devices/<bdf>` and
//! `/sys/kernel/iommu_groups/<n>` there, for the functions and groups this
//! machine has (Linux's layout, which programs such as the VFIO selftests'
//! library parse):
//!
//! ```text
//! sys/bus/pci/devices/<bdf>/{vendor,device,subsystem_vendor,subsystem_device,class,revision}
//! sys/bus/pci/devices/<bdf>/config               configuration space, 256 or 4096 bytes
//! sys/bus/pci/devices/<bdf>/subsystem -> ../../../../bus/pci
//! sys/bus/pci/devices/<bdf>/iommu_group -> ../../../../kernel/iommu_groups/<n>
//! sys/bus/pci/devices/<bdf>/driver -> ../../../../bus/pci/drivers/<driver>
//! sys/bus/pci/devices/<bdf>/vfio-dev/vfio<m>/dev          "<major>:<m>"
//! sys/kernel/iommu_groups/<n>/devices/<bdf> -> ../../../../bus/pci/devices/<bdf>
//! ```
//!
//! Every function is bound to vfio-pci unless the topology gives it a
//! kernel driver; the tree is written once, when the server starts, but
//! for the files whose contents change, which are rewritten each time a
//! program opens them ([`refresh`]): `config` (the whole space, as root
//! reads it, with the values the function's user has written) and, on a
//! machine with Intel IOMMUs, the driver's debugfs view of each function
//! behind one:
//!
//! ```text
//! sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct
//! ```

use softiommu_engine::pages::EngineState;
use softiommu_engine::vfio::{intel_translation_struct, VfioHost};
use softiommu_iommu::{DeviceId, Topology};
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The character-device major number reported for `/dev/vfio/devices/*`
/// (Linux allocates it dynamically; any unused major does).
pub const VFIO_CDEV_MAJOR: u32 = 511;

/// The debugfs file of device `bdf` under `root`.
fn debugfs_file(root: &Path, bdf: &str) -> PathBuf {
    root.join(format!(
        "sys/kernel/debug/iommu/intel/{bdf}/domain_translation_struct"
    ))
}

/// The `config` file of device `bdf` under `root`.
fn config_file(root: &Path, bdf: &str) -> PathBuf {
    root.join(format!("sys/bus/pci/devices/{bdf}/config"))
}

/// Puts `contents` at `path` by renaming a complete new file over it, so
/// that a program reading the old one meanwhile never sees a torn file.
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".new{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let staged = PathBuf::from(name);
    std::fs::write(&staged, contents)?;
    std::fs::rename(&staged, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staged);
    })
}

/// Writes `dev`'s configuration space as it reads now to its `config`
/// file; nothing for a device that is not a PCI function.
fn write_config(root: &Path, host: &VfioHost, dev: DeviceId, bdf: &str) -> io::Result<()> {
    let Some(function) = host.function(dev) else {
        return Ok(());
    };
    let bytes = {
        let function = function.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = vec![0u8; function.config.len()];
        function
            .config
            .read(0, &mut bytes)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        bytes
    };
    replace_file(&config_file(root, bdf), &bytes)
}

/// Rewrites the changing file named by `path` (as the program spelt it)
/// with what it shows now: a function's `config`, or an Intel debugfs
/// translation struct. Other paths are left alone.
pub fn refresh(root: &Path, shared: &EngineState, host: &VfioHost, path: &str) -> io::Result<()> {
    let device_named = |bdf: &str| {
        shared
            .iommu
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .topology()
            .device_by_name(bdf)
    };
    if let Some(rest) = path.strip_prefix("/sys/kernel/debug/iommu/intel/") {
        let bdf = rest.split('/').next().unwrap_or_default();
        return match device_named(bdf).and_then(|d| intel_translation_struct(shared, d)) {
            Some(text) => replace_file(&debugfs_file(root, bdf), text.as_bytes()),
            None => Ok(()),
        };
    }
    // Any spelling that ends in `<bdf>/config`: through `devices/`, an
    // IOMMU group's `devices/` or a link chain.
    if let Some(dir) = path
        .strip_prefix("/sys/")
        .and_then(|p| p.strip_suffix("/config"))
    {
        let bdf = dir.rsplit('/').next().unwrap_or_default();
        if let Some(dev) = device_named(bdf) {
            return write_config(root, host, dev, bdf);
        }
    }
    Ok(())
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
    // Written after the machine's lock is released: a function's lock
    // comes before it.
    for (dev, bdf) in &devices {
        write_config(root, host, *dev, bdf)?;
    }
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
        symlink("../../../../bus/pci", dir.join("subsystem"))?;
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
        assert!(dev.join("subsystem/devices/0000:02:00.0").exists());
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
        refresh(
            &root,
            engine.shared(),
            engine.vfio(),
            "/sys/kernel/debug/iommu/intel/0000:02:00.0/domain_translation_struct",
        )
        .unwrap();
        assert!(file.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn config_shows_the_space_as_it_is_at_each_open() {
        let root = std::env::temp_dir().join(format!("softiommu-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let engine = softiommu_engine::api::Engine::new();
        write(&root, engine.shared(), engine.vfio()).unwrap();
        let file = config_file(&root, "0000:02:00.0");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len(), 4096, "a PCI Express function");
        assert_eq!(bytes[..4], [0x86, 0x80, 0x33, 0x15]);
        assert_eq!(bytes[4] & 0x6, 0, "memory and bus master off after reset");

        let dev = engine.vfio().devices().find(|&d| {
            let function = engine.vfio().function(d).unwrap();
            let id = function.lock().unwrap().config.spec().ids.device;
            id == 0x1533
        });
        let function = engine.vfio().function(dev.unwrap()).unwrap();
        function.lock().unwrap().config.write(4, &[0x6, 0]).unwrap();
        // Not rewritten until opened again, under any spelling of the path.
        assert_eq!(std::fs::read(&file).unwrap()[4] & 0x6, 0);
        let via_group = "/sys/kernel/iommu_groups/1/devices/0000:02:00.0/config";
        refresh(&root, engine.shared(), engine.vfio(), via_group).unwrap();
        assert_eq!(std::fs::read(&file).unwrap()[4] & 0x6, 0x6);
        // Paths that name nothing the machine has are left alone.
        for other in [
            "/sys/bus/pci/devices/0000:09:00.0/config",
            "/sys/config",
            "/etc/config",
        ] {
            refresh(&root, engine.shared(), engine.vfio(), other).unwrap();
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
