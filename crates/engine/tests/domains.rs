//! Devices, HWPTs and domains: each domain's real page table always holds
//! exactly its IOAS's areas, checked by walking the table after every step.

mod common;
use common::*;
use softiommu_engine::ioas::Prot;
use softiommu_engine::memory::SimFile;
use softiommu_engine::ops::hwpt::HwptSpec;
use softiommu_engine::pages::EngineState;
use softiommu_engine::{Errno, MapArgs};
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::{DeviceId, DriverInfo, ReservedRegion, ReservedType, Topology};
use std::collections::BTreeSet;
use std::sync::Arc;

const RW: Prot = Prot {
    read: true,
    write: true,
};

/// amd: group {a0, a1, a2} and group {a3}; mock: {m0}, {m1}. The AMD devices
/// report the x86 MSI window.
fn machine() -> Harness {
    let msi = ReservedRegion {
        start: 0xfee0_0000,
        length: 0x10_0000,
        kind: ReservedType::Msi,
    };
    let topo = Topology::builder()
        .iommu("amd", DriverInfo::amd_v1())
        .iommu("mock", DriverInfo::mock())
        .group("amd", &["a0", "a1", "a2"])
        .unwrap()
        .group("amd", &["a3"])
        .unwrap()
        .group("mock", &["m0"])
        .unwrap()
        .group("mock", &["m1"])
        .unwrap()
        .reserved("a0", msi)
        .unwrap()
        .reserved("a3", msi)
        .unwrap()
        .build();
    Harness::with_shared(Arc::new(EngineState::with_topology(topo)))
}

const A0: DeviceId = DeviceId(0);
const A1: DeviceId = DeviceId(1);
const A3: DeviceId = DeviceId(3);
const M0: DeviceId = DeviceId(4);
const M1: DeviceId = DeviceId(5);

fn map(h: &mut Harness, ioas: u32, va: u64, len: u64, iova: Option<u64>) -> Result<u64, Errno> {
    let (ctx, caller) = h.split();
    ctx.ioas_map(
        &caller,
        ioas,
        va,
        MapArgs {
            iova,
            length: len,
            prot: RW,
        },
    )
}

/// Every domain of `ioas` maps exactly the IOAS's areas, byte for byte to the
/// pages' addresses, and nothing else.
fn assert_mirrors(h: &Harness, ioas: u32) {
    let iopt = h.ctx.ioas(ioas).unwrap();
    let areas: Vec<_> = iopt.areas().cloned().collect();
    let expected: u64 = areas.iter().map(|a| a.length()).sum();
    for d in iopt.domains() {
        let table = d.table.lock().unwrap();
        let step = table.min_page_size();
        let mapped: u64 = table
            .leaves()
            .iter()
            .map(|(r, _)| r.last - r.start + 1)
            .sum();
        assert_eq!(
            mapped, expected,
            "domain of HWPT {} maps more or less than the IOAS",
            d.hwpt
        );
        for a in &areas {
            let mut iova = a.start;
            while iova <= a.last {
                let byte = a.byte_at(iova);
                let want = a.pages.address(byte / PAGE).map(|p| p + byte % PAGE);
                let got = table.iova_to_phys(iova).map(|(pa, _)| pa);
                assert_eq!(got, want, "IOVA {iova:#x} in HWPT {}", d.hwpt);
                match iova.checked_add(step) {
                    Some(n) => iova = n,
                    None => break,
                }
            }
        }
    }
}

