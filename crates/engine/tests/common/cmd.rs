//! One helper per command, in the style of Linux's `iommufd_utils.h`: each
//! fills the command's struct, issues it through `Context::ioctl` (the raw
//! entry point, as a program's `ioctl` would) and returns what the command
//! answers, or its errno. A command that answers nothing else must return 0;
//! the helpers check it.
//!
//! Arrays and payloads a command points at are staged in the harness's
//! scratch region: `SCRATCH` (IOVA ranges, HWPT data), `SCRATCH + 0x100`
//! (invalidation entries), `SCRATCH + 0x4000` (dirty bitmaps). A test that
//! keeps its own bytes there must not interleave these helpers.

use super::{Harness, SCRATCH};
use softiommu_engine::Errno;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use zerocopy::IntoBytes;

type R<T> = Result<T, Errno>;

/// `IOMMU_IOAS_MAP_*`: readable and writeable.
pub const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
/// Readable and writeable at a fixed IOVA.
pub const FIXED_RW: u32 = RW | IOMMU_IOAS_MAP_FIXED_IOVA;

/// Where invalidation entries are staged.
const ENTRIES: u64 = SCRATCH + 0x100;
/// Where dirty bitmaps are read into.
const BITMAP: u64 = SCRATCH + 0x4000;

/// A command that answers nothing but success returns 0.
fn zero(r: R<i64>) -> R<()> {
    r.map(|v| assert_eq!(v, 0, "a command without a descriptor returns 0"))
}

// ---- core commands ------------------------------------------------------------------------

/// `IOMMU_DESTROY` of `id`.
pub fn destroy(h: &mut Harness, id: u32) -> R<()> {
    let mut c = IommuDestroy { size: 8, id };
    zero(h.cmd(IOMMU_DESTROY, &mut c))
}

/// `IOMMU_IOAS_ALLOC`: the new IOAS's id.
pub fn ioas_alloc(h: &mut Harness) -> R<u32> {
    let mut c = IommuIoasAlloc {
        size: 12,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_IOAS_ALLOC, &mut c))?;
    Ok(c.out_ioas_id)
}

/// `IOMMU_IOAS_MAP` of `[va, va + len)`: the IOVA used.
pub fn ioas_map(h: &mut Harness, ioas: u32, flags: u32, va: u64, len: u64, iova: u64) -> R<u64> {
    let mut c = IommuIoasMap {
        size: 40,
        flags,
        ioas_id: ioas,
        reserved: 0,
        user_va: va,
        length: len,
        iova,
    };
    zero(h.cmd(IOMMU_IOAS_MAP, &mut c))?;
    Ok(c.iova)
}

/// `IOMMU_IOAS_MAP` readable and writeable at a fixed IOVA.
pub fn ioas_map_fixed(h: &mut Harness, ioas: u32, va: u64, len: u64, iova: u64) -> R<u64> {
    ioas_map(h, ioas, FIXED_RW, va, len, iova)
}

/// `IOMMU_IOAS_MAP_FILE` of `len` bytes of descriptor `fd` from `start`: the
/// IOVA used.
pub fn ioas_map_file(
    h: &mut Harness,
    ioas: u32,
    flags: u32,
    fd: i32,
    start: u64,
    len: u64,
    iova: u64,
) -> R<u64> {
    let mut c = IommuIoasMapFile {
        size: 40,
        flags,
        ioas_id: ioas,
        fd,
        start,
        length: len,
        iova,
    };
    zero(h.cmd(IOMMU_IOAS_MAP_FILE, &mut c))?;
    Ok(c.iova)
}

/// `IOMMU_IOAS_UNMAP`: the length unmapped.
pub fn ioas_unmap(h: &mut Harness, ioas: u32, iova: u64, len: u64) -> R<u64> {
    let mut c = IommuIoasUnmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length: len,
    };
    zero(h.cmd(IOMMU_IOAS_UNMAP, &mut c))?;
    Ok(c.length)
}

/// `IOMMU_IOAS_COPY` of `[src_iova, src_iova + len)` of `src` into `dst` at
/// `dst_iova` (with `IOMMU_IOAS_MAP_FIXED_IOVA` in `flags`): the destination
/// IOVA used.
pub fn ioas_copy(
    h: &mut Harness,
    flags: u32,
    (dst, dst_iova): (u32, u64),
    (src, src_iova): (u32, u64),
    len: u64,
) -> R<u64> {
    let mut c = IommuIoasCopy {
        size: 40,
        flags,
        dst_ioas_id: dst,
        src_ioas_id: src,
        length: len,
        dst_iova,
        src_iova,
    };
    zero(h.cmd(IOMMU_IOAS_COPY, &mut c))?;
    Ok(c.dst_iova)
}

