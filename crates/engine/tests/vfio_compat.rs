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
    // (op, ioas_id): the IOAS id answered.
    let vfio_ioas = |h: &mut Harness, (op, ioas)| cmd::vfio_ioas(h, op, ioas);
    test_table(
        &mut h,
        &[
            (
                "get without one",
                (IOMMU_VFIO_IOAS_GET, 0),
                Err(Errno::ENODEV),
            ),
            (
                "set to no IOAS",
                (IOMMU_VFIO_IOAS_SET, 0),
                Err(Errno::ENOENT),
            ),
        ],
        vfio_ioas,
    );
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    test_table(
        &mut h,
        &[
            ("set", (IOMMU_VFIO_IOAS_SET, ioas), Ok(ioas)),
            ("get", (IOMMU_VFIO_IOAS_GET, 0), Ok(ioas)),
            ("clear", (IOMMU_VFIO_IOAS_CLEAR, 0), Ok(0)),
            (
                "get once cleared",
                (IOMMU_VFIO_IOAS_GET, 0),
                Err(Errno::ENODEV),
            ),
            ("an unknown op", (3, 0), Err(Errno::EOPNOTSUPP)),
            ("set again", (IOMMU_VFIO_IOAS_SET, ioas), Ok(ioas)),
        ],
        vfio_ioas,
    );
    cmd::destroy(&mut h, ioas).unwrap();
    let get = IommuVfioIoas {
        size: 12,
        ioas_id: 0,
        op: IOMMU_VFIO_IOAS_GET,
        reserved: 0,
    };
    test_err_ioctl(
        &mut h,
        IOMMU_VFIO_IOAS,
        &[
            ("destroy clears the compat IOAS", get, Errno::ENODEV),
            (
                "a reserved field",
                IommuVfioIoas {
                    op: 0,
                    reserved: 1,
                    ..get
                },
                Errno::EOPNOTSUPP,
            ),
        ],
    );
}

// ---- VFIO type1 compatibility -------------------------------------------------------------

