//! `VFIO_DEVICE_FEATURE_DMA_BUF`: a BAR range exported as a dma-buf, mapped
//! with `IOMMU_IOAS_MAP_FILE` so that device DMA reaches the BAR, revoked
//! when the function stops decoding memory, is reset or closed — with
//! vfio-pci's and iommufd's errno for each bad input.

mod common;

use common::vfio::*;
use softiommu_engine::ops::dma::DmaError;
use softiommu_engine::vfio::DeviceFile;
use softiommu_engine::{Arg, Errno};
use softiommu_uapi::ioctl::{IOMMU_IOAS_MAP_FILE, IOMMU_IOAS_UNMAP};
use softiommu_uapi::iommufd::*;
use softiommu_uapi::vfio::*;
use zerocopy::IntoBytes;

/// A function with a 128 KiB memory BAR 0 and no BAR 1.
const NIC: &str = "0000:02:00.0";
const PAGE: u64 = 4096;

/// `VFIO_DEVICE_FEATURE` bytes for a dma-buf of `ranges` of BAR `region`.
fn request(flags: u32, region: u32, dmabuf_flags: u32, ranges: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let argsz = 24 + 16 * ranges.len() as u32;
    bytes.extend_from_slice(&argsz.to_ne_bytes());
    bytes.extend_from_slice(&(flags | VFIO_DEVICE_FEATURE_DMA_BUF).to_ne_bytes());
    for word in [region, 0, dmabuf_flags, ranges.len() as u32] {
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    for &(offset, length) in ranges {
        bytes.extend_from_slice(&offset.to_ne_bytes());
        bytes.extend_from_slice(&length.to_ne_bytes());
    }
    bytes
}

fn export(
    m: &Machine,
    file: &mut DeviceFile,
    region: u32,
    ranges: &[(u64, u64)],
) -> Result<i32, Errno> {
    let mut bytes = request(VFIO_DEVICE_FEATURE_GET, region, 0, ranges);
    m.ioctl(file, VFIO_DEVICE_FEATURE, &mut bytes)
        .map(|fd| fd as i32)
}

fn map_file(
    m: &Machine,
    ioas: u32,
    fd: i32,
    start: u64,
    length: u64,
    iova: u64,
) -> Result<(), Errno> {
    let mut cmd = IommuIoasMapFile {
        size: std::mem::size_of::<IommuIoasMapFile>() as u32,
        flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas,
        fd,
        start,
        length,
        iova,
    };
    let caller = m.caller();
    let mut ctx = m.ctx.lock().unwrap();
    ctx.ioctl(&caller, IOMMU_IOAS_MAP_FILE, Arg::Bytes(cmd.as_mut_bytes()))
        .map(|_| ())
}

fn unmap(m: &Machine, ioas: u32, iova: u64, length: u64) -> Result<(), Errno> {
    let mut cmd = IommuIoasUnmap {
        size: std::mem::size_of::<IommuIoasUnmap>() as u32,
        ioas_id: ioas,
        iova,
        length,
    };
    let caller = m.caller();
    let mut ctx = m.ctx.lock().unwrap();
    ctx.ioctl(&caller, IOMMU_IOAS_UNMAP, Arg::Bytes(cmd.as_mut_bytes()))
        .map(|_| ())
}

/// Device `dev_id` writes `data` at `iova` and reads it back.
fn dma(m: &Machine, dev_id: u32, iova: u64, data: &[u8]) -> Result<Vec<u8>, DmaError> {
    let mut ctx = m.ctx.lock().unwrap();
    ctx.device_dma(dev_id, iova, &mut data.to_vec(), true)?;
    let mut back = vec![0u8; data.len()];
    ctx.device_dma(dev_id, iova, &mut back, false)?;
    Ok(back)
}

/// A translation fault: the IOVA has no translation in the domain.
fn not_present(outcome: Result<Vec<u8>, DmaError>) -> bool {
    matches!(outcome, Err(DmaError::Fault(f)) if f.reason == softiommu_pt::FaultReason::NotPresent)
}

fn set_memory_decoding(file: &DeviceFile, on: bool) {
    let command: u16 = if on { 0x6 } else { 0x4 };
    file.write(
        region(VFIO_PCI_CONFIG_REGION_INDEX) + 4,
        &command.to_le_bytes(),
    )
    .unwrap();
}

/// The NIC bound and attached to a new IOAS, decoding memory.
fn bound_nic(m: &Machine) -> (DeviceFile, u32, u32) {
    let mut file = m.open(NIC);
    let dev_id = m.bind(&mut file).unwrap();
    let ioas = m.ctx.lock().unwrap().ioas_alloc().unwrap();
    m.attach(&mut file, ioas).unwrap();
    set_memory_decoding(&file, true);
    (file, dev_id, ioas)
}

#[test]
fn a_request_is_checked_in_vfio_pcis_order() {
    let m = Machine::new();
    let (mut file, _, _) = bound_nic(&m);
    let ok = [(0, PAGE)];
    let mut ask = |flags, region, dmabuf_flags, ranges: &[(u64, u64)]| {
        let mut bytes = request(flags, region, dmabuf_flags, ranges);
        m.ioctl(&mut file, VFIO_DEVICE_FEATURE, &mut bytes)
    };
    // GET only: a PROBE for it answers, a SET does not.
    assert_eq!(
        ask(
            VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET,
            0,
            0,
            &ok
        ),
        Ok(0)
    );
    assert_eq!(ask(VFIO_DEVICE_FEATURE_SET, 0, 0, &ok), Err(Errno::EINVAL));
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[]),
        Err(Errno::EINVAL),
        "no ranges"
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 1, &ok),
        Err(Errno::EINVAL),
        "flags"
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 6, 0, &ok),
        Err(Errno::ENODEV),
        "not a BAR"
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 1, 0, &ok),
        Err(Errno::ENODEV),
        "absent BAR"
    );
    for bad in [(0, 0), (1, PAGE), (0, PAGE + 1)] {
        assert_eq!(
            ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[bad]),
            Err(Errno::EINVAL),
            "{bad:x?}"
        );
    }
    // Shape is checked for every range before any is checked against the BAR.
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[(0, 256 << 10), (0, 1)]),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[(0, 256 << 10)]),
        Err(Errno::EINVAL),
        "past the BAR"
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[(!(PAGE - 1), 2 * PAGE)]),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        ask(VFIO_DEVICE_FEATURE_GET, 0, 0, &[(0, 1 << 62), (0, 1 << 62)]),
        Err(Errno::EINVAL),
        "a total at bit 63"
    );
    // A short argsz: the 16-byte request must fit.
    let mut short = request(VFIO_DEVICE_FEATURE_GET, 0, 0, &ok);
    short[..4].copy_from_slice(&23u32.to_ne_bytes());
    assert_eq!(
        m.ioctl(&mut file, VFIO_DEVICE_FEATURE, &mut short),
        Err(Errno::EINVAL)
    );
}