/// `IOMMU_IOAS_ALLOW_IOVAS` with `[start, last]` ranges (staged at `SCRATCH`).
pub fn ioas_allow_iovas(h: &mut Harness, ioas: u32, ranges: &[(u64, u64)]) -> R<()> {
    let v: Vec<IommuIovaRange> = ranges
        .iter()
        .map(|&(start, last)| IommuIovaRange { start, last })
        .collect();
    h.write_mem(SCRATCH, v.as_bytes());
    let mut c = IommuIoasAllowIovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: v.len() as u32,
        reserved: 0,
        allowed_iovas: SCRATCH,
    };
    zero(h.cmd(IOMMU_IOAS_ALLOW_IOVAS, &mut c))
}

/// `IOMMU_IOAS_IOVA_RANGES` with room for `num` ranges at `SCRATCH`: the
/// outcome and the struct as the command left it (`num_iovas` is set on
/// `EMSGSIZE` too).
pub fn ioas_iova_ranges(h: &mut Harness, ioas: u32, num: u32) -> (R<()>, IommuIoasIovaRanges) {
    let mut c = IommuIoasIovaRanges {
        size: 32,
        ioas_id: ioas,
        num_iovas: num,
        reserved: 0,
        allowed_iovas: SCRATCH,
        out_iova_alignment: 0,
    };
    let r = zero(h.cmd(IOMMU_IOAS_IOVA_RANGES, &mut c));
    (r, c)
}

/// `IOMMU_OPTION`: the value read or set.
pub fn option(h: &mut Harness, option_id: u32, op: u16, object: u32, val: u64) -> R<u64> {
    let mut c = IommuOption {
        size: 24,
        option_id,
        op,
        reserved: 0,
        object_id: object,
        val64: val,
    };
    zero(h.cmd(IOMMU_OPTION, &mut c))?;
    Ok(c.val64)
}

/// `IOMMU_OPTION_HUGE_PAGES` of `ioas` set to `on`.
pub fn set_huge_pages(h: &mut Harness, ioas: u32, on: bool) -> R<()> {
    let op = IOMMU_OPTION_OP_SET;
    option(h, IOMMU_OPTION_HUGE_PAGES, op, ioas, u64::from(on)).map(|_| ())
}

/// `IOMMU_OPTION_HUGE_PAGES` of `ioas` as read.
pub fn huge_pages(h: &mut Harness, ioas: u32) -> R<u64> {
    option(h, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, 0)
}

/// `IOMMU_VFIO_IOAS`: the IOAS id the command answers.
pub fn vfio_ioas(h: &mut Harness, op: u16, ioas: u32) -> R<u32> {
    let mut c = IommuVfioIoas {
        size: 12,
        ioas_id: ioas,
        op,
        reserved: 0,
    };
    zero(h.cmd(IOMMU_VFIO_IOAS, &mut c))?;
    Ok(c.ioas_id)
}

// ---- HWPTs, vIOMMUs, queues ---------------------------------------------------------------

/// `IOMMU_HWPT_ALLOC` of a paging HWPT over `pt`: its id.
pub fn hwpt_alloc(h: &mut Harness, dev: u32, pt: u32, flags: u32) -> R<u32> {
    let mut c = IommuHwptAlloc {
        size: 48,
        dev_id: dev,
        pt_id: pt,
        flags,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_HWPT_ALLOC, &mut c))?;
    Ok(c.out_hwpt_id)
}

/// `IOMMU_HWPT_ALLOC` of a mock nested HWPT over `parent` (a nest parent or a
/// vIOMMU) with the default IOTLB value, staged at `SCRATCH`; `fault_id` is
/// used with `IOMMU_HWPT_FAULT_ID_VALID` in `flags`. Its id.
pub fn hwpt_alloc_nested(
    h: &mut Harness,
    dev: u32,
    parent: u32,
    flags: u32,
    fault_id: u32,
) -> R<u32> {
    h.write_mem(SCRATCH, &t::IOMMU_TEST_IOTLB_DEFAULT.to_ne_bytes());
    let mut c = IommuHwptAlloc {
        size: 48,
        flags,
        dev_id: dev,
        pt_id: parent,
        data_type: t::IOMMU_HWPT_DATA_SELFTEST,
        data_len: 4,
        data_uptr: SCRATCH,
        fault_id,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_HWPT_ALLOC, &mut c))?;
    Ok(c.out_hwpt_id)
}

