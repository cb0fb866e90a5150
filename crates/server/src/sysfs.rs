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
//! sys/bus/pci/devices/<bdf>/sriov_{totalvfs,numvfs,offset,stride,vf_device}   a PF's
//! sys/bus/pci/devices/<bdf>/virtfn<n> -> ../<vf bdf>     a PF's enabled VFs
//! sys/bus/pci/devices/<bdf>/physfn -> ../<pf bdf>        a VF's PF
//! sys/kernel/iommu_groups/<n>/devices/<bdf> -> ../../../../bus/pci/devices/<bdf>
//! ```
//!
//! Every function is bound to vfio-pci unless the topology gives it a
//! kernel driver (VFs too: they inherit their PF's). Attributes are
//! read-only but `sriov_numvfs`, whose writes the shim sends to
//! [`write_attribute`]: VFs and their entries appear and go as Linux's
//! do. The tree is written when the server starts, but for the files whose
//! contents change, which are rewritten each time a
//! program opens them ([`refresh`]): `config` (the whole space, as root
//! reads it, with the values the function's user has written) and, on a
//! machine with Intel IOMMUs, the driver's debugfs view of each function
//! behind one:
//!
//! ```text
//! sys/kernel/debug/iommu/intel/<bdf>/domain_translation_struct
//! ```

use softiommu_engine::pages::EngineState;
use softiommu_engine::vfio::{intel_translation_struct, SriovChange, SriovRole, VfioHost};
use softiommu_engine::Errno;
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
            .into_iter()
            .map(|d| (d, core.topology().device(d).name.clone()))
            .collect()
    };
    // Written after the machine's lock is released: a function's lock
    // comes before it.
    for (dev, bdf) in &devices {
        write_config(root, host, *dev, bdf)?;
    }
    write_debugfs(root, shared, &devices)?;
    write_fault_injection(root)
}

/// debugfs's fault-injection directories, with the knobs Linux gives them
/// at their defaults. They are plain files and arm nothing: the engine's
/// failure points are reached through a task's `fail-nth` file (see the
/// shim's `fail_nth` module), which needs no knob set.
fn write_fault_injection(root: &Path) -> io::Result<()> {
    const COMMON: [(&str, &str); 8] = [
        ("probability", "0\n"),
        ("interval", "1\n"),
        ("times", "1\n"),
        ("space", "0\n"),
        ("verbose", "2\n"),
        ("verbose_ratelimit_interval_ms", "0\n"),
        ("verbose_ratelimit_burst", "0\n"),
        ("task-filter", "N\n"),
    ];
    let debugfs = root.join("sys/kernel/debug");
    for (dir, own) in [
        (
            "failslab",
            &[("ignore-gfp-wait", "Y\n"), ("cache-filter", "N\n")][..],
        ),
        (
            "fail_page_alloc",
            &[
                ("ignore-gfp-wait", "Y\n"),
                ("ignore-gfp-highmem", "Y\n"),
                ("min-order", "1\n"),
            ][..],
        ),
        ("fail_usercopy", &[][..]),
    ] {
        let dir = debugfs.join(dir);
        std::fs::create_dir_all(&dir)?;
        for (name, value) in COMMON.iter().chain(own) {
            std::fs::write(dir.join(name), value)?;
        }
    }
    Ok(())
}

/// Writes the tree under `root` (which becomes `root/sys/...`).
pub fn write_tree(root: &Path, topology: &Topology, host: &VfioHost) -> io::Result<()> {
    let sys = root.join("sys");
    std::fs::create_dir_all(sys.join("bus/pci/devices"))?;
    std::fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci"))?;
    std::fs::create_dir_all(sys.join("kernel/iommu_groups"))?;
    for dev in host.devices() {
        write_function(root, topology, host, dev)?;
    }
    Ok(())
}

