//! SR-IOV through VFIO: the built-in machine's SR-IOV port (0000:04:00.0)
//! creates and removes VFs when `sriov_numvfs` is written, and its VF
//! token gates who may open them, as vfio-pci does; `VFIO_DEVICE_FEATURE`
//! with its header checks, the VF token and low power.

mod common;

use common::vfio::*;
use softiommu_engine::vfio::{DeviceFile, GroupReply};
use softiommu_engine::Errno;
use softiommu_iommu::GroupId;
use softiommu_uapi::vfio::*;
use zerocopy::IntoBytes;

const PF: &str = "0000:04:00.0";
const TOKEN_A: &str = "52ac9bff-3a88-4fbd-901a-0d767c3b6c97";
const TOKEN_B: &str = "88594674-90a0-47a9-aea8-9d9b352ac08a";

/// A UUID's bytes in text order.
fn uuid(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    bytes
}

fn numvfs(m: &Machine, text: &str) -> Result<Vec<String>, Errno> {
    let pf = m.dev(PF);
    let change = m.host.write_sriov_numvfs(&m.shared, pf, text.as_bytes())?;
    let core = m.shared.iommu.lock().unwrap();
    Ok(change
        .added
        .iter()
        .map(|&d| core.topology().device(d).name.clone())
        .collect())
}

fn exists(m: &Machine, name: &str) -> bool {
    let core = m.shared.iommu.lock().unwrap();
    core.topology().device_by_name(name).is_some()
}

/// `VFIO_DEVICE_BIND_IOMMUFD` with an optional VF token.
fn bind_with(m: &Machine, file: &mut DeviceFile, token: Option<&str>) -> Result<(), Errno> {
    const UUID_AT: u64 = 0x10000;
    let mut bind = VfioDeviceBindIommufd {
        argsz: 24,
        iommufd: IOMMUFD,
        ..Default::default()
    };
    if let Some(t) = token {
        m.mem.write(UUID_AT, &uuid(t))?;
        bind.flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
        bind.token_uuid_ptr = UUID_AT;
    }
    m.ioctl(file, VFIO_DEVICE_BIND_IOMMUFD, bind.as_mut_bytes())
        .map(|_| ())
}

/// `VFIO_DEVICE_FEATURE` with `flags` and `data` after the header.
fn feature(m: &Machine, file: &mut DeviceFile, flags: u32, data: &[u8]) -> Result<(), Errno> {
    let mut bytes = ((8 + data.len()) as u32).to_ne_bytes().to_vec();
    bytes.extend_from_slice(&flags.to_ne_bytes());
    bytes.extend_from_slice(data);
    m.ioctl(file, VFIO_DEVICE_FEATURE, &mut bytes).map(|_| ())
}