/// `IOMMU_HWPT_INVALIDATE` of HWPT or vIOMMU `id` with `entries` written one
/// after another (staged at `SCRATCH + 0x100`) and `entry_len` declared: the
/// outcome and `entry_num` as returned (the entries handled).
pub fn hwpt_invalidate<const N: usize>(
    h: &mut Harness,
    id: u32,
    data_type: u32,
    entry_len: u32,
    entries: &[[u32; N]],
) -> (R<()>, u32) {
    let bytes: Vec<u8> = entries
        .iter()
        .flat_map(|e| e.iter().flat_map(|w| w.to_ne_bytes()))
        .collect();
    h.write_mem(ENTRIES, &bytes);
    let mut c = IommuHwptInvalidate {
        size: 32,
        hwpt_id: id,
        data_uptr: ENTRIES,
        data_type,
        entry_len,
        entry_num: entries.len() as u32,
        reserved: 0,
    };
    let r = zero(h.cmd(IOMMU_HWPT_INVALIDATE, &mut c));
    (r, c.entry_num)
}

/// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
pub fn set_dirty_tracking(h: &mut Harness, hwpt: u32, on: bool) -> R<()> {
    let mut c = IommuHwptSetDirtyTracking {
        size: 16,
        flags: u32::from(on),
        hwpt_id: hwpt,
        reserved: 0,
    };
    zero(h.cmd(IOMMU_HWPT_SET_DIRTY_TRACKING, &mut c))
}

/// `IOMMU_HWPT_GET_DIRTY_BITMAP` into a zeroed bitmap at `SCRATCH + 0x4000`:
/// the bitmap's bytes.
pub fn get_dirty_bitmap(
    h: &mut Harness,
    hwpt: u32,
    iova: u64,
    length: u64,
    page_size: u64,
    flags: u32,
) -> R<Vec<u8>> {
    let bytes = (length / page_size).div_ceil(8) as usize;
    h.write_mem(BITMAP, &vec![0; bytes]);
    let mut c = IommuHwptGetDirtyBitmap {
        size: 48,
        hwpt_id: hwpt,
        flags,
        reserved: 0,
        iova,
        length,
        page_size,
        data: BITMAP,
    };
    zero(h.cmd(IOMMU_HWPT_GET_DIRTY_BITMAP, &mut c))?;
    Ok(h.read_mem(BITMAP, bytes))
}

/// `IOMMU_VIOMMU_ALLOC` without driver data: its id.
pub fn viommu_alloc(h: &mut Harness, dev: u32, hwpt: u32, ty: u32) -> R<u32> {
    let mut c = IommuViommuAlloc {
        size: 32,
        viommu_type: ty,
        dev_id: dev,
        hwpt_id: hwpt,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_VIOMMU_ALLOC, &mut c))?;
    Ok(c.out_viommu_id)
}

/// `IOMMU_VDEVICE_ALLOC`: its id.
pub fn vdevice_alloc(h: &mut Harness, viommu: u32, dev: u32, virt_id: u64) -> R<u32> {
    let mut c = IommuVdeviceAlloc {
        size: 24,
        viommu_id: viommu,
        dev_id: dev,
        virt_id,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_VDEVICE_ALLOC, &mut c))?;
    Ok(c.out_vdevice_id)
}

/// `IOMMU_FAULT_QUEUE_ALLOC`: the queue's id and descriptor.
pub fn fault_alloc(h: &mut Harness) -> R<(u32, i32)> {
    let mut c = IommuFaultAlloc {
        size: 16,
        ..Default::default()
    };
    zero(h.cmd(IOMMU_FAULT_QUEUE_ALLOC, &mut c))?;
    Ok((c.out_fault_id, c.out_fault_fd as i32))
}

// ---- the selftest's IOMMU_TEST_CMD --------------------------------------------------------