/// Writes function `dev`'s directory, its group's entry and, for a VF, the
/// links between it and its PF.
fn write_function(
    root: &Path,
    topology: &Topology,
    host: &VfioHost,
    dev: DeviceId,
) -> io::Result<()> {
    let sys = root.join("sys");
    let devices = sys.join("bus/pci/devices");
    let drivers = sys.join("bus/pci/drivers");
    let spec = topology.device(dev);
    let (Some(pci), Some(function)) = (&spec.pci, host.function(dev)) else {
        return Ok(());
    };
    let (minor, physfn) = {
        let f = function.lock().unwrap_or_else(|e| e.into_inner());
        let physfn = match &f.sriov {
            SriovRole::Vf { pf, .. } => Some(topology.device(*pf).name.clone()),
            _ => None,
        };
        (f.minor, physfn)
    };
    let dir = devices.join(&spec.name);
    std::fs::create_dir_all(&dir)?;
    let ids = &pci.ids;
    let mut attributes = vec![
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
    ];
    if let Some(sriov) = &pci.sriov {
        attributes.extend([
            ("sriov_totalvfs", format!("{}\n", sriov.total_vfs)),
            ("sriov_offset", format!("{}\n", sriov.first_vf_offset)),
            ("sriov_stride", format!("{}\n", sriov.vf_stride)),
            ("sriov_vf_device", format!("{:x}\n", sriov.vf_device)),
        ]);
    }
    attributes.push(("resource", resources(dev, pci)));
    for (name, value) in attributes {
        write_read_only(&dir.join(name), value.as_bytes())?;
    }
    if let Some((_, num)) = host.sriov_counts(dev) {
        write_num_vfs(&dir, num)?;
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
        write_read_only(
            &cdev.join("dev"),
            format!("{VFIO_CDEV_MAJOR}:{minor}\n").as_bytes(),
        )?;
    }
    let members = sys.join(format!("kernel/iommu_groups/{group}/devices"));
    std::fs::create_dir_all(&members)?;
    symlink(
        format!("../../../../bus/pci/devices/{}", spec.name),
        members.join(&spec.name),
    )?;
    if let Some(pf) = physfn {
        symlink(format!("../{pf}"), dir.join("physfn"))?;
    }
    Ok(())
}

/// The `resource` attribute: for each of the six BARs, the ROM and the six
/// SR-IOV BARs, `start end flags` as Linux's `resource_show` prints them.
/// The machine has no host addresses, so each function gets a window of
/// its own (4 GiB per device from 0x380000000000) with its BARs laid out
/// at their natural alignment; absent resources read all zeros.
fn resources(dev: DeviceId, pci: &softiommu_pci::FunctionSpec) -> String {
    use softiommu_pci::{BarKind, BarSpec};
    const IORESOURCE_IO: u64 = 0x100;
    const IORESOURCE_MEM: u64 = 0x200;
    const IORESOURCE_PREFETCH: u64 = 0x2000;
    const IORESOURCE_SIZEALIGN: u64 = 0x40000;
    const IORESOURCE_MEM_64: u64 = 0x100000;
    let mut next = 0x3800_0000_0000u64 + u64::from(dev.0) * (1 << 32);
    let mut line = |bar: Option<&BarSpec>, count: u64| match bar {
        None => format!("0x{:016x} 0x{:016x} 0x{:016x}\n", 0, 0, 0),
        Some(b) => {
            let size = b.size * count;
            let start = next.next_multiple_of(b.size);
            next = start + size;
            let flags = match b.kind {
                BarKind::Io => IORESOURCE_IO | IORESOURCE_SIZEALIGN | 0x1,
                BarKind::Mem32 { prefetchable } => {
                    IORESOURCE_MEM
                        | IORESOURCE_SIZEALIGN
                        | if prefetchable {
                            IORESOURCE_PREFETCH | 0x8
                        } else {
                            0
                        }
                }
                BarKind::Mem64 { prefetchable } => {
                    IORESOURCE_MEM
                        | IORESOURCE_MEM_64
                        | IORESOURCE_SIZEALIGN
                        | 0x4
                        | if prefetchable {
                            IORESOURCE_PREFETCH | 0x8
                        } else {
                            0
                        }
                }
            };
            format!(
                "0x{:016x} 0x{:016x} 0x{:016x}\n",
                start,
                start + size - 1,
                flags
            )
        }
    };
    let find = |bars: &[BarSpec], i: u8| bars.iter().find(|b| b.index == i).copied();
    let mut out = String::new();
    for i in 0..6 {
        out += &line(find(&pci.bars, i).as_ref(), 1);
    }
    out += &line(None, 0);
    for i in 0..6 {
        let vf = pci
            .sriov
            .as_ref()
            .and_then(|s| find(&s.vf_bars, i).map(|b| (b, u64::from(s.total_vfs))));
        out += &match vf {
            Some((b, n)) => line(Some(&b), n),
            None => line(None, 0),
        };
    }
    out
}