#[test]
fn writing_sriov_numvfs_creates_and_removes_vfs_as_linux_does() {
    let m = Machine::new();
    assert_eq!(m.host.sriov_counts(m.dev(PF)), Some((8, 0)));
    let minors_before = m.host.devices().len();
    // kstrtou16 and the PF's limits.
    assert_eq!(numvfs(&m, "x"), Err(Errno::EINVAL));
    assert_eq!(numvfs(&m, "-1"), Err(Errno::EINVAL));
    assert_eq!(numvfs(&m, "65536"), Err(Errno::ERANGE));
    assert_eq!(numvfs(&m, "9"), Err(Errno::ERANGE), "past TotalVFs");
    assert_eq!(numvfs(&m, "0"), Ok(vec![]), "already 0: nothing to do");
    // A function without SR-IOV has no such attribute to act on.
    let not_pf = m.dev("0000:02:00.0");
    assert_eq!(
        m.host.write_sriov_numvfs(&m.shared, not_pf, b"1"),
        Err(Errno::ENOENT)
    );

    assert_eq!(numvfs(&m, "2\n").unwrap(), ["0000:04:10.0", "0000:04:10.2"]);
    assert_eq!(m.host.sriov_counts(m.dev(PF)), Some((8, 2)));
    assert_eq!(numvfs(&m, "3"), Err(Errno::EBUSY), "disable first");
    assert_eq!(numvfs(&m, "2"), Ok(vec![]));
    // Each VF: its own group behind the PF's IOMMU, the VF device ID, a
    // fresh device node.
    let (vf0, vf1) = (m.dev("0000:04:10.0"), m.dev("0000:04:10.2"));
    let pf_dev = m.dev(PF);
    {
        let core = m.shared.iommu.lock().unwrap();
        let t = core.topology();
        assert_ne!(t.device(vf0).group, t.device(vf1).group);
        assert_eq!(t.group(t.device(vf0).group).devices, [vf0]);
        assert_eq!(t.iommu_of(vf0), t.iommu_of(pf_dev));
        assert_eq!(t.device(vf0).pci.as_ref().unwrap().ids.device, 0x10ed);
    }
    assert_eq!(m.host.devices().len(), minors_before + 2);
    let minor = m.host.function(vf0).unwrap().lock().unwrap().minor;
    assert_eq!(m.host.device_by_minor(minor), Some(vf0));
    // The PF's SR-IOV capability shows them enabled.
    let pf = m.host.function(m.dev(PF)).unwrap();
    assert_eq!(pf.lock().unwrap().config.sriov_num_vfs(), Some(2));
    assert!(pf.lock().unwrap().config.sriov_vfs_enabled());
    // A reset of the PF keeps them (Linux restores the SR-IOV state).
    pf.lock().unwrap().reset();
    assert!(pf.lock().unwrap().config.sriov_vfs_enabled());

    // An open VF keeps them all (here EBUSY; Linux would wait).
    let file = m.host.open(vf1).unwrap();
    assert_eq!(numvfs(&m, "0"), Err(Errno::EBUSY));
    drop(file);
    let vf0_group = m.shared.iommu.lock().unwrap().topology().device(vf0).group;
    let group = m.group(vf0_group.0).unwrap();
    assert_eq!(numvfs(&m, "0"), Err(Errno::EBUSY), "a VF's group is open");
    drop(group);
    assert_eq!(numvfs(&m, "0"), Ok(vec![]));
    assert!(!exists(&m, "0000:04:10.0") && !exists(&m, "0000:04:10.2"));
    assert!(m.host.function(vf0).is_none());
    assert_eq!(m.host.devices().len(), minors_before);
    assert!(!pf.lock().unwrap().config.sriov_vfs_enabled());
    // And again: the machine stays the same size.
    assert_eq!(numvfs(&m, "0x1").unwrap(), ["0000:04:10.0"]);
    assert_eq!(numvfs(&m, "0"), Ok(vec![]));
}

#[test]
fn a_vf_opens_only_with_its_pfs_token() {
    let m = Machine::new();
    numvfs(&m, "1").unwrap();
    let vf = m.dev("0000:04:10.0");
    // The PF's user sets the token by binding with it.
    let mut pf = m.open(PF);
    bind_with(&m, &mut pf, Some(TOKEN_A)).unwrap();
    drop(pf);

    let mut file = m.host.open(vf).unwrap();
    assert_eq!(bind_with(&m, &mut file, None), Err(Errno::EACCES));
    assert_eq!(bind_with(&m, &mut file, Some(TOKEN_B)), Err(Errno::EACCES));
    bind_with(&m, &mut file, Some(TOKEN_A)).unwrap();
    // While a VF is in use, the PF needs the token and cannot change it.
    let mut pf = m.open(PF);
    assert_eq!(bind_with(&m, &mut pf, None), Err(Errno::EACCES));
    assert_eq!(bind_with(&m, &mut pf, Some(TOKEN_B)), Err(Errno::EACCES));
    bind_with(&m, &mut pf, Some(TOKEN_A)).unwrap();
    drop(pf);
    drop(file);
    // No VF in use: a PF bind without a token leaves the token as it was.
    let mut pf = m.open(PF);
    bind_with(&m, &mut pf, None).unwrap();
    // VFIO_DEVICE_FEATURE_PCI_VF_TOKEN overrides it.
    feature(
        &m,
        &mut pf,
        VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
        &uuid(TOKEN_B),
    )
    .unwrap();
    let mut file = m.host.open(vf).unwrap();
    assert_eq!(bind_with(&m, &mut file, Some(TOKEN_A)), Err(Errno::EACCES));
    bind_with(&m, &mut file, Some(TOKEN_B)).unwrap();
    // A function that is neither PF nor VF takes no token.
    let mut plain = m.open("0000:02:00.0");
    assert_eq!(bind_with(&m, &mut plain, Some(TOKEN_A)), Err(Errno::EINVAL));
}