#[test]
fn domains_mirror_their_ioas_through_map_attach_copy_unmap_and_replace() {
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    let other = h.ctx.ioas_alloc().unwrap();
    // Maps before any domain pin nothing.
    // Inside the mock aperture, so that both IOMMUs' domains can mirror them.
    let early = map(&mut h, ioas, BUF, 16 * PAGE, Some(0x100_0000)).unwrap();
    map(&mut h, ioas, BUF + 0x20_0000, 0x20_0000, Some(0x140_0000)).unwrap();
    assert_eq!(h.shared.pinned_frames(), 0);
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    let (hwpt, affected) = h.ctx.device_attach(dev, ioas).unwrap();
    assert_eq!(affected.devices(), BTreeSet::from([A3]));
    assert_eq!(
        h.shared.pinned_frames(),
        16 + 512,
        "attach pins every mapped page"
    );
    assert_mirrors(&h, ioas);
    // A map with a domain attached fills it.
    let late = map(&mut h, ioas, BUF + PAGE, 3 * PAGE, Some(0x180_0000)).unwrap();
    assert_mirrors(&h, ioas);
    // A second domain on the same IOAS (another IOMMU) is filled on attach.
    let (mdev, _) = h.ctx.device_bind(M0).unwrap();
    let (mhwpt, _) = h.ctx.device_attach(mdev, ioas).unwrap();
    assert_ne!(mhwpt, hwpt);
    assert_eq!(h.ctx.ioas(ioas).unwrap().domains().len(), 2);
    assert_mirrors(&h, ioas);
    // Copy into the IOAS from another one.
    map(&mut h, other, BUF + 0x10_0000, 8 * PAGE, Some(0x8000_0000)).unwrap();
    h.ctx
        .ioas_copy(
            ioas,
            other,
            0x8000_0000,
            MapArgs {
                iova: Some(0x200_0000),
                length: 8 * PAGE,
                prot: RW,
            },
        )
        .unwrap();
    assert_mirrors(&h, ioas);
    // Unmaps empty every domain.
    h.ctx.ioas_unmap(ioas, early, 16 * PAGE).unwrap();
    h.ctx.ioas_unmap(ioas, late, 3 * PAGE).unwrap();
    assert_mirrors(&h, ioas);
    // Replace the AMD device onto the other IOAS: its old automatic HWPT goes.
    let (new_hwpt, moved) = h.ctx.device_replace(dev, other).unwrap();
    assert_eq!(moved.devices(), BTreeSet::from([A3]));
    assert!(
        h.ctx.objects().hwpt_paging(hwpt).is_err(),
        "the old automatic HWPT died with its last device"
    );
    assert_mirrors(&h, other);
    assert_mirrors(&h, ioas);
    assert_eq!(h.ctx.ioas(ioas).unwrap().domains().len(), 1);
    assert!(h.ctx.objects().hwpt_paging(new_hwpt).is_ok());
    // Detach and close release every pin.
    h.ctx.device_detach(dev).unwrap();
    h.ctx.close();
    assert_eq!(h.shared.pinned_frames(), 0);
    assert!(h.shared.accounting.is_idle());
}

#[test]
fn attaching_a_group_reports_every_device_and_others_must_share_the_hwpt() {
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    let ioas2 = h.ctx.ioas_alloc().unwrap();
    let (d0, bound) = h.ctx.device_bind(A0).unwrap();
    assert_eq!(
        bound.devices(),
        BTreeSet::from([A0, A1, DeviceId(2)]),
        "the group leaves the default domain"
    );
    let (d1, bound) = h.ctx.device_bind(A1).unwrap();
    assert!(bound.is_empty());
    let (hwpt, attached) = h.ctx.device_attach(d0, ioas).unwrap();
    assert_eq!(attached.devices().len(), 3);
    // The sibling cannot go elsewhere; it can join.
    assert_eq!(
        h.ctx.device_attach(d1, ioas2).map(|_| ()),
        Err(Errno::EINVAL)
    );
    let (same, joined) = h.ctx.device_attach(d1, ioas).unwrap();
    assert_eq!(same, hwpt, "the automatic HWPT is reused");
    assert!(joined.is_empty());
    assert_eq!(
        h.ctx.destroy(hwpt),
        Err(Errno::EBUSY),
        "an attached HWPT is busy"
    );
    assert_eq!(
        h.ctx.destroy(ioas),
        Err(Errno::EBUSY),
        "an IOAS with a HWPT is busy"
    );
    assert!(
        h.ctx.device_detach(d0).unwrap().is_empty(),
        "d1 keeps the group attached"
    );
    assert_eq!(h.ctx.device_detach(d1).unwrap().devices().len(), 3);
    assert!(
        h.ctx.device_detach(d1).unwrap().is_empty(),
        "detaching a detached device is a no-op"
    );
    // Another context cannot claim the group (it is owned here).
    let mut other = h.sibling();
    assert_eq!(
        other.ctx.device_bind(DeviceId(2)).map(|_| ()),
        Err(Errno::EPERM)
    );
}

