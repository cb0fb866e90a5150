//! Fault queues: `IOMMU_FAULT_QUEUE_ALLOC`, HWPTs made with a fault queue,
//! faults a device takes (`TRIGGER_IOPF`) reaching the queue's file, the
//! responses written back, and the object's lifetime against its file.

mod common;
use common::*;
use softiommu_engine::memory::CallerFiles;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd as t;
use zerocopy::{FromBytes, IntoBytes};

/// An IOAS with a mock device on it, and a nest parent over that IOAS.
struct Setup {
    dev: u32,
    stdev: u32,
    parent: u32,
}

fn setup(h: &mut Harness) -> Setup {
    let ioas = cmd::ioas_alloc(h).unwrap();
    let md = cmd::mock_domain(h, ioas).unwrap();
    let parent = cmd::hwpt_alloc(h, md.idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT).unwrap();
    Setup {
        dev: md.idev,
        stdev: md.stdev,
        parent,
    }
}

fn nested_with_fault(h: &mut Harness, s: &Setup, fault_id: u32) -> Result<u32, Errno> {
    cmd::hwpt_alloc_nested(h, s.dev, s.parent, IOMMU_HWPT_FAULT_ID_VALID, fault_id)
}

fn replace(h: &mut Harness, stdev: u32, pt: u32) -> Result<u32, Errno> {
    cmd::mock_domain_replace(h, stdev, pt)
}

fn trigger(h: &mut Harness, dev_id: u32, pasid: u32, addr: u64) -> Result<(), Errno> {
    cmd::trigger_iopf(h, dev_id, pasid, addr)
}

/// The records queued for side file `inode`.
fn records_for(h: &mut Harness, inode: u64) -> Vec<IommuHwptPgfault> {
    h.ctx
        .take_side_output()
        .into_iter()
        .filter(|(i, _)| *i == inode)
        .flat_map(|(_, bytes)| {
            bytes
                .chunks_exact(40)
                .map(|r| IommuHwptPgfault::read_from_bytes(r).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_fault_on_a_hwpt_with_a_queue_reaches_its_file_and_takes_a_response() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let (fault_id, fault_fd) = cmd::fault_alloc(&mut h).unwrap();
    assert_ne!(fault_id, 0);
    let inode = h.files.inode_of(fault_fd).unwrap();

    assert_eq!(
        nested_with_fault(&mut h, &s, u32::MAX),
        Err(Errno::ENOENT),
        "an unknown fault queue"
    );
    assert_eq!(
        nested_with_fault(&mut h, &s, s.parent),
        Err(Errno::ENOENT),
        "a HWPT is no fault queue"
    );
    let hwpt = nested_with_fault(&mut h, &s, fault_id).unwrap();
    assert_eq!(
        cmd::destroy(&mut h, fault_id),
        Err(Errno::EBUSY),
        "a HWPT holds the queue"
    );

    // Not attached to the queue's HWPT yet: the fault goes nowhere.
    trigger(&mut h, s.dev, 1, 0xdead_b000).unwrap();
    assert!(records_for(&mut h, inode).is_empty());

    replace(&mut h, s.stdev, hwpt).unwrap();
    trigger(&mut h, s.dev, 1, 0xdead_beaf).unwrap();
    trigger(&mut h, s.dev, 0, 0x1000).unwrap();
    let records = records_for(&mut h, inode);
    assert_eq!(records.len(), 2);
    let first = records[0];
    assert_eq!(
        first.flags,
        IOMMU_PGFAULT_FLAGS_LAST_PAGE | IOMMU_PGFAULT_FLAGS_PASID_VALID
    );
    assert_eq!(first.dev_id, s.dev);
    assert_eq!((first.pasid, first.grpid, first.addr), (1, 2, 0xdead_beaf));
    assert_eq!(
        first.perm,
        IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE
    );
    assert_eq!(first.length, 0);
    assert_ne!(first.cookie, 0);
    assert_eq!(records[1].flags, IOMMU_PGFAULT_FLAGS_LAST_PAGE, "no PASID");
    assert_ne!(records[1].cookie, first.cookie);
    assert_eq!(h.ctx.fault_queue(fault_id).unwrap().awaiting.len(), 2);

    // Responses arrive in pieces; an unknown cookie is dropped.
    let mut bytes = Vec::new();
    for (cookie, code) in [
        (first.cookie, IOMMUFD_PAGE_RESP_SUCCESS),
        (9999, IOMMUFD_PAGE_RESP_SUCCESS),
        (records[1].cookie, IOMMUFD_PAGE_RESP_INVALID),
    ] {
        bytes.extend_from_slice(IommuHwptPageResponse { cookie, code }.as_bytes());
    }
    h.ctx.side_file_input(inode, &bytes[..5]);
    h.ctx.side_file_input(inode, &bytes[5..]);
    let queue = h.ctx.fault_queue(fault_id).unwrap();
    assert!(queue.awaiting.is_empty());
    assert_eq!(queue.responses.get(&IOMMUFD_PAGE_RESP_SUCCESS), Some(&1));
    assert_eq!(queue.responses.get(&IOMMUFD_PAGE_RESP_INVALID), Some(&1));

    // The object outlives its file until destroyed, and not while a HWPT or
    // the file holds it.
    replace(&mut h, s.stdev, s.parent).unwrap();
    cmd::destroy(&mut h, hwpt).unwrap();
    assert_eq!(
        cmd::destroy(&mut h, fault_id),
        Err(Errno::EBUSY),
        "the open file holds the queue"
    );
    let closed = h.files.close_side_file(fault_fd).unwrap();
    h.ctx.side_file_closed(closed);
    cmd::destroy(&mut h, fault_id).unwrap();
    assert_eq!(cmd::destroy(&mut h, fault_id), Err(Errno::ENOENT));
}

#[test]
fn fault_queue_alloc_and_hwpt_alloc_refuse_bad_input() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let mut bad = IommuFaultAlloc {
        size: 16,
        flags: 1,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_FAULT_QUEUE_ALLOC, &mut bad),
        Err(Errno::EOPNOTSUPP)
    );
    let mut short = [0u8; 8];
    short[..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(
        h.raw(IOMMU_FAULT_QUEUE_ALLOC, &mut short),
        Err(Errno::EINVAL),
        "shorter than the first release's struct"
    );
    let (fault_id, fault_fd) = cmd::fault_alloc(&mut h).unwrap();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let mut parent_with_fault = IommuHwptAlloc {
        size: 48,
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: s.dev,
        pt_id: ioas,
        fault_id,
        ..Default::default()
    };
    assert_eq!(
        h.cmd(IOMMU_HWPT_ALLOC, &mut parent_with_fault),
        Err(Errno::EOPNOTSUPP),
        "a nest parent takes no fault queue"
    );
    let objects = h.ctx.objects().len();
    let mut paging = IommuHwptAlloc {
        size: 48,
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: s.dev,
        pt_id: ioas,
        fault_id: 4242,
        ..Default::default()
    };
    assert_eq!(h.cmd(IOMMU_HWPT_ALLOC, &mut paging), Err(Errno::ENOENT));
    assert_eq!(h.ctx.objects().len(), objects, "nothing left behind");
    paging.fault_id = fault_id;
    h.cmd(IOMMU_HWPT_ALLOC, &mut paging).unwrap();
    assert_eq!(cmd::destroy(&mut h, fault_id), Err(Errno::EBUSY));

    // On a paging HWPT, only faults without a PASID reach the queue.
    let inode = h.files.inode_of(fault_fd).unwrap();
    replace(&mut h, s.stdev, paging.out_hwpt_id).unwrap();
    trigger(&mut h, s.dev, 1, 0x1000).unwrap();
    trigger(&mut h, s.dev, 0, 0x2000).unwrap();
    let records = records_for(&mut h, inode);
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].pasid, records[0].addr), (0, 0x2000));
    replace(&mut h, s.stdev, s.parent).unwrap();
    cmd::destroy(&mut h, paging.out_hwpt_id).unwrap();

    assert_eq!(
        trigger(&mut h, 4242, 0, 0),
        Err(Errno::ENOENT),
        "an unknown device"
    );
}