/// Runs selftest op `op` on object `id`; `fill` sets the payload. The struct
/// as the command left it.
pub fn test_cmd(
    h: &mut Harness,
    op: u32,
    id: u32,
    fill: impl FnOnce(&mut IommuTestCmd),
) -> R<IommuTestCmd> {
    let mut c = IommuTestCmd {
        size: 72,
        op,
        id,
        ..Default::default()
    };
    fill(&mut c);
    h.cmd(IOMMU_TEST_CMD, &mut c).map(|_| c)
}

/// [`test_cmd`] for an op that answers nothing but success.
fn test_op(h: &mut Harness, op: u32, id: u32, fill: impl FnOnce(&mut IommuTestCmd)) -> R<()> {
    let mut c = IommuTestCmd {
        size: 72,
        op,
        id,
        ..Default::default()
    };
    fill(&mut c);
    zero(h.cmd(IOMMU_TEST_CMD, &mut c))
}

/// What `MOCK_DOMAIN` makes: the selftest object holding the device, the
/// HWPT it attached to, and the device.
#[derive(Clone, Copy, Debug)]
pub struct MockDomain {
    pub stdev: u32,
    pub hwpt: u32,
    pub idev: u32,
}

/// `MOCK_DOMAIN_FLAGS` (`MOCK_DOMAIN` when `dev_flags` is 0): a new mock
/// device attached to `pt`.
pub fn mock_domain_flags(h: &mut Harness, pt: u32, dev_flags: u32) -> R<MockDomain> {
    let op = if dev_flags == 0 {
        t::op::MOCK_DOMAIN
    } else {
        t::op::MOCK_DOMAIN_FLAGS
    };
    let c = test_cmd(h, op, pt, |c| {
        if dev_flags != 0 {
            c.set_payload(&t::TestMockDomain {
                dev_flags,
                ..Default::default()
            })
        }
    })?;
    let md: t::TestMockDomain = c.payload_as();
    Ok(MockDomain {
        stdev: md.out_stdev_id,
        hwpt: md.out_hwpt_id,
        idev: md.out_idev_id,
    })
}

/// `MOCK_DOMAIN`: a new mock device attached to `pt`.
pub fn mock_domain(h: &mut Harness, pt: u32) -> R<MockDomain> {
    mock_domain_flags(h, pt, 0)
}

/// `MOCK_DOMAIN_REPLACE`: the HWPT the device is attached to now.
pub fn mock_domain_replace(h: &mut Harness, stdev: u32, pt: u32) -> R<u32> {
    test_cmd(h, t::op::MOCK_DOMAIN_REPLACE, stdev, |c| {
        c.set_payload(&t::TestOneId { id: pt })
    })
    .map(|c| c.payload_as::<t::TestOneId>().id)
}

/// `ADD_RESERVED` of `[start, start + length)` in `ioas`.
pub fn add_reserved(h: &mut Harness, ioas: u32, start: u64, length: u64) -> R<()> {
    test_op(h, t::op::ADD_RESERVED, ioas, |c| {
        c.set_payload(&t::TestAddReserved { start, length })
    })
}

/// `MD_CHECK_MAP`: `hwpt`'s table maps `[iova, iova + len)` to the memory at
/// `uptr`.
pub fn check_map(h: &mut Harness, hwpt: u32, iova: u64, len: u64, uptr: u64) -> R<()> {
    test_op(h, t::op::MD_CHECK_MAP, hwpt, |c| {
        c.set_payload(&t::TestCheckMap {
            iova,
            length: len,
            uptr,
        })
    })
}

/// `MD_CHECK_REFS`: every page of `[uptr, uptr + len)` is pinned `refs` times.
pub fn check_refs(h: &mut Harness, uptr: u64, len: u64, refs: u32) -> R<()> {
    test_op(h, t::op::MD_CHECK_REFS, 0, |c| {
        c.set_payload(&t::TestCheckRefs {
            length: len,
            uptr,
            refs,
            pad: 0,
        })
    })
}

/// `MD_CHECK_IOTLB`: entry `id` of nested `hwpt`'s IOTLB holds `value`.
pub fn check_iotlb(h: &mut Harness, hwpt: u32, id: u32, value: u32) -> R<()> {
    test_op(h, t::op::MD_CHECK_IOTLB, hwpt, |c| {
        c.set_payload(&t::TestCheckCache { id, value })
    })
}

/// `DEV_CHECK_CACHE`: entry `id` of device `dev`'s cache holds `value`.
pub fn dev_check_cache(h: &mut Harness, dev: u32, id: u32, value: u32) -> R<()> {
    test_op(h, t::op::DEV_CHECK_CACHE, dev, |c| {
        c.set_payload(&t::TestCheckCache { id, value })
    })
}