#[test]
fn a_group_names_a_vf_with_its_token_in_vfio_pcis_syntax() {
    let m = Machine::new();
    numvfs(&m, "1").unwrap();
    let vf = m.dev("0000:04:10.0");
    let group = m.shared.iommu.lock().unwrap().topology().device(vf).group;
    let mut pf = m.open(PF);
    bind_with(&m, &mut pf, Some(TOKEN_A)).unwrap();
    drop(pf);
    let mut g = m.group(group.0).unwrap();
    m.group_ioctl(&mut g, VFIO_GROUP_SET_CONTAINER, &mut IOMMUFD.to_ne_bytes())
        .unwrap();
    let mut get = |name: &str| {
        let mut bytes = name.as_bytes().to_vec();
        bytes.push(0);
        m.group_ioctl(&mut g, VFIO_GROUP_GET_DEVICE_FD, &mut bytes)
            .map(|r| matches!(r, GroupReply::Device(_)))
    };
    let with = |rest: &str| format!("0000:04:10.0{rest}");
    assert_eq!(get("0000:04:10.0"), Err(Errno::EACCES), "no token");
    assert_eq!(get(&with("x")), Err(Errno::ENODEV), "another name");
    assert_eq!(get(&with(" foo")), Err(Errno::EINVAL), "unknown option");
    assert_eq!(get(&with(" vf_token=1234")), Err(Errno::EINVAL), "short");
    let bad = TOKEN_A.replace('-', "_");
    assert_eq!(get(&with(&format!(" vf_token={bad}"))), Err(Errno::EINVAL));
    let twice = format!(" vf_token={TOKEN_A} vf_token={TOKEN_A}");
    assert_eq!(get(&with(&twice)), Err(Errno::EINVAL), "duplicate option");
    let wrong = format!(" vf_token={TOKEN_B}");
    assert_eq!(get(&with(&wrong)), Err(Errno::EACCES));
    let right = format!("  vf_token={TOKEN_A}  ");
    assert_eq!(get(&with(&right)), Ok(true));
    let _ = GroupId(0);
}

