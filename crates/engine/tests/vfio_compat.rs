//! `IOMMU_VFIO_IOAS` and the VFIO type1 / type1v2 ioctls served on the
//! iommufd descriptor.

mod common;
use common::cmd;
use common::*;
use softiommu_engine::memory::PAGE_SIZE;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::vfio::*;

#[test]
fn vfio_ioas_get_set_clear() {
    let mut h = Harness::new();
    assert_eq!(
        cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, 0),
        Err(Errno::ENOENT)
    );
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    assert_eq!(cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0), Ok(ioas));
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_CLEAR, 0).unwrap();
    assert_eq!(
        cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV)
    );
    assert_eq!(cmd::vfio_ioas(&mut h, 3, 0), Err(Errno::EOPNOTSUPP));
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    let mut d = IommuDestroy { size: 8, id: ioas };
    h.cmd(IOMMU_DESTROY, &mut d).unwrap();
    assert_eq!(
        cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_GET, 0),
        Err(Errno::ENODEV),
        "destroy clears the compat IOAS"
    );
    let mut c = IommuVfioIoas {
        size: 12,
        ioas_id: 0,
        op: 0,
        reserved: 1,
    };
    assert_eq!(h.cmd(IOMMU_VFIO_IOAS, &mut c), Err(Errno::EOPNOTSUPP));
}

// ---- VFIO type1 compatibility -------------------------------------------------------------

fn vfio_map(h: &mut Harness, flags: u32, va: u64, iova: u64, size: u64) -> Result<i64, Errno> {
    let mut m = VfioIommuType1DmaMap {
        argsz: 32,
        flags,
        vaddr: va,
        iova,
        size,
    };
    h.cmd(VFIO_IOMMU_MAP_DMA, &mut m)
}

fn vfio_unmap(h: &mut Harness, flags: u32, iova: u64, size: u64) -> (Result<i64, Errno>, u64) {
    let mut u = VfioIommuType1DmaUnmap {
        argsz: 24,
        flags,
        iova,
        size,
    };
    let r = h.cmd(VFIO_IOMMU_UNMAP_DMA, &mut u);
    (r, u.size)
}

#[test]
fn vfio_compat_needs_a_compat_ioas() {
    let mut h = Harness::new();
    let mut b = [0u8; 32];
    assert_eq!(h.raw(VFIO_GET_API_VERSION, &mut b), Ok(0));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_TYPE1V2_IOMMU), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL), Ok(1));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR), Ok(0));
    assert_eq!(
        h.ptr(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, PAGE),
        Err(Errno::ENODEV)
    );
    assert_eq!(vfio_unmap(&mut h, 0, 0x10_0000, PAGE).0, Err(Errno::ENODEV));
    let mut info = VfioIommuType1Info {
        argsz: 24,
        ..Default::default()
    };
    assert_eq!(h.cmd(VFIO_IOMMU_GET_INFO, &mut info), Err(Errno::ENODEV));
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    assert_eq!(
        h.ptr(VFIO_SET_IOMMU, VFIO_SPAPR_TCE_IOMMU),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU), Ok(0));
    assert_eq!(h.ptr(VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU), Ok(1));
}

#[test]
fn vfio_type1v2_maps_and_unmaps_whole_mappings() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1V2_IOMMU).unwrap();
    assert_eq!(
        vfio_map(&mut h, 8, BUF, 0x10_0000, PAGE),
        Err(Errno::EINVAL),
        "unknown flag"
    );
    let mut short = VfioIommuType1DmaMap {
        argsz: 31,
        flags: 0,
        vaddr: BUF,
        iova: 0,
        size: PAGE,
    };
    assert_eq!(h.cmd(VFIO_IOMMU_MAP_DMA, &mut short), Err(Errno::EINVAL));
    vfio_map(
        &mut h,
        VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        BUF,
        0x10_0000,
        4 * PAGE,
    )
    .unwrap();
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_1000, PAGE),
        (Err(Errno::ENOENT), 0)
    );
    assert_eq!(
        vfio_unmap(&mut h, 4, 0, 0).0,
        Err(Errno::EINVAL),
        "unknown flag"
    );
    assert_eq!(
        vfio_unmap(&mut h, VFIO_DMA_UNMAP_FLAG_ALL, 0x10_0000, 0).0,
        Err(Errno::EINVAL)
    );
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_0000, 4 * PAGE),
        (Ok(0), 4 * PAGE)
    );
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, 4 * PAGE).unwrap();
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x20_0000, 4 * PAGE).unwrap();
    assert_eq!(
        vfio_unmap(&mut h, VFIO_DMA_UNMAP_FLAG_ALL, 0, 0),
        (Ok(0), 8 * PAGE)
    );
}

#[test]
fn vfio_type1_v1_may_unmap_inside_a_mapping() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU).unwrap();
    assert_eq!(
        cmd::option(
            &mut h,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_GET,
            ioas,
            0
        ),
        Ok(0)
    );
    vfio_map(&mut h, VFIO_DMA_MAP_FLAG_READ, BUF, 0x10_0000, 8 * PAGE).unwrap();
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_2000, 2 * PAGE),
        (Ok(0), 2 * PAGE)
    );
    let starts: Vec<(u64, u64)> = h
        .ctx
        .ioas(ioas)
        .unwrap()
        .areas()
        .map(|a| (a.start, a.length()))
        .collect();
    assert_eq!(starts, vec![(0x10_0000, 2 * PAGE), (0x10_4000, 4 * PAGE)]);
    // The pieces still reach the right bytes.
    h.write_mem(BUF + 5 * PAGE, b"v1");
    let mut back = [0u8; 2];
    h.ctx
        .ioas(ioas)
        .unwrap()
        .access_rw(0x10_5000, &mut back, false)
        .unwrap();
    assert_eq!(&back, b"v1");
}

#[test]
fn vfio_get_info_returns_the_capability_chain() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    let mut small = VfioIommuType1Info {
        argsz: 15,
        ..Default::default()
    };
    assert_eq!(h.cmd(VFIO_IOMMU_GET_INFO, &mut small), Err(Errno::EINVAL));
    let mut info = VfioIommuType1Info {
        argsz: 24,
        ..Default::default()
    };
    h.cmd(VFIO_IOMMU_GET_INFO, &mut info).unwrap();
    assert_eq!(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    assert_eq!(info.iova_pgsizes, !(PAGE_SIZE - 1));
    assert_eq!(info.cap_offset, 0, "too small for the caps");
    assert_eq!(info.argsz, 24 + 12 + 16 + 16);
    let mut buf = vec![0u8; 68];
    buf[..4].copy_from_slice(&68u32.to_ne_bytes());
    h.raw(VFIO_IOMMU_GET_INFO, &mut buf).unwrap();
    let cap_offset = u32::from_ne_bytes(buf[16..20].try_into().unwrap());
    assert_eq!(cap_offset, 24);
    assert_eq!(
        u16::from_ne_bytes([buf[24], buf[25]]),
        VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
    );
    assert_eq!(
        u32::from_ne_bytes(buf[28..32].try_into().unwrap()),
        36,
        "next capability"
    );
    assert_eq!(
        u32::from_ne_bytes(buf[32..36].try_into().unwrap()),
        u32::MAX
    );
    assert_eq!(
        u16::from_ne_bytes([buf[36], buf[37]]),
        VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
    );
    assert_eq!(u32::from_ne_bytes(buf[44..48].try_into().unwrap()), 1);
    assert_eq!(
        u64::from_ne_bytes(buf[60..68].try_into().unwrap()),
        u64::MAX
    );
}