#[test]
fn closing_the_context_with_the_queue_file_open_frees_everything() {
    let mut h = Harness::new();
    let s = setup(&mut h);
    let (fault_id, _fd) = cmd::fault_alloc(&mut h).unwrap();
    nested_with_fault(&mut h, &s, fault_id).unwrap();
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
}

#[test]
fn device_dma_that_faults_raises_a_page_request() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    let md = cmd::mock_domain(&mut h, ioas).unwrap();
    let (fault_id, fault_fd) = cmd::fault_alloc(&mut h).unwrap();
    let inode = h.files.inode_of(fault_fd).unwrap();
    let mut paging = IommuHwptAlloc {
        size: 48,
        flags: IOMMU_HWPT_FAULT_ID_VALID,
        dev_id: md.idev,
        pt_id: ioas,
        fault_id,
        ..Default::default()
    };
    h.cmd(IOMMU_HWPT_ALLOC, &mut paging).unwrap();
    replace(&mut h, md.stdev, paging.out_hwpt_id).unwrap();
    let flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE;
    cmd::ioas_map(&mut h, ioas, flags, BUF, PAGE, t::MOCK_APERTURE_START).unwrap();

    h.ctx
        .device_dma(md.idev, t::MOCK_APERTURE_START, &mut [0; 8], false)
        .unwrap();
    assert!(h.ctx.take_side_output().is_empty(), "no fault, no request");

    let missing = t::MOCK_APERTURE_START + 3 * PAGE + 16;
    assert!(h
        .ctx
        .device_dma(md.idev, missing, &mut [0; 8], false)
        .is_err());
    assert!(h
        .ctx
        .device_dma(md.idev, t::MOCK_APERTURE_START, &mut [1], true)
        .is_err());
    let out = h.ctx.take_side_output();
    assert_eq!(out.len(), 2);
    let records: Vec<IommuHwptPgfault> = out
        .iter()
        .map(|(i, bytes)| {
            assert_eq!(*i, inode);
            IommuHwptPgfault::read_from_bytes(bytes).unwrap()
        })
        .collect();
    assert_eq!(
        records[0].addr,
        t::MOCK_APERTURE_START + 3 * PAGE,
        "the page"
    );
    assert_eq!(records[0].perm, IOMMU_PGFAULT_PERM_READ);
    assert_eq!(records[0].dev_id, md.idev);
    assert_eq!(
        records[1].perm, IOMMU_PGFAULT_PERM_WRITE,
        "a write to a read-only page"
    );
    assert_ne!(records[0].grpid, records[1].grpid);
    assert_eq!(h.ctx.fault_queue(fault_id).unwrap().awaiting.len(), 2);
}