#[test]
fn attach_enforces_alignment_apertures_and_reserved_regions() {
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    // A 2 KiB-offset area cannot live with a 4 KiB domain.
    map(&mut h, ioas, BUF + 0x800, PAGE, Some(0x10_0800)).unwrap();
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    assert_eq!(
        h.ctx.device_attach(dev, ioas).map(|_| ()),
        Err(Errno::EADDRINUSE)
    );
    assert!(
        h.ctx
            .objects()
            .ids_of(softiommu_engine::object::ObjectType::HwptPaging)
            .is_empty(),
        "no HWPT left"
    );
    // The mock domain (2 KiB pages) accepts it, and reserves outside its aperture.
    let (mdev, _) = h.ctx.device_bind(M1).unwrap();
    assert_eq!(
        h.ctx.device_attach(mdev, ioas).map(|_| ()),
        Err(Errno::EADDRINUSE),
        "the area is outside the aperture"
    );
    h.ctx.ioas_unmap(ioas, 0, u64::MAX).unwrap();
    map(&mut h, ioas, BUF + 0x800, PAGE, Some(0x100_0800)).unwrap();
    h.ctx.device_attach(mdev, ioas).unwrap();
    assert_eq!(h.ctx.ioas(ioas).unwrap().iova_alignment(), 2048);
    assert_eq!(
        h.ctx.ioas(ioas).unwrap().usable_ranges(),
        vec![(1 << 24, (1 << 31) - 1)]
    );
    assert_eq!(
        map(&mut h, ioas, BUF, PAGE, Some(0x1000)),
        Err(Errno::EINVAL),
        "outside the aperture"
    );
    assert_mirrors(&h, ioas);
    h.ctx.device_detach(mdev).unwrap();
    assert_eq!(
        h.ctx.ioas(ioas).unwrap().usable_ranges(),
        vec![(0, u64::MAX)],
        "reservations go with the domain"
    );
    assert_eq!(h.ctx.ioas(ioas).unwrap().iova_alignment(), 1);
    // A device's MSI window becomes reserved IOVA while it is attached.
    h.ctx.ioas_unmap(ioas, 0, u64::MAX).unwrap();
    map(&mut h, ioas, BUF, PAGE, Some(0xfee0_0000)).unwrap();
    assert_eq!(
        h.ctx.device_attach(dev, ioas).map(|_| ()),
        Err(Errno::EADDRINUSE)
    );
    h.ctx.ioas_unmap(ioas, 0, u64::MAX).unwrap();
    h.ctx.device_attach(dev, ioas).unwrap();
    assert_eq!(
        map(&mut h, ioas, BUF, PAGE, Some(0xfee0_1000)),
        Err(Errno::EINVAL)
    );
    assert!(h.ctx.ioas(ioas).unwrap().usable_ranges().len() == 2);
}

#[test]
fn manual_hwpts_are_never_reused_and_need_the_capabilities() {
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    let manual = h
        .ctx
        .hwpt_alloc(dev, HwptSpec::paging(ioas, PagingFlags::default()))
        .unwrap();
    let (auto, _) = h.ctx.device_attach(dev, ioas).unwrap();
    assert_ne!(
        auto, manual,
        "a manual HWPT is not picked for an IOAS attach"
    );
    assert_eq!(
        h.ctx.hwpt_alloc(
            dev,
            HwptSpec::paging(
                ioas,
                PagingFlags {
                    nest_parent: true,
                    dirty_tracking: false
                }
            )
        ),
        Err(Errno::EOPNOTSUPP),
        "the AMD driver here offers no nesting"
    );
    let (_, moved) = h.ctx.device_replace(dev, manual).unwrap();
    assert_eq!(
        moved.changes.len(),
        1,
        "replace moves the group once, not through blocking"
    );
    assert_eq!(h.ctx.destroy(manual), Err(Errno::EBUSY));
    h.ctx.device_detach(dev).unwrap();
    h.ctx.destroy(manual).unwrap();
    assert_eq!(h.ctx.ioas(ioas).unwrap().domains().len(), 0);
}

#[test]
fn kernel_drivers_and_user_owners_exclude_each_other() {
    let mut h = machine();
    h.shared
        .iommu
        .lock()
        .unwrap()
        .bind_kernel_driver(A1, "e1000e")
        .unwrap();
    assert_eq!(h.ctx.device_bind(A0).map(|_| ()), Err(Errno::EPERM));
    h.shared
        .iommu
        .lock()
        .unwrap()
        .unbind_kernel_driver(A1)
        .unwrap();
    let (dev, _) = h.ctx.device_bind(A0).unwrap();
    assert_eq!(
        h.shared
            .iommu
            .lock()
            .unwrap()
            .bind_kernel_driver(A1, "e1000e"),
        Err(Errno::EBUSY)
    );
    h.ctx.destroy(dev).unwrap();
    h.shared
        .iommu
        .lock()
        .unwrap()
        .bind_kernel_driver(A1, "e1000e")
        .unwrap();
}

#[test]
fn file_backed_maps_fill_domains_too() {
    let mut h = machine();
    let file = Arc::new(SimFile::new(32 * PAGE as usize, true));
    let ioas = h.ctx.ioas_alloc().unwrap();
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    h.ctx.device_attach(dev, ioas).unwrap();
    let (ctx, caller) = h.split();
    ctx.ioas_map_file(
        &caller,
        ioas,
        file.clone(),
        0,
        MapArgs {
            iova: None,
            length: 32 * PAGE,
            prot: RW,
        },
    )
    .unwrap();
    assert_mirrors(&h, ioas);
    // A truncated file cannot be pinned into a new domain: the attach fails cleanly.
    let (m, _) = h.ctx.device_bind(M0).unwrap();
    file.truncate(0);
    let pinned = h.shared.pinned_frames();
    // The pages stay pinned by the first domain, so the mock domain fills fine
    // unless the area lies outside its aperture, which it does here.
    assert!(h.ctx.device_attach(m, ioas).is_err());
    assert_eq!(h.shared.pinned_frames(), pinned);
    assert_mirrors(&h, ioas);
}

