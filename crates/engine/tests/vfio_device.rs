//! VFIO device files over the built-in machine's PCI functions: binding to
//! an iommufd context, attaching, regions, interrupts and reset, with
//! vfio's errno for each bad input.

mod common;

use common::vfio::*;
use softiommu_engine::vfio::{DeviceFile, GroupFile, GroupReply};
use softiommu_engine::Errno;
use softiommu_iommu::Topology;
use softiommu_uapi::vfio::*;
use zerocopy::{FromBytes, IntoBytes};

#[test]
fn an_unbound_file_answers_only_bind() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    let mut info = VfioDeviceInfo {
        argsz: 24,
        ..Default::default()
    };
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_GET_INFO, info.as_mut_bytes()),
        Err(Errno::EINVAL)
    );
    assert_eq!(file.read(7 << 40, &mut [0; 4]), Err(Errno::EINVAL));
    assert_eq!(m.state("0000:02:00.0"), (false, "default"));
}

#[test]
fn bind_checks_its_argument_in_vfios_order() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    let bind = |argsz: u32, flags: u32, iommufd: i32| {
        let mut b = VfioDeviceBindIommufd {
            argsz,
            flags,
            iommufd,
            ..Default::default()
        }
        .as_bytes()
        .to_vec();
        b.extend_from_slice(&[0; 8]);
        b
    };
    let cases: [(&str, Vec<u8>, Errno); 6] = [
        ("argsz below out_devid", bind(15, 0, IOMMUFD), Errno::EINVAL),
        ("unknown flag", bind(24, 2, IOMMUFD), Errno::EINVAL),
        ("negative descriptor", bind(24, 0, -2), Errno::EINVAL),
        ("no descriptor", bind(24, 0, 99), Errno::EBADF),
        ("not an iommufd", bind(24, 0, NOT_IOMMUFD), Errno::EBADFD),
        (
            "VF token for a plain function",
            bind(24, 1, IOMMUFD),
            Errno::EFAULT,
        ),
    ];
    for (what, mut bytes, errno) in cases {
        assert_eq!(
            m.ioctl(&mut file, VFIO_DEVICE_BIND_IOMMUFD, &mut bytes),
            Err(errno),
            "{what}"
        );
    }
    let mut token = bind(24, 1, IOMMUFD);
    token[16..24].copy_from_slice(&0x10000u64.to_ne_bytes());
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_BIND_IOMMUFD, &mut token),
        Err(Errno::EINVAL),
        "a readable VF token given to a function that is neither PF nor VF"
    );
    let mut tail = bind(32, 0, IOMMUFD);
    tail[28] = 1;
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_BIND_IOMMUFD, &mut tail),
        Err(Errno::E2BIG)
    );
    // Nothing above bound anything.
    assert_eq!(m.state("0000:02:00.0"), (false, "default"));
    let mut longer = bind(32, 0, IOMMUFD);
    m.ioctl(&mut file, VFIO_DEVICE_BIND_IOMMUFD, &mut longer)
        .unwrap();
    assert_eq!(m.bind(&mut file), Err(Errno::EINVAL), "a second bind");
}

#[test]
fn binding_claims_the_whole_group_and_closing_gives_it_back() {
    let m = Machine::new();
    let mut file = m.open("0000:01:00.0");
    let devid = m.bind(&mut file).unwrap();
    assert_eq!(file.dev_id(), Some(devid));
    for name in ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"] {
        assert_eq!(
            m.state(name),
            (name == "0000:01:00.0", "blocking"),
            "{name}"
        );
    }
    // The device object is the driver's: IOMMU_DESTROY cannot take it.
    assert_eq!(m.ctx.lock().unwrap().destroy(devid), Err(Errno::EBUSY));
    drop(file);
    for name in ["0000:01:00.0", "0000:01:00.1", "0000:01:00.2"] {
        assert_eq!(m.state(name), (false, "default"), "{name}");
    }
    assert_eq!(m.ctx.lock().unwrap().destroy(devid), Err(Errno::ENOENT));
}