/// `DMABUF_GET`: a mock dma-buf of `length` bytes; its descriptor (the
/// ioctl's return value).
pub fn dmabuf_get(h: &mut Harness, length: u32) -> R<i32> {
    let mut c = IommuTestCmd {
        size: 72,
        op: t::op::DMABUF_GET,
        ..Default::default()
    };
    c.set_payload(&t::TestDmabufGet {
        length,
        open_flags: 0,
    });
    h.cmd(IOMMU_TEST_CMD, &mut c).map(|fd| fd as i32)
}

/// `CREATE_ACCESS` on `ioas`: the access's descriptor.
pub fn create_access(h: &mut Harness, ioas: u32, flags: u32) -> R<u32> {
    test_cmd(h, t::op::CREATE_ACCESS, ioas, |c| {
        c.set_payload(&t::TestCreateAccess {
            out_access_fd: 0,
            flags,
        })
    })
    .map(|c| c.payload_as::<t::TestCreateAccess>().out_access_fd)
}

/// `ACCESS_PAGES`: pins `[iova, iova + length)` through access `fd`, checked
/// against the memory at `uptr`; the pin's id.
pub fn access_pages(h: &mut Harness, fd: u32, iova: u64, length: u64, uptr: u64) -> R<u32> {
    test_cmd(h, t::op::ACCESS_PAGES, fd, |c| {
        c.set_payload(&t::TestAccessPages {
            flags: 0,
            out_access_pages_id: 0,
            iova,
            length,
            uptr,
        })
    })
    .map(|c| c.payload_as::<t::TestAccessPages>().out_access_pages_id)
}

/// `DESTROY_ACCESS_PAGES`: releases pin `item` of access `fd`.
pub fn destroy_access_pages(h: &mut Harness, fd: u32, item: u32) -> R<()> {
    test_op(h, t::op::DESTROY_ACCESS_PAGES, fd, |c| {
        c.set_payload(&t::TestOneId { id: item })
    })
}

/// `ACCESS_RW`: access `fd` copies between `[iova, iova + length)` and the
/// memory at `uptr`.
pub fn access_rw(h: &mut Harness, fd: u32, iova: u64, length: u64, uptr: u64, flags: u32) -> R<()> {
    test_op(h, t::op::ACCESS_RW, fd, |c| {
        c.set_payload(&t::TestAccessRw {
            iova,
            length,
            uptr,
            flags,
            pad: 0,
        })
    })
}

/// `ACCESS_REPLACE_IOAS`: access `fd` moves to `ioas`.
pub fn access_replace_ioas(h: &mut Harness, fd: u32, ioas: u32) -> R<()> {
    test_op(h, t::op::ACCESS_REPLACE_IOAS, fd, |c| {
        c.set_payload(&t::TestOneId { id: ioas })
    })
}

/// `DIRTY`: marks the pages of `[iova, iova + length)` whose bits are set in
/// the bitmap at `uptr`; the number marked.
pub fn mock_dirty(
    h: &mut Harness,
    hwpt: u32,
    iova: u64,
    length: u64,
    page_size: u64,
    uptr: u64,
) -> R<u64> {
    test_cmd(h, t::op::DIRTY, hwpt, |c| {
        c.set_payload(&t::TestDirty {
            iova,
            length,
            page_size,
            uptr,
            ..Default::default()
        })
    })
    .map(|c| c.payload_as::<t::TestDirty>().out_nr_dirty)
}

/// `TRIGGER_IOPF`: device `dev` takes a read-write fault at `addr` (group 2).
pub fn trigger_iopf(h: &mut Harness, dev: u32, pasid: u32, addr: u64) -> R<()> {
    test_op(h, t::op::TRIGGER_IOPF, 0, |c| {
        c.set_payload(&t::TestTriggerIopf {
            dev_id: dev,
            pasid,
            grpid: 2,
            perm: IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE,
            addr,
        })
    })
}

/// `TRIGGER_VEVENT`: device `dev` raises a virtual event.
pub fn trigger_vevent(h: &mut Harness, dev: u32) -> R<()> {
    test_op(h, t::op::TRIGGER_VEVENT, 0, |c| {
        c.set_payload(&t::TestOneId { id: dev })
    })
}