/// A new IOAS as the compat IOAS, with the VFIO IOMMU type `ty` set.
fn compat_ioas(h: &mut Harness, ty: u64) -> u32 {
    let ioas = cmd::ioas_alloc(h).unwrap();
    cmd::vfio_ioas(h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    h.ptr(VFIO_SET_IOMMU, ty).unwrap();
    ioas
}

/// `(start, length)` of every area of `ioas`, in IOVA order.
fn areas(h: &Harness, ioas: u32) -> Vec<(u64, u64)> {
    h.ctx
        .ioas(ioas)
        .unwrap()
        .areas()
        .map(|a| (a.start, a.length()))
        .collect()
}

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

/// A VFIO type1 call on the iommufd descriptor, as a table row.
#[derive(Clone, Copy, Debug)]
enum Vfio {
    ApiVersion,
    CheckExtension(u64),
    SetIommu(u64),
    /// (flags, vaddr, iova, size)
    MapDma(u32, u64, u64, u64),
    /// (flags, iova, size)
    UnmapDma(u32, u64, u64),
    /// argsz
    GetInfo(u32),
}

/// Issues `call`: what `ioctl` returns.
fn vfio(h: &mut Harness, call: Vfio) -> Result<i64, Errno> {
    match call {
        Vfio::ApiVersion => h.raw(VFIO_GET_API_VERSION, &mut [0u8; 32]),
        Vfio::CheckExtension(ext) => h.ptr(VFIO_CHECK_EXTENSION, ext),
        Vfio::SetIommu(ty) => h.ptr(VFIO_SET_IOMMU, ty),
        Vfio::MapDma(flags, va, iova, size) => vfio_map(h, flags, va, iova, size),
        Vfio::UnmapDma(flags, iova, size) => vfio_unmap(h, flags, iova, size).0,
        Vfio::GetInfo(argsz) => {
            let mut info = VfioIommuType1Info {
                argsz,
                ..Default::default()
            };
            h.cmd(VFIO_IOMMU_GET_INFO, &mut info)
        }
    }
}

#[test]
fn vfio_compat_needs_a_compat_ioas() {
    let mut h = Harness::new();
    let read = VFIO_DMA_MAP_FLAG_READ;
    test_table(
        &mut h,
        &[
            ("the API version", Vfio::ApiVersion, Ok(0)),
            ("type1v2", Vfio::CheckExtension(VFIO_TYPE1V2_IOMMU), Ok(1)),
            ("type1", Vfio::CheckExtension(VFIO_TYPE1_IOMMU), Ok(1)),
            ("unmap-all", Vfio::CheckExtension(VFIO_UNMAP_ALL), Ok(1)),
            (
                "no vaddr update",
                Vfio::CheckExtension(VFIO_UPDATE_VADDR),
                Ok(0),
            ),
            (
                "cache coherence needs the IOAS",
                Vfio::CheckExtension(VFIO_DMA_CC_IOMMU),
                Err(Errno::ENODEV),
            ),
            (
                "SET_IOMMU without an IOAS",
                Vfio::SetIommu(VFIO_TYPE1V2_IOMMU),
                Err(Errno::ENODEV),
            ),
            (
                "MAP_DMA without an IOAS",
                Vfio::MapDma(read, BUF, 0x10_0000, PAGE),
                Err(Errno::ENODEV),
            ),
            (
                "UNMAP_DMA without an IOAS",
                Vfio::UnmapDma(0, 0x10_0000, PAGE),
                Err(Errno::ENODEV),
            ),
            (
                "GET_INFO without an IOAS",
                Vfio::GetInfo(24),
                Err(Errno::ENODEV),
            ),
        ],
        vfio,
    );
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::vfio_ioas(&mut h, IOMMU_VFIO_IOAS_SET, ioas).unwrap();
    test_table(
        &mut h,
        &[
            (
                "SET_IOMMU of SPAPR",
                Vfio::SetIommu(VFIO_SPAPR_TCE_IOMMU),
                Err(Errno::EINVAL),
            ),
            (
                "SET_IOMMU of type1v2",
                Vfio::SetIommu(VFIO_TYPE1V2_IOMMU),
                Ok(0),
            ),
            (
                "cache coherence with the IOAS",
                Vfio::CheckExtension(VFIO_DMA_CC_IOMMU),
                Ok(1),
            ),
        ],
        vfio,
    );
}

#[test]
fn vfio_type1v2_maps_and_unmaps_whole_mappings() {
    let mut h = Harness::new();
    compat_ioas(&mut h, VFIO_TYPE1V2_IOMMU);
    let map = VfioIommuType1DmaMap {
        argsz: 32,
        flags: 0,
        vaddr: BUF,
        iova: 0,
        size: PAGE,
    };
    test_err_ioctl(
        &mut h,
        VFIO_IOMMU_MAP_DMA,
        &[
            (
                "unknown flag",
                VfioIommuType1DmaMap {
                    flags: 8,
                    iova: 0x10_0000,
                    ..map
                },
                Errno::EINVAL,
            ),
            (
                "argsz below the struct",
                VfioIommuType1DmaMap { argsz: 31, ..map },
                Errno::EINVAL,
            ),
        ],
    );
    vfio_map(
        &mut h,
        VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        BUF,
        0x10_0000,
        4 * PAGE,
    )
    .unwrap();
    // (flags, iova, size): the outcome and the size unmapped.
    test_table(
        &mut h,
        &[
            (
                "inside a mapping",
                (0, 0x10_1000, PAGE),
                (Err(Errno::ENOENT), 0),
            ),
            ("unknown flag", (4, 0, 0), (Err(Errno::EINVAL), 0)),
            (
                "unmap-all with an IOVA",
                (VFIO_DMA_UNMAP_FLAG_ALL, 0x10_0000, 0),
                (Err(Errno::EINVAL), 0),
            ),
            (
                "the whole mapping",
                (0, 0x10_0000, 4 * PAGE),
                (Ok(0), 4 * PAGE),
            ),
        ],
        |h, (flags, iova, size)| vfio_unmap(h, flags, iova, size),
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
    let ioas = compat_ioas(&mut h, VFIO_TYPE1_IOMMU);
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
    assert_eq!(
        areas(&h, ioas),
        vec![(0x10_0000, 2 * PAGE), (0x10_4000, 4 * PAGE)]
    );
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
fn a_dmabufs_mapping_never_splits() {
    let mut h = Harness::new();
    let ioas = compat_ioas(&mut h, VFIO_TYPE1_IOMMU);
    let fd = cmd::dmabuf_get(&mut h, 8 * PAGE as u32).unwrap();
    cmd::ioas_map_file(&mut h, ioas, cmd::FIXED_RW, fd, 0, 8 * PAGE, 0x10_0000).unwrap();
    // Linux's `iopt_area_split` refuses a dma-buf's area.
    assert_eq!(
        vfio_unmap(&mut h, 0, 0x10_2000, 2 * PAGE),
        (Err(Errno::EOPNOTSUPP), 2 * PAGE)
    );
    assert_eq!(
        areas(&h, ioas),
        vec![(0x10_0000, 8 * PAGE)],
        "nothing was split"
    );
    assert_eq!(vfio_unmap(&mut h, 0, 0x10_0000, 8 * PAGE).0, Ok(0));
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