#[test]
fn attach_detach_and_replace_through_the_file() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let (ioas, other) = {
        let mut ctx = m.ctx.lock().unwrap();
        (ctx.ioas_alloc().unwrap(), ctx.ioas_alloc().unwrap())
    };
    let hwpt = m.attach(&mut file, ioas).unwrap();
    assert_ne!(hwpt, ioas, "an IOAS attaches through an automatic HWPT");
    assert_eq!(m.state("0000:02:00.0"), (true, "paging"));
    // A second attach replaces, as vfio-pci does.
    let hwpt2 = m.attach(&mut file, other).unwrap();
    assert_ne!(hwpt2, hwpt);
    assert_eq!(m.attach(&mut file, u32::MAX), Err(Errno::ENOENT));
    let mut attach = VfioDeviceAttachIommufdPt {
        argsz: 11,
        pt_id: ioas,
        ..Default::default()
    };
    assert_eq!(
        m.ioctl(
            &mut file,
            VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            attach.as_mut_bytes()
        ),
        Err(Errno::EINVAL)
    );
    attach.argsz = 16;
    attach.flags = 2;
    assert_eq!(
        m.ioctl(
            &mut file,
            VFIO_DEVICE_ATTACH_IOMMUFD_PT,
            attach.as_mut_bytes()
        ),
        Err(Errno::EINVAL)
    );
    let mut detach = VfioDeviceDetachIommufdPt {
        argsz: 12,
        ..Default::default()
    };
    m.ioctl(
        &mut file,
        VFIO_DEVICE_DETACH_IOMMUFD_PT,
        detach.as_mut_bytes(),
    )
    .unwrap();
    assert_eq!(m.state("0000:02:00.0"), (true, "blocking"));
    // Detaching again changes nothing.
    m.ioctl(
        &mut file,
        VFIO_DEVICE_DETACH_IOMMUFD_PT,
        detach.as_mut_bytes(),
    )
    .unwrap();
    // The automatic HWPTs went with their last device.
    assert_eq!(m.ctx.lock().unwrap().destroy(hwpt2), Err(Errno::ENOENT));
}

#[test]
fn device_info_regions_and_irqs_describe_the_function() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let mut info = VfioDeviceInfo {
        argsz: 24,
        ..Default::default()
    };
    m.ioctl(&mut file, VFIO_DEVICE_GET_INFO, info.as_mut_bytes())
        .unwrap();
    assert_eq!(info.flags, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET);
    assert_eq!((info.num_regions, info.num_irqs), (9, 5));
    // A short argsz gets only its bytes back.
    let mut short = VfioDeviceInfo {
        argsz: 16,
        cap_offset: 0xdead,
        ..Default::default()
    };
    m.ioctl(&mut file, VFIO_DEVICE_GET_INFO, short.as_mut_bytes())
        .unwrap();
    assert_eq!((short.num_irqs, short.cap_offset), (5, 0xdead));
    short.argsz = 15;
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_GET_INFO, short.as_mut_bytes()),
        Err(Errno::EINVAL)
    );

    let mut r = VfioRegionInfo {
        argsz: 32,
        index: VFIO_PCI_CONFIG_REGION_INDEX,
        ..Default::default()
    };
    m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, r.as_mut_bytes())
        .unwrap();
    assert_eq!((r.size, r.offset), (4096, 7 << 40));
    assert_eq!(
        r.flags,
        VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
    );
    r.index = 0;
    m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, r.as_mut_bytes())
        .unwrap();
    assert_eq!(r.size, 128 << 10);
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    assert_eq!(r.flags, rw | VFIO_REGION_INFO_FLAG_MMAP);
    // BAR 3 holds the MSI-X table: mappable, said with a capability that a
    // 32-byte argsz has no room for (argsz grows, cap_offset stays 0).
    r.index = 3;
    m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, r.as_mut_bytes())
        .unwrap();
    assert_eq!(
        r.flags,
        rw | VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS
    );
    assert_eq!((r.argsz, r.cap_offset), (40, 0));
    let mut with_room = [0u8; 40];
    with_room[..32].copy_from_slice(r.as_bytes());
    m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, &mut with_room)
        .unwrap();
    let cap = VfioInfoCapHeader::read_from_bytes(&with_room[32..]).unwrap();
    assert_eq!(
        (cap.id, cap.version, cap.next),
        (VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0)
    );
    assert_eq!(
        u32::from_ne_bytes(with_room[12..16].try_into().unwrap()),
        32,
        "cap_offset"
    );
    r.argsz = 32;
    r.index = 1;
    m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, r.as_mut_bytes())
        .unwrap();
    assert_eq!((r.size, r.flags), (0, 0), "an absent BAR");
    for index in [VFIO_PCI_VGA_REGION_INDEX, 9, u32::MAX] {
        r.index = index;
        assert_eq!(
            m.ioctl(&mut file, VFIO_DEVICE_GET_REGION_INFO, r.as_mut_bytes()),
            Err(Errno::EINVAL),
            "region {index}"
        );
    }

    let mut irq = VfioIrqInfo {
        argsz: 16,
        ..Default::default()
    };
    let mut counts = Vec::new();
    for index in 0..5 {
        irq.index = index;
        m.ioctl(&mut file, VFIO_DEVICE_GET_IRQ_INFO, irq.as_mut_bytes())
            .unwrap();
        counts.push((irq.count, irq.flags));
    }
    assert_eq!(
        counts,
        [
            (
                1,
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            ),
            (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
            (5, VFIO_IRQ_INFO_EVENTFD),
            (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
            (1, VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE),
        ]
    );
    irq.index = 5;
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_GET_IRQ_INFO, irq.as_mut_bytes()),
        Err(Errno::EINVAL)
    );
    assert_eq!(m.ioctl(&mut file, 0x3b7f, &mut [0; 16]), Err(Errno::ENOTTY));
}