#[test]
fn a_failed_fill_unwinds_completely() {
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    for i in 0..4 {
        map(
            &mut h,
            ioas,
            BUF + i * 0x10000,
            4 * PAGE,
            Some(0x10_0000 + i * 0x10000),
        )
        .unwrap();
    }
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    let before = h.ctx.ioas(ioas).unwrap().snapshot();
    let mut n = 1;
    loop {
        h.shared.fail_nth.fail_nth(n);
        let r = h.ctx.device_attach(dev, ioas);
        let reached = !h.shared.fail_nth.pending();
        h.shared.fail_nth.fail_nth(0);
        if !reached {
            r.unwrap();
            break;
        }
        assert!(r.is_err(), "failure point {n}");
        assert_eq!(
            h.ctx.ioas(ioas).unwrap().snapshot(),
            before,
            "failure point {n}"
        );
        assert_eq!(h.shared.pinned_frames(), 0, "failure point {n}");
        assert!(h
            .ctx
            .objects()
            .ids_of(softiommu_engine::object::ObjectType::HwptPaging)
            .is_empty());
        n += 1;
    }
    assert!(n > 3, "the sweep visited the fill");
    assert_mirrors(&h, ioas);
}

#[test]
fn devices_dma_through_their_domain_with_permissions_and_dirty_bits() {
    use softiommu_engine::ops::dma::DmaError;
    use softiommu_pt::FaultReason;
    let mut h = machine();
    let ioas = h.ctx.ioas_alloc().unwrap();
    let (dev, _) = h.ctx.device_bind(A3).unwrap();
    assert!(
        matches!(h.ctx.device_dma(dev, 0x10_0000, &mut [0; 4], false), Err(DmaError::Fault(f)) if f.reason == FaultReason::NotPresent),
        "a claimed, unattached device is blocked"
    );
    let hwpt = h
        .ctx
        .hwpt_alloc(
            dev,
            HwptSpec::paging(
                ioas,
                PagingFlags {
                    dirty_tracking: true,
                    nest_parent: false,
                },
            ),
        )
        .unwrap();
    h.ctx.device_attach(dev, hwpt).unwrap();
    map(&mut h, ioas, BUF, 4 * PAGE, Some(0x10_0000)).unwrap();
    let (ctx, caller) = h.split();
    let ro = Prot {
        read: true,
        write: false,
    };
    ctx.ioas_map(
        &caller,
        ioas,
        RO,
        MapArgs {
            iova: Some(0x20_0000),
            length: PAGE,
            prot: ro,
        },
    )
    .unwrap();
    h.ctx.hwpt_set_dirty_tracking(hwpt, true).unwrap();

    let mut msg = *b"dma across pages";
    h.ctx.device_dma(dev, 0x10_0ff8, &mut msg, true).unwrap();
    assert_eq!(h.read_mem(BUF + 0xff8, 16), b"dma across pages");
    h.write_mem(BUF + 0x2000, b"from memory");
    let mut back = [0u8; 11];
    h.ctx.device_dma(dev, 0x10_2000, &mut back, false).unwrap();
    assert_eq!(&back, b"from memory");

    let denied = h.ctx.device_dma(dev, 0x20_0000, &mut [1; 4], true);
    assert!(
        matches!(denied, Err(DmaError::Fault(f)) if f.reason == FaultReason::Permission),
        "{denied:?}"
    );
    let mut spill = [0u8; 8];
    let past = h.ctx.device_dma(dev, 0x10_3ffc, &mut spill, false);
    assert!(
        matches!(past, Err(DmaError::Fault(f)) if f.reason == FaultReason::NotPresent && f.iova == 0x10_4000),
        "{past:?}"
    );
    h.write_mem(BUF + 0x3ffc, &[7; 4]);
    let _ = h.ctx.device_dma(dev, 0x10_3ffc, &mut [9; 8], true);
    assert_eq!(
        h.read_mem(BUF + 0x3ffc, 4),
        vec![7; 4],
        "a failed DMA copies nothing"
    );

    // The writes marked exactly the pages they touched.
    h.write_mem(SCRATCH, &[0; 8]);
    let (ctx, caller) = h.split();
    ctx.hwpt_get_dirty_bitmap(&caller, hwpt, 0x10_0000, 4 * PAGE, PAGE, SCRATCH, false)
        .unwrap();
    assert_eq!(h.read_mem(SCRATCH, 1), vec![0b0000_0011]);
    h.ctx.device_detach(dev).unwrap();
    assert!(matches!(
        h.ctx.device_dma(dev, 0x10_0000, &mut [0; 4], false),
        Err(DmaError::Fault(_))
    ));
}
