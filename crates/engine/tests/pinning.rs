//! Pinning and accounting: pages pinned lazily and counted per page across
//! contexts, the locked-memory limit, the accounting modes, and a closing
//! context releasing every pin.

mod common;
use common::cmd;
use common::*;
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;

// ---- pinning and accounting ----------------------------------------------------------------

#[test]
fn pages_are_pinned_lazily_and_counted_per_page_across_contexts() {
    let mut h = Harness::new();
    let mut other = h.sibling();
    let a = cmd::ioas_alloc(&mut h).unwrap();
    let b = cmd::ioas_alloc(&mut other).unwrap();
    cmd::ioas_map_fixed(&mut h, a, BUF, 4 * PAGE, 0x10_0000).unwrap();
    cmd::ioas_map_fixed(&mut other, b, BUF + PAGE, 4 * PAGE, 0x10_0000).unwrap();
    let refs = |h: &mut Harness, n: u32| cmd::check_refs(h, BUF + PAGE, PAGE, n);
    assert_eq!(refs(&mut h, 0), Ok(()), "mapping pins nothing");
    assert_eq!(h.shared.accounting.user_locked(h.creds.uid), 0);
    let p1 = h
        .ctx
        .ioas_mut(a)
        .unwrap()
        .pin(0x10_0000, 4 * PAGE, true)
        .unwrap();
    let p2 = other
        .ctx
        .ioas_mut(b)
        .unwrap()
        .pin(0x10_0000, PAGE, false)
        .unwrap();
    assert_eq!(refs(&mut h, 2), Ok(()));
    assert_eq!(refs(&mut h, 1), Err(Errno::EIO));
    assert_eq!(
        h.shared.accounting.user_locked(h.creds.uid),
        5,
        "each context's pages charge separately"
    );
    // Unmapping a pinned area waits for the pin to go.
    assert_eq!(
        cmd::ioas_unmap(&mut h, a, 0x10_0000, 4 * PAGE),
        Err(Errno::EBUSY)
    );
    h.ctx.ioas_mut(a).unwrap().unpin(p1).unwrap();
    assert_eq!(refs(&mut h, 1), Ok(()));
    other.ctx.ioas_mut(b).unwrap().unpin(p2).unwrap();
    assert_eq!(refs(&mut h, 0), Ok(()));
    assert!(h.shared.accounting.is_idle());
    assert_eq!(
        cmd::check_refs(&mut h, BUF, 100, 0),
        Err(Errno::EINVAL),
        "not whole pages"
    );
}

#[test]
fn pins_beyond_the_locked_memory_limit_are_enomem_and_cap_ipc_lock_is_free() {
    let mut h = Harness::new();
    h.creds.memlock_limit = 8 * PAGE;
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, ioas, BUF, 16 * PAGE, 0x10_0000).unwrap();
    let first = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    assert_eq!(
        h.ctx.ioas_mut(ioas).unwrap().pin(0x10_8000, PAGE, false),
        Err(Errno::ENOMEM)
    );
    // Pinning pages already pinned charges nothing more.
    let again = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    h.ctx.ioas_mut(ioas).unwrap().unpin(again).unwrap();
    h.ctx.ioas_mut(ioas).unwrap().unpin(first).unwrap();

    let mut root = Harness::new();
    root.creds.memlock_limit = 0;
    root.creds.cap_ipc_lock = true;
    let ioas = cmd::ioas_alloc(&mut root).unwrap();
    cmd::ioas_map_fixed(&mut root, ioas, BUF, 16 * PAGE, 0x10_0000).unwrap();
    let p = root
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 16 * PAGE, false)
        .unwrap();
    assert_eq!(root.shared.accounting.user_locked(root.creds.uid), 0);
    assert_eq!(root.shared.accounting.mm(root.mem.id()).pinned_vm, 16);
    root.ctx.ioas_mut(ioas).unwrap().unpin(p).unwrap();
}

#[test]
fn mm_accounting_charges_the_process() {
    let mut h = Harness::new();
    h.creds.cap_sys_resource = true;
    cmd::option(&mut h, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1).unwrap();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, ioas, BUF, 2 * PAGE, 0x10_0000).unwrap();
    let p = h
        .ctx
        .ioas_mut(ioas)
        .unwrap()
        .pin(0x10_0000, 2 * PAGE, false)
        .unwrap();
    let mm = h.shared.accounting.mm(h.mem.id());
    assert_eq!((mm.locked_vm, mm.pinned_vm), (2, 2));
    assert_eq!(h.shared.accounting.user_locked(h.creds.uid), 0);
    h.ctx.ioas_mut(ioas).unwrap().unpin(p).unwrap();
}

#[test]
fn pinning_unmapped_or_read_only_memory_is_efault() {
    let mut h = Harness::new();
    let ioas = cmd::ioas_alloc(&mut h).unwrap();
    // Lazy: mapping memory that is not there succeeds until something pins it.
    cmd::ioas_map_fixed(&mut h, ioas, 0x4000_0000, PAGE, 0x10_0000).unwrap();
    cmd::ioas_map_fixed(&mut h, ioas, RO, PAGE, 0x20_0000).unwrap();
    let t = h.ctx.ioas_mut(ioas).unwrap();
    assert_eq!(t.pin(0x10_0000, PAGE, false), Err(Errno::EFAULT));
    assert_eq!(t.pin(0x20_0000, PAGE, true), Err(Errno::EFAULT));
    assert!(t.pin(0x20_0000, PAGE, false).is_ok());
    assert_eq!(t.pin(0x30_0000, PAGE, false), Err(Errno::ENOENT));
}

#[test]
fn closing_a_context_destroys_everything_and_releases_every_pin() {
    let mut h = Harness::new();
    let a = cmd::ioas_alloc(&mut h).unwrap();
    let b = cmd::ioas_alloc(&mut h).unwrap();
    cmd::ioas_map_fixed(&mut h, a, BUF, 8 * PAGE, 0x10_0000).unwrap();
    let mut c = IommuIoasCopy {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: 8 * PAGE,
        dst_iova: 0,
        src_iova: 0x10_0000,
    };
    h.cmd(IOMMU_IOAS_COPY, &mut c).unwrap();
    h.ctx
        .ioas_mut(a)
        .unwrap()
        .pin(0x10_0000, 8 * PAGE, false)
        .unwrap();
    h.ctx
        .ioas_mut(b)
        .unwrap()
        .pin(c.dst_iova, 8 * PAGE, false)
        .unwrap();
    assert_eq!(h.shared.pinned_frames(), 8);
    h.ctx.close();
    assert!(h.ctx.objects().is_empty());
    assert_eq!(h.shared.pinned_frames(), 0);
    assert!(h.shared.accounting.is_idle());
}