#[test]
fn config_space_and_bars_are_read_and_written_at_their_region_offsets() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let config = u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << VFIO_PCI_OFFSET_SHIFT;
    let mut ids = [0u8; 4];
    assert_eq!(file.read(config, &mut ids), Ok(4));
    assert_eq!(ids, [0x86, 0x80, 0x33, 0x15], "8086:1533");
    // BAR sizing through the config region: all ones reads back the size.
    file.write(config + 0x10, &u32::MAX.to_le_bytes()).unwrap();
    let mut bar = [0u8; 4];
    file.read(config + 0x10, &mut bar).unwrap();
    assert_eq!(u32::from_le_bytes(bar), !(128 * 1024 - 1));
    // The vendor id is read-only.
    file.write(config, &[0xff, 0xff]).unwrap();
    file.read(config, &mut ids).unwrap();
    assert_eq!(ids, [0x86, 0x80, 0x33, 0x15]);
    assert_eq!(file.read(config + 4096, &mut [0; 1]), Err(Errno::EINVAL));

    // BAR 0 is memory the file reaches at region 0.
    file.write(0x100, b"registers").unwrap();
    let mut back = [0u8; 9];
    file.read(0x100, &mut back).unwrap();
    assert_eq!(&back, b"registers");
    assert_eq!(file.read((128 << 10) - 4, &mut [0; 8]), Err(Errno::EINVAL));
    assert_eq!(
        file.read(1 << 40, &mut [0; 4]),
        Err(Errno::EINVAL),
        "absent BAR 1"
    );
    assert_eq!(file.read(9 << 40, &mut [0; 4]), Err(Errno::EINVAL));
}

#[test]
fn msix_eventfds_fire_and_one_interrupt_type_is_active_at_a_time() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let eventfd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let none = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    let mut set = set_irqs(eventfd, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, &fds(&[10, 11]));
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut set).unwrap();
    // Loopback: DATA_NONE fires vectors 0 and 1.
    let mut fire = set_irqs(none, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, &[]);
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut fire).unwrap();
    assert_eq!((m.counter(10), m.counter(11)), (1, 1));
    // The device raises vector 1.
    assert!(file
        .function()
        .lock()
        .unwrap()
        .signal_irq(VFIO_PCI_MSIX_IRQ_INDEX, 1));
    assert_eq!(m.counter(11), 2);
    // MSI cannot be enabled while MSI-X is.
    let mut msi = set_irqs(eventfd, VFIO_PCI_MSI_IRQ_INDEX, 0, 1, &fds(&[12]));
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut msi),
        Err(Errno::EINVAL)
    );
    // Disable MSI-X (count 0, DATA_NONE); then MSI works.
    let mut off = set_irqs(none, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0, &[]);
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut off).unwrap();
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut msi).unwrap();
    assert!(file
        .function()
        .lock()
        .unwrap()
        .signal_irq(VFIO_PCI_MSI_IRQ_INDEX, 0));
    assert_eq!(m.counter(12), 1);
    assert!(!file
        .function()
        .lock()
        .unwrap()
        .signal_irq(VFIO_PCI_MSIX_IRQ_INDEX, 1));
}

