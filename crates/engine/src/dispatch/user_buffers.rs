//! Which of the caller's buffers an ioctl will read or write, told from its
//! struct alone: what a transport copies before the call takes any lock
//! (see [`PrefetchedMemory`](crate::memory::PrefetchedMemory)).
//!
//! Only the buffers of iommufd's own commands (and the selftest's copies)
//! are listed; a command not listed reads its buffers while it runs.

use softiommu_uapi::ioctl::iommufd_request;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use zerocopy::FromBytes;

/// One buffer a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserBuffer {
    /// Its address in the caller's memory.
    pub addr: u64,
    /// Its length as the struct gives it (nothing is checked here).
    pub len: u64,
    /// Whether the call may write it (a buffer it only reads may sit in
    /// read-only memory).
    pub written: bool,
}

/// The buffers ioctl `request` with struct `bytes` (as the caller passed
/// them, however long) reads or writes outside the struct.
pub fn user_buffers(request: u32, bytes: &[u8]) -> Vec<UserBuffer> {
    if request & !0xff != iommufd_request(0) {
        return Vec::new();
    }
    let array = |base: u64, count: u32, each: u64, written: bool| {
        vec![UserBuffer {
            addr: base,
            len: u64::from(count) * each,
            written,
        }]
    };
    match (request & 0xff) as u8 {
        nr::IOAS_ALLOW_IOVAS => {
            let c: IommuIoasAllowIovas = read(bytes);
            array(c.allowed_iovas, c.num_iovas, 16, false)
        }
        nr::IOAS_IOVA_RANGES => {
            let c: IommuIoasIovaRanges = read(bytes);
            array(c.allowed_iovas, c.num_iovas, 16, true)
        }
        nr::HWPT_ALLOC => {
            let c: IommuHwptAlloc = read(bytes);
            array(c.data_uptr, c.data_len, 1, false)
        }
        nr::GET_HW_INFO => {
            let c: IommuHwInfo = read(bytes);
            array(c.data_uptr, c.data_len, 1, true)
        }
        nr::HWPT_INVALIDATE => {
            let c: IommuHwptInvalidate = read(bytes);
            array(c.data_uptr, c.entry_num, u64::from(c.entry_len), false)
        }
        nr::VIOMMU_ALLOC => {
            // Some vIOMMU types write their data back (the selftest's).
            let c: IommuViommuAlloc = read(bytes);
            array(c.data_uptr, c.data_len, 1, true)
        }
        nr::HWPT_GET_DIRTY_BITMAP => {
            let c: IommuHwptGetDirtyBitmap = read(bytes);
            bitmap(c.data, c.length, c.page_size)
        }
        nr::TEST_CMD => {
            let c: IommuTestCmd = read(bytes);
            match c.op {
                t::op::ACCESS_RW => {
                    let p: t::TestAccessRw = c.payload_as();
                    vec![UserBuffer {
                        addr: p.uptr,
                        len: p.length,
                        written: true,
                    }]
                }
                t::op::DIRTY => {
                    let p: t::TestDirty = c.payload_as();
                    bitmap(p.uptr, p.length, p.page_size)
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// A bitmap of one bit per `page_size` of `length` bytes at `data`.
fn bitmap(data: u64, length: u64, page_size: u64) -> Vec<UserBuffer> {
    match length.checked_div(page_size) {
        Some(pages) => vec![UserBuffer {
            addr: data,
            len: pages.div_ceil(8),
            written: true,
        }],
        None => Vec::new(),
    }
}

/// `T` from the front of `bytes`, zero-extended when they are shorter.
fn read<T: FromBytes + zerocopy::IntoBytes>(bytes: &[u8]) -> T {
    let mut value = T::new_zeroed();
    let out = value.as_mut_bytes();
    let n = out.len().min(bytes.len());
    out[..n].copy_from_slice(&bytes[..n]);
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use softiommu_uapi::ioctl::*;
    use zerocopy::IntoBytes;

    #[test]
    fn the_buffers_come_from_the_struct() {
        let c = IommuIoasAllowIovas {
            size: 24,
            num_iovas: 3,
            allowed_iovas: 0x5000,
            ..Default::default()
        };
        let request = IOMMU_IOAS_ALLOW_IOVAS;
        let input = |addr, len| UserBuffer {
            addr,
            len,
            written: false,
        };
        assert_eq!(user_buffers(request, c.as_bytes()), [input(0x5000, 48)]);
        // A shorter struct reads as zero past its end.
        assert_eq!(user_buffers(request, &c.as_bytes()[..16]), [input(0, 48)]);
        let d = IommuHwptGetDirtyBitmap {
            length: 64 << 12,
            page_size: 4096,
            data: 0x7000,
            ..Default::default()
        };
        let bitmap = UserBuffer {
            addr: 0x7000,
            len: 8,
            written: true,
        };
        assert_eq!(
            user_buffers(IOMMU_HWPT_GET_DIRTY_BITMAP, d.as_bytes()),
            [bitmap]
        );
        let no_page_size = IommuHwptGetDirtyBitmap { page_size: 0, ..d };
        assert!(user_buffers(IOMMU_HWPT_GET_DIRTY_BITMAP, no_page_size.as_bytes()).is_empty());
        assert!(user_buffers(IOMMU_IOAS_MAP, &[0; 40]).is_empty());
        assert!(
            user_buffers(0x3b64, &[0; 40]).is_empty(),
            "VFIO's are not listed"
        );
    }
}