/// Writes an attribute the program may only read (a write is `EACCES`
/// for an unprivileged program, as sysfs's mode 0444 makes it).
fn write_read_only(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

/// Rewrites a PF's `sriov_numvfs` (mode 0644: the one attribute here a
/// program writes, through the server).
fn write_num_vfs(dir: &Path, num: u16) -> io::Result<()> {
    replace_file(&dir.join("sriov_numvfs"), format!("{num}\n").as_bytes())
}

/// A write of `data` to the attribute at `path` (as the program spelt it)
/// on behalf of a program: `sriov_numvfs` of a PF creates or removes VFs
/// and their entries; other attributes here cannot be written (`EACCES`).
/// Returns the bytes taken.
pub fn write_attribute(
    root: &Path,
    shared: &EngineState,
    host: &VfioHost,
    path: &str,
    data: &[u8],
) -> Result<usize, Errno> {
    let dir = path
        .strip_prefix("/sys/")
        .and_then(|p| p.strip_suffix("/sriov_numvfs"))
        .ok_or(Errno::EACCES)?;
    let bdf = dir.rsplit('/').next().unwrap_or_default();
    let dev = shared
        .iommu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .topology()
        .device_by_name(bdf)
        .ok_or(Errno::ENOENT)?;
    // One attribute write at a time, so that the tree follows the changes
    // in the order they happened.
    static WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = WRITES.lock().unwrap_or_else(|e| e.into_inner());
    let change = host.write_sriov_numvfs(shared, dev, data)?;
    apply_sriov_change(root, shared, host, dev, &change).map_err(|_| Errno::EIO)?;
    Ok(data.len())
}

/// Brings the tree in line with PF `pf`'s new VFs: their entries and
/// `virtfn<n>` links appear or go, and `sriov_numvfs` shows the count.
fn apply_sriov_change(
    root: &Path,
    shared: &EngineState,
    host: &VfioHost,
    pf: DeviceId,
    change: &SriovChange,
) -> io::Result<()> {
    let sys = root.join("sys");
    let devices = sys.join("bus/pci/devices");
    let core = shared.iommu.lock().unwrap_or_else(|e| e.into_inner());
    let topology = core.topology().clone();
    drop(core);
    let pf_dir = devices.join(&topology.device(pf).name);
    for (index, gone) in change.removed.iter().enumerate() {
        let _ = std::fs::remove_file(pf_dir.join(format!("virtfn{index}")));
        std::fs::remove_dir_all(devices.join(&gone.name))?;
        std::fs::remove_dir_all(sys.join(format!("kernel/iommu_groups/{}", gone.group.0)))?;
    }
    for (index, &vf) in change.added.iter().enumerate() {
        write_function(root, &topology, host, vf)?;
        symlink(
            format!("../{}", topology.device(vf).name),
            pf_dir.join(format!("virtfn{index}")),
        )?;
    }
    let num = host.sriov_counts(pf).map_or(0, |(_, n)| n);
    write_num_vfs(&pf_dir, num)
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
        // resource: 13 lines of start, end and flags; BAR 0 is 128 KiB of
        // 32-bit memory, BAR 1 absent.
        let resource = std::fs::read_to_string(dev.join("resource")).unwrap();
        let lines: Vec<Vec<u64>> = resource
            .lines()
            .map(|l| {
                l.split(' ')
                    .map(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(lines.len(), 13);
        assert_eq!(lines[0][1] - lines[0][0] + 1, 128 << 10);
        assert_eq!(lines[0][0] % (128 << 10), 0);
        assert_eq!(lines[0][2] & 0x200, 0x200, "memory");
        assert_eq!(lines[1], [0, 0, 0]);
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

        let dev = engine.vfio().devices().into_iter().find(|&d| {
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