#[test]
fn set_irqs_refuses_bad_headers_with_vfios_errno() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let eventfd = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    let mut short_data = set_irqs(eventfd, VFIO_PCI_MSIX_IRQ_INDEX, 0, 2, &fds(&[10]));
    let mut cases = [
        (
            "past the vectors",
            set_irqs(eventfd, VFIO_PCI_MSIX_IRQ_INDEX, 4, 2, &fds(&[10, 11])),
            Errno::EINVAL,
        ),
        (
            "unknown index",
            set_irqs(eventfd, 5, 0, 1, &fds(&[10])),
            Errno::EINVAL,
        ),
        (
            "unknown flag",
            set_irqs(eventfd | 1 << 6, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &fds(&[10])),
            Errno::EINVAL,
        ),
        (
            "two data types",
            set_irqs(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
                VFIO_PCI_MSIX_IRQ_INDEX,
                0,
                1,
                &[1],
            ),
            Errno::EINVAL,
        ),
        (
            "masking MSI-X",
            set_irqs(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
                VFIO_PCI_MSIX_IRQ_INDEX,
                0,
                1,
                &[],
            ),
            Errno::ENOTTY,
        ),
        (
            "not an eventfd",
            set_irqs(eventfd, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &fds(&[NOT_IOMMUFD])),
            Errno::EINVAL,
        ),
        (
            "no descriptor",
            set_irqs(eventfd, VFIO_PCI_MSIX_IRQ_INDEX, 0, 1, &fds(&[99])),
            Errno::EBADF,
        ),
        (
            "firing a disabled type",
            set_irqs(
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                VFIO_PCI_MSI_IRQ_INDEX,
                0,
                1,
                &[],
            ),
            Errno::EINVAL,
        ),
    ];
    for (what, bytes, errno) in &mut cases {
        assert_eq!(
            m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, bytes),
            Err(*errno),
            "{what}"
        );
    }
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut short_data),
        Err(Errno::EINVAL),
        "argsz short of the data"
    );
    // None of it enabled anything.
    assert_eq!(file.function().lock().unwrap().irq_type(), None);
}

#[test]
fn intx_masks_itself_when_it_fires_until_unmasked() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let mut set = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &fds(&[13]),
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut set).unwrap();
    let raise = |file: &DeviceFile| {
        file.function()
            .lock()
            .unwrap()
            .signal_irq(VFIO_PCI_INTX_IRQ_INDEX, 0)
    };
    assert!(raise(&file));
    assert!(!raise(&file), "automasked");
    assert_eq!(m.counter(13), 1);
    let mut unmask = set_irqs(
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &[],
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut unmask)
        .unwrap();
    assert_eq!(m.counter(13), 2, "the pending level fires at unmask");

    // An unmask eventfd (KVM's resampler signals it) unmasks INTx, and
    // the level still pending fires again.
    let mut irqfd = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &fds(&[14]),
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut irqfd)
        .unwrap();
    assert!(!raise(&file), "still masked from the last fire");
    softiommu_engine::memory::EventSignal::signal(m.files.0[&14].as_ref());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while m.counter(13) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the unmask eventfd unmasks"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // A descriptor that is no eventfd is refused; -1 removes the eventfd.
    let mut bad = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &fds(&[99]),
    );
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut bad),
        Err(Errno::EBADF)
    );
    let mut off = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
        VFIO_PCI_INTX_IRQ_INDEX,
        0,
        1,
        &fds(&[-1]),
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut off).unwrap();
    assert!(file.function().lock().unwrap().irqs.intx_unmask.is_none());
}

#[test]
fn reset_restores_the_configuration_space() {
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let config = u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << VFIO_PCI_OFFSET_SHIFT;
    let mut fresh = [0u8; 64];
    file.read(config, &mut fresh).unwrap();
    file.write(config + 4, &[0x06, 0x00]).unwrap(); // memory and bus master on
    file.write(config + 0x10, &0xfe00_0000u32.to_le_bytes())
        .unwrap();
    let mut changed = [0u8; 64];
    file.read(config, &mut changed).unwrap();
    assert_ne!(changed, fresh);
    m.ioctl(&mut file, VFIO_DEVICE_RESET, &mut []).unwrap();
    let mut after = [0u8; 64];
    file.read(config, &mut after).unwrap();
    assert_eq!(after, fresh);
}