#[test]
fn device_feature_checks_its_header_then_the_feature() {
    let m = Machine::new();
    let mut pf = m.open(PF);
    bind_with(&m, &mut pf, None).unwrap();
    let set = VFIO_DEVICE_FEATURE_SET;
    let get = VFIO_DEVICE_FEATURE_GET;
    let probe = VFIO_DEVICE_FEATURE_PROBE;
    let token = VFIO_DEVICE_FEATURE_PCI_VF_TOKEN;
    let mut short = 7u32.to_ne_bytes().to_vec();
    short.extend_from_slice(&(set | token).to_ne_bytes());
    assert_eq!(
        m.ioctl(&mut pf, VFIO_DEVICE_FEATURE, &mut short)
            .map(|_| ()),
        Err(Errno::EINVAL),
        "argsz below the header"
    );
    assert_eq!(
        feature(&m, &mut pf, 1 << 20 | set, &[0; 16]),
        Err(Errno::EINVAL),
        "unknown flag"
    );
    assert_eq!(
        feature(&m, &mut pf, get | set | token, &[0; 16]),
        Err(Errno::EINVAL),
        "GET and SET without PROBE"
    );
    feature(&m, &mut pf, probe | set | token, &[]).unwrap();
    assert_eq!(
        feature(&m, &mut pf, probe | get | token, &[]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        feature(&m, &mut pf, get | token, &[0; 16]),
        Err(Errno::EINVAL)
    );
    assert_eq!(feature(&m, &mut pf, token, &[0; 16]), Err(Errno::EINVAL));
    assert_eq!(
        feature(&m, &mut pf, set | token, &[0; 15]),
        Err(Errno::EINVAL)
    );
    for no_migration in [
        VFIO_DEVICE_FEATURE_MIGRATION,
        VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFO_V2,
        0xffff,
    ] {
        assert_eq!(
            feature(&m, &mut pf, probe | get | no_migration, &[]),
            Err(Errno::ENOTTY)
        );
    }
    // vfio-pci exports its BARs as dma-bufs: GET only.
    feature(&m, &mut pf, probe | get | VFIO_DEVICE_FEATURE_DMA_BUF, &[]).unwrap();
    assert_eq!(
        feature(&m, &mut pf, probe | set | VFIO_DEVICE_FEATURE_DMA_BUF, &[]),
        Err(Errno::EINVAL)
    );
    // The VF token is a PF's.
    let mut plain = m.open("0000:02:00.0");
    bind_with(&m, &mut plain, None).unwrap();
    assert_eq!(
        feature(&m, &mut plain, probe | set | token, &[]),
        Err(Errno::ENOTTY)
    );
    // Unbound, nothing but bind answers.
    let mut unbound = m.open("0000:01:00.0");
    assert_eq!(
        feature(&m, &mut unbound, probe | set | token, &[]),
        Err(Errno::EINVAL)
    );
}

#[test]
fn low_power_wakes_on_access_and_signals_the_wakeup_eventfd() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    bind_with(&m, &mut file, None).unwrap();
    let set = VFIO_DEVICE_FEATURE_SET;
    let entry = set | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
    let wakeup = set | VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
    let exit = set | VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
    let eventfd = |fd: i32| [fd.to_ne_bytes(), [0; 4]].concat();

    feature(&m, &mut file, entry, &[]).unwrap();
    assert_eq!(
        feature(&m, &mut file, entry, &[]),
        Err(Errno::EINVAL),
        "already entered"
    );
    feature(&m, &mut file, exit, &[]).unwrap();
    feature(&m, &mut file, exit, &[]).unwrap();

    assert_eq!(
        feature(&m, &mut file, wakeup, &eventfd(-1)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        feature(&m, &mut file, wakeup, &eventfd(99)),
        Err(Errno::EBADF)
    );
    assert_eq!(feature(&m, &mut file, wakeup, &[0; 4]), Err(Errno::EINVAL));
    feature(&m, &mut file, wakeup, &eventfd(10)).unwrap();
    assert_eq!(m.counter(10), 0);
    // Any access resumes the function: the eventfd fires once, and low
    // power may be entered again.
    file.read(VFIO_PCI_CONFIG_REGION_INDEX as u64 * (1 << 40), &mut [0; 4])
        .unwrap();
    assert_eq!(m.counter(10), 1);
    file.read(VFIO_PCI_CONFIG_REGION_INDEX as u64 * (1 << 40), &mut [0; 4])
        .unwrap();
    assert_eq!(m.counter(10), 1);
    feature(&m, &mut file, wakeup, &eventfd(11)).unwrap();
    feature(&m, &mut file, exit, &[]).unwrap();
    assert_eq!(m.counter(11), 1, "the exit ioctl itself is an access");
}