#[test]
fn device_dma_reaches_the_bar_through_a_mapped_dmabuf() {
    let m = Machine::new();
    let (mut file, dev_id, ioas) = bound_nic(&m);
    let fd = export(&m, &mut file, 0, &[(PAGE, 2 * PAGE)]).unwrap();
    assert_eq!(
        map_file(&m, ioas, fd, PAGE, 2 * PAGE, 0x80_0000),
        Err(Errno::EINVAL),
        "past its end"
    );
    map_file(&m, ioas, fd, 0, 2 * PAGE, 0x80_0000).unwrap();
    assert_eq!(
        m.shared.accounting.user_locked(1000),
        0,
        "a dma-buf's pages are charged to no one (IOPT_PAGES_ACCOUNT_NONE)"
    );
    assert_eq!(
        dma(&m, dev_id, 0x80_1ff0, b"peer to peer").unwrap(),
        b"peer to peer"
    );
    // The bytes are in the BAR, one page past its start plus the offset.
    let mut bar = [0u8; 12];
    file.read(2 * PAGE + 0xff0, &mut bar).unwrap();
    assert_eq!(&bar, b"peer to peer");

    // iommufd maps a dma-buf of one range only.
    let two = export(&m, &mut file, 0, &[(0, PAGE), (4 * PAGE, PAGE)]).unwrap();
    assert_eq!(
        map_file(&m, ioas, two, 0, PAGE, 0x90_0000),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn a_revoked_dmabuf_leaves_the_domain_for_good_and_maps_again_once_restored() {
    let m = Machine::new();
    let (mut file, dev_id, ioas) = bound_nic(&m);
    let fd = export(&m, &mut file, 0, &[(0, PAGE)]).unwrap();
    map_file(&m, ioas, fd, 0, PAGE, 0x80_0000).unwrap();
    assert!(dma(&m, dev_id, 0x80_0000, b"before").is_ok());

    // Memory decoding off: revoked. The mapping leaves the domain and a new
    // map is refused; the range check still comes first.
    set_memory_decoding(&file, false);
    assert!(not_present(dma(&m, dev_id, 0x80_0000, b"x")));
    assert_eq!(
        map_file(&m, ioas, fd, 0, PAGE, 0x90_0000),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        map_file(&m, ioas, fd, 0, 2 * PAGE, 0x90_0000),
        Err(Errno::EINVAL)
    );

    // On again: new maps work, the old one stays dead until unmapped.
    set_memory_decoding(&file, true);
    map_file(&m, ioas, fd, 0, PAGE, 0x90_0000).unwrap();
    assert!(dma(&m, dev_id, 0x90_0000, b"after").is_ok());
    assert!(not_present(dma(&m, dev_id, 0x80_0000, b"x")));
    unmap(&m, ioas, 0x80_0000, PAGE).unwrap();
    map_file(&m, ioas, fd, 0, PAGE, 0x80_0000).unwrap();
    assert!(dma(&m, dev_id, 0x80_0000, b"again").is_ok());

    // A dma-buf made while memory is off is born revoked.
    set_memory_decoding(&file, false);
    let born = export(&m, &mut file, 0, &[(PAGE, PAGE)]).unwrap();
    assert_eq!(
        map_file(&m, ioas, born, 0, PAGE, 0xa0_0000),
        Err(Errno::ENODEV)
    );
    set_memory_decoding(&file, true);
    map_file(&m, ioas, born, 0, PAGE, 0xa0_0000).unwrap();
}

#[test]
fn a_reset_revokes_and_closing_the_function_revokes_for_good() {
    let m = Machine::new();
    let (mut file, dev_id, ioas) = bound_nic(&m);
    let fd = export(&m, &mut file, 0, &[(0, PAGE)]).unwrap();
    map_file(&m, ioas, fd, 0, PAGE, 0x80_0000).unwrap();
    // A reset revokes across it: the mapping is gone even though the
    // function decodes memory again afterwards (vfio-pci restores the
    // command register).
    m.ioctl(&mut file, VFIO_DEVICE_RESET, &mut []).unwrap();
    assert!(not_present(dma(&m, dev_id, 0x80_0000, b"x")));
    unmap(&m, ioas, 0x80_0000, PAGE).unwrap();
    set_memory_decoding(&file, true);
    map_file(&m, ioas, fd, 0, PAGE, 0x80_0000).unwrap();
    // Its user closes the function: the dma-buf is dead, whatever comes.
    drop(file);
    assert_eq!(
        map_file(&m, ioas, fd, 0, PAGE, 0x90_0000),
        Err(Errno::ENODEV)
    );
    let mut again = m.open(NIC);
    m.bind(&mut again).unwrap();
    set_memory_decoding(&again, true);
    assert_eq!(
        map_file(&m, ioas, fd, 0, PAGE, 0x90_0000),
        Err(Errno::ENODEV)
    );
}

#[test]
fn runtime_low_power_revokes_and_its_exit_lets_new_maps_in() {
    let m = Machine::new();
    let (mut file, dev_id, ioas) = bound_nic(&m);
    let fd = export(&m, &mut file, 0, &[(0, PAGE)]).unwrap();
    map_file(&m, ioas, fd, 0, PAGE, 0x80_0000).unwrap();
    let mut feature = |which: u32| {
        let mut bytes = 8u32.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&(VFIO_DEVICE_FEATURE_SET | which).to_ne_bytes());
        m.ioctl(&mut file, VFIO_DEVICE_FEATURE, &mut bytes)
    };
    feature(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY).unwrap();
    assert!(not_present(dma(&m, dev_id, 0x80_0000, b"x")));
    assert_eq!(
        map_file(&m, ioas, fd, 0, PAGE, 0x90_0000),
        Err(Errno::ENODEV)
    );
    feature(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT).unwrap();
    map_file(&m, ioas, fd, 0, PAGE, 0x90_0000).unwrap();
    assert!(dma(&m, dev_id, 0x90_0000, b"awake").is_ok());
}