#[test]
fn a_group_file_is_open_once_and_only_for_vfio_groups() {
    let m = Machine::new();
    let first = m.group(0).unwrap();
    assert_eq!(m.group(0).map(|_| ()), Err(Errno::EBUSY));
    drop(first);
    m.group(0).unwrap();
    // The NVMe drive's group is the kernel's; the mock device is no PCI
    // function; group 9 does not exist.
    for group in [2, 3, 9] {
        assert_eq!(
            m.group(group).map(|_| ()),
            Err(Errno::ENODEV),
            "group {group}"
        );
    }
}

#[test]
fn the_cdev_and_the_group_file_exclude_each_other() {
    let m = Machine::new();
    let mut cdev = m.open("0000:02:00.0");
    m.bind(&mut cdev).unwrap();
    assert_eq!(m.group(1).map(|_| ()), Err(Errno::EBUSY));
    drop(cdev);
    let _group = m.group(1).unwrap();
    let mut cdev = m.open("0000:02:00.0");
    assert_eq!(m.bind(&mut cdev), Err(Errno::EBUSY));
}

#[test]
fn a_group_gives_bound_and_attached_device_files_once_it_has_a_container() {
    let m = Machine::new();
    let mut group = m.group(0).unwrap();
    assert_eq!(m.status(&mut group), VFIO_GROUP_FLAGS_VIABLE);
    let name = |n: &str| {
        let mut b = n.as_bytes().to_vec();
        b.push(0);
        b
    };
    let get = |group: &mut GroupFile, n: &str| match m.group_ioctl(
        group,
        VFIO_GROUP_GET_DEVICE_FD,
        &mut name(n),
    ) {
        Ok(GroupReply::Device(d)) => Ok(d),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e),
    };
    assert_eq!(
        get(&mut group, "0000:02:00.0").map(|_| ()),
        Err(Errno::ENODEV),
        "another group's"
    );
    assert_eq!(
        get(&mut group, "0000:01:00.1").map(|_| ()),
        Err(Errno::EINVAL),
        "no container"
    );
    let fd = |v: i32| v.to_ne_bytes();
    let set = |group: &mut GroupFile, v: i32| {
        m.group_ioctl(group, VFIO_GROUP_SET_CONTAINER, &mut fd(v))
            .map(|_| ())
    };
    assert_eq!(set(&mut group, 99), Err(Errno::EBADF));
    assert_eq!(set(&mut group, NOT_IOMMUFD), Err(Errno::EBADFD));
    assert_eq!(
        m.group_ioctl(&mut group, VFIO_GROUP_UNSET_CONTAINER, &mut [])
            .map(|_| ()),
        Err(Errno::EINVAL)
    );
    set(&mut group, IOMMUFD).unwrap();
    assert_eq!(
        set(&mut group, IOMMUFD),
        Err(Errno::EINVAL),
        "a second container"
    );
    assert_eq!(
        m.status(&mut group),
        VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET
    );
    assert_eq!(
        get(
            &mut group,
            "0000:01:00.1 vf_token=2ab74924-c335-45f4-9b16-8569e5b08258"
        )
        .map(|_| ()),
        Err(Errno::EINVAL)
    );
    let mut dev = get(&mut group, "0000:01:00.1").unwrap();
    assert!(dev.via_group());
    // Bound and attached to the container's compatibility IOAS.
    assert_eq!(m.state("0000:01:00.1"), (true, "paging"));
    let mut info = VfioDeviceInfo {
        argsz: 24,
        ..Default::default()
    };
    m.ioctl(&mut dev, VFIO_DEVICE_GET_INFO, info.as_mut_bytes())
        .unwrap();
    assert_eq!(info.num_regions, 9);
    // The cdev-only ioctls are not a group device's.
    assert_eq!(m.bind(&mut dev), Err(Errno::EINVAL));
    assert_eq!(m.attach(&mut dev, 1), Err(Errno::ENOTTY));
    drop(dev);
    assert_eq!(m.state("0000:01:00.1"), (false, "default"));
    m.group_ioctl(&mut group, VFIO_GROUP_UNSET_CONTAINER, &mut [])
        .unwrap();
    assert_eq!(m.status(&mut group), VFIO_GROUP_FLAGS_VIABLE);
    let mut short = VfioGroupStatus { argsz: 7, flags: 0 };
    assert_eq!(
        m.group_ioctl(&mut group, VFIO_GROUP_GET_STATUS, short.as_mut_bytes())
            .map(|_| ()),
        Err(Errno::EINVAL)
    );
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` with room for `room` devices: the
/// header and the devices it lists.
fn hot_reset_info(
    m: &Machine,
    file: &mut DeviceFile,
    room: usize,
) -> Result<(VfioPciHotResetHead, Vec<VfioPciDependentDevice>), (Errno, VfioPciHotResetHead)> {
    let mut buf = vec![0u8; 12 + 8 * room];
    let argsz = buf.len() as u32;
    buf[..4].copy_from_slice(&argsz.to_ne_bytes());
    let result = m.ioctl(file, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &mut buf);
    let head = VfioPciHotResetHead::read_from_bytes(&buf[..12]).unwrap();
    result.map_err(|e| (e, head))?;
    let devices = buf[12..12 + 8 * head.count as usize]
        .chunks(8)
        .map(|c| VfioPciDependentDevice::read_from_bytes(c).unwrap())
        .collect();
    Ok((head, devices))
}

/// `VFIO_DEVICE_PCI_HOT_RESET` with `group_fds`.
fn hot_reset(
    m: &Machine,
    file: &mut DeviceFile,
    flags: u32,
    group_fds: &[i32],
) -> Result<(), Errno> {
    let mut buf = vec![0u8; 12];
    buf.extend(group_fds.iter().flat_map(|fd| fd.to_ne_bytes()));
    let head = VfioPciHotResetHead {
        argsz: buf.len() as u32,
        flags,
        count: group_fds.len() as u32,
    };
    buf[..12].copy_from_slice(head.as_bytes());
    m.ioctl(file, VFIO_DEVICE_PCI_HOT_RESET, &mut buf)
        .map(|_| ())
}

/// Sets the memory-space and bus-master bits of `name`'s command register
/// behind the program's back, as a driver would have.
fn enable(m: &Machine, name: &str) {
    let function = m.host.function(m.dev(name)).unwrap();
    function.lock().unwrap().config.write(4, &[0x6, 0]).unwrap();
}

fn command(m: &Machine, name: &str) -> u16 {
    let function = m.host.function(m.dev(name)).unwrap();
    let command = function.lock().unwrap().config.command();
    command
}

#[test]
fn hot_reset_info_lists_the_bus_by_device_id_through_the_cdev() {
    let m = Machine::new();
    let mut nic0 = m.open("0000:01:00.0");
    let devid = m.bind(&mut nic0).unwrap();

    let mut short = VfioPciHotResetHead {
        argsz: 11,
        ..Default::default()
    };
    assert_eq!(
        m.ioctl(
            &mut nic0,
            VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
            short.as_mut_bytes()
        ),
        Err(Errno::EINVAL)
    );
    // No room: ENOSPC, and the count to make room for.
    let (errno, head) = hot_reset_info(&m, &mut nic0, 1).unwrap_err();
    assert_eq!((errno, head.count, head.flags), (Errno::ENOSPC, 3, 0));

    let (head, devices) = hot_reset_info(&m, &mut nic0, 4).unwrap();
    // 01:00.1 and .2 are not bound, but their group is the context's: owned.
    assert_eq!(
        head.flags,
        VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
    );
    let listed: Vec<_> = devices
        .iter()
        .map(|d| (d.id, d.segment, d.bus, d.devfn))
        .collect();
    assert_eq!(
        listed,
        [
            (devid, 0, 1, 0),
            (VFIO_PCI_DEVID_OWNED, 0, 1, 1),
            (VFIO_PCI_DEVID_OWNED, 0, 1, 2)
        ]
    );

    // The NIC alone on bus 2: only itself.
    let mut nic = m.open("0000:02:00.0");
    let nic_id = m.bind(&mut nic).unwrap();
    let (_, devices) = hot_reset_info(&m, &mut nic, 1).unwrap();
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.id, d.bus, d.devfn))
            .collect::<Vec<_>>(),
        [(nic_id, 2, 0)]
    );
}

#[test]
fn a_cdev_hot_reset_resets_the_whole_bus_it_owns() {
    let m = Machine::new();
    let mut nic0 = m.open("0000:01:00.0");
    m.bind(&mut nic0).unwrap();
    assert_eq!(
        hot_reset(&m, &mut nic0, 1, &[]),
        Err(Errno::EINVAL),
        "flags"
    );
    assert_eq!(
        hot_reset(&m, &mut nic0, 0, &[GROUP_FDS]),
        Err(Errno::EINVAL),
        "group fds from a cdev-opened file"
    );
    enable(&m, "0000:01:00.0");
    enable(&m, "0000:01:00.1");
    enable(&m, "0000:02:00.0");
    hot_reset(&m, &mut nic0, 0, &[]).unwrap();
    assert_eq!(command(&m, "0000:01:00.0") & 0x6, 0);
    assert_eq!(
        command(&m, "0000:01:00.1") & 0x6,
        0,
        "the other function on bus 1"
    );
    assert_eq!(command(&m, "0000:02:00.0") & 0x6, 0x6, "another bus");
}

#[test]
fn a_group_opened_file_hot_resets_with_its_groups_fds() {
    let m = Machine::new();
    let mut group = m.group(0).unwrap();
    m.group_ioctl(
        &mut group,
        VFIO_GROUP_SET_CONTAINER,
        &mut IOMMUFD.to_ne_bytes(),
    )
    .unwrap();
    let mut name = b"0000:01:00.1\0".to_vec();
    let Ok(GroupReply::Device(mut dev)) =
        m.group_ioctl(&mut group, VFIO_GROUP_GET_DEVICE_FD, &mut name)
    else {
        panic!("no device file");
    };
    let (head, devices) = hot_reset_info(&m, &mut dev, 3).unwrap();
    assert_eq!(head.flags, 0, "group ids, not device ids");
    assert_eq!(
        devices.iter().map(|d| (d.id, d.devfn)).collect::<Vec<_>>(),
        [(0, 0), (0, 1), (0, 2)]
    );
    assert_eq!(
        hot_reset(&m, &mut dev, 0, &[]),
        Err(Errno::EINVAL),
        "no groups"
    );
    assert_eq!(
        hot_reset(&m, &mut dev, 0, &[GROUP_FDS; 4]),
        Err(Errno::EINVAL),
        "more groups than devices"
    );
    assert_eq!(hot_reset(&m, &mut dev, 0, &[99]), Err(Errno::EBADF));
    assert_eq!(hot_reset(&m, &mut dev, 0, &[IOMMUFD]), Err(Errno::EINVAL));
    enable(&m, "0000:01:00.0");
    assert_eq!(
        hot_reset(&m, &mut dev, 0, &[GROUP_FDS + 1]),
        Err(Errno::EINVAL),
        "group 1 is not bus 1's"
    );
    assert_eq!(command(&m, "0000:01:00.0") & 0x6, 0x6, "nothing reset");
    hot_reset(&m, &mut dev, 0, &[GROUP_FDS]).unwrap();
    assert_eq!(command(&m, "0000:01:00.0") & 0x6, 0);
}

/// Bus 5: two functions in two groups; bus 6: one of VFIO's beside a
/// kernel driver's; bus 0: a root bus.
const SHARED_BUSES: &str = r#"
[[iommu]]
name = "dmar0"
driver = "intel_vtd"
[[group]]
iommu = "dmar0"
devices = ["0000:05:00.0"]
[[group]]
iommu = "dmar0"
devices = ["0000:05:00.1"]
[[group]]
iommu = "dmar0"
devices = ["0000:06:00.0"]
[[group]]
iommu = "dmar0"
devices = ["0000:06:00.1"]
[[group]]
iommu = "dmar0"
devices = ["0000:00:02.0"]
[[device]]
name = "0000:05:00.0"
[device.pci]
ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
[[device]]
name = "0000:05:00.1"
[device.pci]
ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
[[device]]
name = "0000:06:00.0"
[device.pci]
ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
[[device]]
name = "0000:06:00.1"
kernel_driver = "e1000e"
[device.pci]
ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
[[device]]
name = "0000:00:02.0"
[device.pci]
ids = { vendor = 0x8086, device = 0x1533, class = 0x020000 }
"#;

#[test]
fn a_hot_reset_needs_every_function_on_the_bus_owned() {
    let m = Machine::with(Topology::from_toml(SHARED_BUSES).unwrap());
    // Bus 5: the other function's group is nobody's.
    let mut first = m.open("0000:05:00.0");
    let devid = m.bind(&mut first).unwrap();
    let (head, devices) = hot_reset_info(&m, &mut first, 2).unwrap();
    assert_eq!(head.flags, VFIO_PCI_HOT_RESET_FLAG_DEV_ID, "not all owned");
    assert_eq!(
        devices.iter().map(|d| d.id).collect::<Vec<_>>(),
        [devid, VFIO_PCI_DEVID_NOT_OWNED]
    );
    enable(&m, "0000:05:00.0");
    assert_eq!(hot_reset(&m, &mut first, 0, &[]), Err(Errno::EINVAL));
    assert_eq!(command(&m, "0000:05:00.0") & 0x6, 0x6, "nothing reset");
    // Once the caller binds the second too, both are its.
    let mut second = m.open("0000:05:00.1");
    let second_id = m.bind(&mut second).unwrap();
    let (head, devices) = hot_reset_info(&m, &mut first, 2).unwrap();
    assert_eq!(
        head.flags,
        VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
    );
    assert_eq!(devices[1].id, second_id);
    hot_reset(&m, &mut first, 0, &[]).unwrap();
    assert_eq!(command(&m, "0000:05:00.0") & 0x6, 0);

    // Bus 6: a kernel driver's function is never the caller's.
    let mut vfio_one = m.open("0000:06:00.0");
    m.bind(&mut vfio_one).unwrap();
    let (head, devices) = hot_reset_info(&m, &mut vfio_one, 2).unwrap();
    assert_eq!(head.flags, VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
    assert_eq!(devices[1].id, VFIO_PCI_DEVID_NOT_OWNED);
    assert_eq!(hot_reset(&m, &mut vfio_one, 0, &[]), Err(Errno::EINVAL));

    // The root bus has no bridge to reset it.
    let mut root = m.open("0000:00:02.0");
    m.bind(&mut root).unwrap();
    assert_eq!(
        hot_reset_info(&m, &mut root, 2)
            .map(|_| ())
            .map_err(|(e, _)| e),
        Err(Errno::ENODEV)
    );
    assert_eq!(hot_reset(&m, &mut root, 0, &[]), Err(Errno::ENODEV));
}

#[test]
fn msi_and_msix_enable_read_as_set_irqs_left_them() {
    use softiommu_pci::layout::{MSIX_OFFSET, MSI_OFFSET};
    let m = Machine::new();
    let mut file = m.open("0000:02:00.0");
    m.bind(&mut file).unwrap();
    let config = |at: usize| (u64::from(VFIO_PCI_CONFIG_REGION_INDEX) << 40) + at as u64 + 2;
    let control = |file: &DeviceFile, at: usize| {
        let mut b = [0u8; 2];
        file.read(config(at), &mut b).unwrap();
        u16::from_le_bytes(b)
    };
    // A config write cannot enable either.
    file.write(config(MSIX_OFFSET), &0x8000u16.to_le_bytes())
        .unwrap();
    assert_eq!(
        control(&file, MSIX_OFFSET) & 0x8000,
        0,
        "MSI-X control is the host's"
    );
    file.write(config(MSI_OFFSET), &1u16.to_le_bytes()).unwrap();
    assert_eq!(
        control(&file, MSI_OFFSET) & 1,
        0,
        "MSI is enabled by SET_IRQS"
    );
    // SET_IRQS enables MSI-X: it reads enabled until disabled.
    let mut on = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_MSIX_IRQ_INDEX,
        0,
        1,
        &fds(&[10]),
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut on).unwrap();
    assert_ne!(control(&file, MSIX_OFFSET) & 0x8000, 0);
    file.write(config(MSIX_OFFSET), &0u16.to_le_bytes())
        .unwrap();
    assert_ne!(
        control(&file, MSIX_OFFSET) & 0x8000,
        0,
        "not by a config write"
    );
    let mut reset = [];
    m.ioctl(&mut file, VFIO_DEVICE_RESET, &mut reset).unwrap();
    assert_ne!(control(&file, MSIX_OFFSET) & 0x8000, 0, "a reset keeps it");
    let mut off = set_irqs(
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_MSIX_IRQ_INDEX,
        0,
        0,
        &[],
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut off).unwrap();
    assert_eq!(control(&file, MSIX_OFFSET) & 0x8000, 0);
    // With MSI active, its enable bit may be written.
    let mut msi = set_irqs(
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        VFIO_PCI_MSI_IRQ_INDEX,
        0,
        1,
        &fds(&[10]),
    );
    m.ioctl(&mut file, VFIO_DEVICE_SET_IRQS, &mut msi).unwrap();
    file.write(config(MSI_OFFSET), &1u16.to_le_bytes()).unwrap();
    assert_eq!(control(&file, MSI_OFFSET) & 1, 1);
}
