//! The raw entry point: an ioctl request number and its argument, decoded with
//! Linux's extensible-struct rules (`iommufd_fops_ioctl`):
//!
//! - the first `u32` of the argument is its size (unreadable → `EFAULT`);
//! - a number inside the command table that names no command → `ENOTTY`;
//! - size below the command's minimum → `EINVAL`;
//! - bytes past the struct this ABI knows must be zero (`E2BIG`), and then the
//!   call behaves exactly as with the known size;
//! - results are copied back as `min(user size, struct size)` bytes;
//! - numbers below the table go to the VFIO compatibility ioctls, and unknown
//!   ones there are `ENOTTY` too.
//!
//! The argument is either a pointer into the caller's memory ([`Arg::User`]) or
//! a byte buffer the caller hands over ([`Arg::Bytes`]). Pointers embedded in
//! the structs always refer to the caller's memory.

use crate::context::{Caller, Context, MapArgs};
use crate::errno::{Errno, Result};
use crate::iopt::{Prot, ULONG_MAX};
use softiommu_uapi::ioctl::command_info;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::{self as t, IommuTestCmd};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// An ioctl argument.
#[derive(Debug)]
pub enum Arg<'b> {
    /// The raw argument value: a pointer into the caller's memory, or for the
    /// integer-argument VFIO ioctls, the integer itself.
    User(u64),
    /// The argument struct's bytes. For integer-argument ioctls the integer is
    /// read from the first 8 bytes (little-endian).
    Bytes(&'b mut [u8]),
}

impl Arg<'_> {
    pub(crate) fn read(&self, caller: &Caller<'_>, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self {
            Arg::User(ptr) => caller
                .mem
                .read(ptr.checked_add(offset).ok_or(Errno::EFAULT)?, buf),
            Arg::Bytes(bytes) => {
                let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
                let src = bytes
                    .get(start..start.checked_add(buf.len()).ok_or(Errno::EFAULT)?)
                    .ok_or(Errno::EFAULT)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }

    pub(crate) fn write(&mut self, caller: &Caller<'_>, offset: u64, buf: &[u8]) -> Result<()> {
        match self {
            Arg::User(ptr) => caller
                .mem
                .write(ptr.checked_add(offset).ok_or(Errno::EFAULT)?, buf),
            Arg::Bytes(bytes) => {
                let start = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
                let end = start.checked_add(buf.len()).ok_or(Errno::EFAULT)?;
                bytes
                    .get_mut(start..end)
                    .ok_or(Errno::EFAULT)?
                    .copy_from_slice(buf);
                Ok(())
            }
        }
    }

    pub(crate) fn value(&self) -> u64 {
        match self {
            Arg::User(v) => *v,
            Arg::Bytes(bytes) => {
                let mut raw = [0u8; 8];
                let n = bytes.len().min(8);
                raw[..n].copy_from_slice(&bytes[..n]);
                u64::from_le_bytes(raw)
            }
        }
    }
}

/// One decoded command in flight (Linux `struct iommufd_ucmd`).
pub(crate) struct Ucmd<'a, 'b> {
    pub caller: &'a Caller<'a>,
    pub arg: Arg<'b>,
    pub user_size: u32,
    /// The struct, zero-extended or truncated to the size this ABI knows.
    pub buf: Vec<u8>,
    /// The ioctl's return value on success (0 but for `DMABUF_GET`, which
    /// returns a descriptor).
    pub ret: i64,
}

impl Ucmd<'_, '_> {
    pub fn cmd<T: FromBytes>(&self) -> T {
        match T::read_from_prefix(&self.buf) {
            Ok((v, _)) => v,
            Err(_) => unreachable!("the buffer has the command's full size"),
        }
    }

    /// Copies `cmd` back as `min(user size, size of T)` bytes.
    pub fn respond<T: IntoBytes + Immutable>(&mut self, cmd: &T) -> Result<()> {
        let bytes = cmd.as_bytes();
        let n = bytes.len().min(self.user_size as usize);
        self.arg.write(self.caller, 0, &bytes[..n])
    }
}

/// Bytes read per step when checking a long zero tail.
const TAIL_CHUNK: usize = 4096;

impl Context {
    /// Runs ioctl `request` with `arg`, as `/dev/iommu` would. Returns the
    /// ioctl's non-negative result or the errno.
    pub fn ioctl(&mut self, caller: &Caller<'_>, request: u32, arg: Arg<'_>) -> Result<i64> {
        let nr = (request & 0xff) as u8;
        let info = match command_info(nr) {
            Ok(None) => return self.vfio_ioctl(caller, request, arg),
            Ok(Some(info)) => Some(info),
            Err(()) => None,
        };
        // One read usually brings both the size and the struct: try the
        // command's full size first, and fall back to reading the size alone
        // (the struct may end right before unmapped memory).
        let mut buf = vec![0u8; info.map_or(4, |i| i.size.max(4))];
        let whole =
            info.is_some_and(|i| i.request == request) && arg.read(caller, 0, &mut buf).is_ok();
        if !whole {
            arg.read(caller, 0, &mut buf[..4])?;
        }
        let user_size = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let info = match info {
            Some(info) if info.request == request => info,
            _ => return Err(Errno::ENOTTY),
        };
        if (user_size as usize) < info.min_size {
            return Err(Errno::EINVAL);
        }
        let copy = info.size.min(user_size as usize);
        if whole {
            // Bytes past the user's size are not the user's: they read as zero.
            buf[copy..].fill(0);
        } else {
            buf.resize(info.size, 0);
            arg.read(caller, 0, &mut buf[..copy])?;
        }
        let mut offset = info.size;
        let mut chunk = [0u8; TAIL_CHUNK];
        while offset < user_size as usize {
            let n = (user_size as usize - offset).min(TAIL_CHUNK);
            arg.read(caller, offset as u64, &mut chunk[..n])?;
            if chunk[..n].iter().any(|&b| b != 0) {
                return Err(Errno::E2BIG);
            }
            offset += n;
        }
        let mut ucmd = Ucmd {
            caller,
            arg,
            user_size,
            buf,
            ret: 0,
        };
        self.execute(nr, &mut ucmd).map(|()| ucmd.ret)
    }

    fn execute(&mut self, nr: u8, u: &mut Ucmd<'_, '_>) -> Result<()> {
        match nr {
            nr::DESTROY => self.cmd_destroy(u)?,
            nr::IOAS_ALLOC => self.cmd_ioas_alloc(u)?,
            nr::IOAS_ALLOW_IOVAS => self.cmd_allow_iovas(u)?,
            nr::IOAS_COPY => self.cmd_copy(u)?,
            nr::IOAS_IOVA_RANGES => self.cmd_iova_ranges(u)?,
            nr::IOAS_MAP => self.cmd_map(u)?,
            nr::IOAS_UNMAP => self.cmd_unmap(u)?,
            nr::OPTION => self.cmd_option(u)?,
            nr::VFIO_IOAS => self.cmd_vfio_ioas(u)?,
            nr::HWPT_ALLOC => self.cmd_hwpt_alloc(u)?,
            nr::GET_HW_INFO => self.cmd_get_hw_info(u)?,
            nr::HWPT_SET_DIRTY_TRACKING => self.cmd_set_dirty_tracking(u)?,
            nr::HWPT_GET_DIRTY_BITMAP => self.cmd_get_dirty_bitmap(u)?,
            nr::HWPT_INVALIDATE => self.cmd_invalidate(u)?,
            nr::FAULT_QUEUE_ALLOC => self.cmd_fault_alloc(u)?,
            nr::IOAS_MAP_FILE => self.cmd_map_file(u)?,
            nr::VIOMMU_ALLOC => self.cmd_viommu_alloc(u)?,
            nr::VDEVICE_ALLOC => self.cmd_vdevice_alloc(u)?,
            nr::IOAS_CHANGE_PROCESS => self.cmd_change_process(u)?,
            nr::VEVENTQ_ALLOC => self.cmd_veventq_alloc(u)?,
            nr::HW_QUEUE_ALLOC => self.cmd_hw_queue_alloc(u)?,
            nr::TEST_CMD => return self.cmd_test(u),
            _ => return Err(Errno::ENOTTY),
        }
        Ok(())
    }
}

const MAP_FLAGS: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

fn map_args(flags: u32, iova: u64, length: u64) -> Result<MapArgs> {
    if flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE) == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(MapArgs {
        iova: (flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0).then_some(iova),
        length,
        prot: Prot {
            read: flags & IOMMU_IOAS_MAP_READABLE != 0,
            write: flags & IOMMU_IOAS_MAP_WRITEABLE != 0,
        },
    })
}

impl Context {
    fn cmd_destroy(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuDestroy = u.cmd();
        // A region the caller has mapped holds its owner.
        if self
            .mmap_regions_of(cmd.id)
            .any(|r| u.caller.files.region_mapped(r.region_id))
        {
            return Err(Errno::EBUSY);
        }
        self.destroy(cmd.id)
    }

    fn cmd_ioas_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasAlloc = u.cmd();
        if cmd.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let id = self.ioas_alloc()?;
        cmd.out_ioas_id = id;
        if let Err(e) = u.respond(&cmd) {
            // Not yet visible to user space: abort the creation.
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_allow_iovas(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuIoasAllowIovas = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        self.objects.ioas(cmd.ioas_id)?;
        let mut ranges = Vec::new();
        for i in 0..u64::from(cmd.num_iovas) {
            let mut r = IommuIovaRange::default();
            let at = cmd.allowed_iovas.checked_add(i * 16).ok_or(Errno::EFAULT)?;
            u.caller.mem.read(at, r.as_mut_bytes())?;
            // Linux checks each range as it loads it, before the next read.
            if r.start >= r.last || ranges.iter().any(|&(s, l)| r.start <= l && s <= r.last) {
                return Err(Errno::EINVAL);
            }
            ranges.push((r.start, r.last));
        }
        self.ioas_allow_iovas(cmd.ioas_id, &ranges)
    }

    fn cmd_copy(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasCopy = u.cmd();
        if cmd.flags & !MAP_FLAGS != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.length == ULONG_MAX || cmd.src_iova == ULONG_MAX || cmd.dst_iova == ULONG_MAX {
            return Err(Errno::EOVERFLOW);
        }
        let args = map_args(cmd.flags, cmd.dst_iova, cmd.length)?;
        cmd.dst_iova = self.ioas_copy(cmd.dst_ioas_id, cmd.src_ioas_id, cmd.src_iova, args)?;
        u.respond(&cmd)
    }

    fn cmd_iova_ranges(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasIovaRanges = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let iopt = self.ioas(cmd.ioas_id)?;
        let max = cmd.num_iovas;
        let ranges = iopt.usable_ranges();
        cmd.out_iova_alignment = iopt.iova_alignment();
        for (i, &(start, last)) in ranges.iter().enumerate().take(max as usize) {
            let r = IommuIovaRange { start, last };
            let at = cmd
                .allowed_iovas
                .checked_add(i as u64 * 16)
                .ok_or(Errno::EFAULT)?;
            u.caller.mem.write(at, r.as_bytes())?;
        }
        cmd.num_iovas = ranges.len() as u32;
        u.respond(&cmd)?;
        if cmd.num_iovas > max {
            return Err(Errno::EMSGSIZE);
        }
        Ok(())
    }

    fn cmd_map(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasMap = u.cmd();
        if cmd.flags & !MAP_FLAGS != 0 || cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.iova == ULONG_MAX || cmd.length == ULONG_MAX {
            return Err(Errno::EOVERFLOW);
        }
        let args = map_args(cmd.flags, cmd.iova, cmd.length)?;
        let caller = u.caller;
        cmd.iova = self.ioas_map(caller, cmd.ioas_id, cmd.user_va, args)?;
        u.respond(&cmd)
    }

    fn cmd_map_file(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasMapFile = u.cmd();
        if cmd.flags & !MAP_FLAGS != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.iova == ULONG_MAX || cmd.length == ULONG_MAX {
            return Err(Errno::EOVERFLOW);
        }
        let args = map_args(cmd.flags, cmd.iova, cmd.length)?;
        self.objects.ioas(cmd.ioas_id)?;
        // Linux checks the range before it looks at the descriptor.
        if cmd.length == 0 {
            return Err(Errno::EINVAL);
        }
        cmd.start
            .checked_add(cmd.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        let file = match self.dmabuf_of(u.caller, cmd.fd)? {
            Some(memory) => memory,
            None => u.caller.files.resolve(cmd.fd)?,
        };
        let caller = u.caller;
        cmd.iova = self.ioas_map_file(caller, cmd.ioas_id, file, cmd.start, args)?;
        u.respond(&cmd)
    }

    fn cmd_unmap(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasUnmap = u.cmd();
        cmd.length = self.ioas_unmap(cmd.ioas_id, cmd.iova, cmd.length)?;
        u.respond(&cmd)
    }

    fn cmd_option(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuOption = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        match cmd.option_id {
            IOMMU_OPTION_RLIMIT_MODE => {
                if cmd.object_id != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                match cmd.op {
                    IOMMU_OPTION_OP_GET => cmd.val64 = u64::from(self.account_mm),
                    IOMMU_OPTION_OP_SET => {
                        if !u.caller.creds.cap_sys_resource {
                            return Err(Errno::EPERM);
                        }
                        if !self.objects.is_empty() {
                            return Err(Errno::EBUSY);
                        }
                        self.account_mm = match cmd.val64 {
                            0 => false,
                            1 => true,
                            _ => return Err(Errno::EINVAL),
                        };
                    }
                    _ => return Err(Errno::EOPNOTSUPP),
                }
            }
            IOMMU_OPTION_HUGE_PAGES => {
                let iopt = self.ioas_mut(cmd.object_id)?;
                match cmd.op {
                    IOMMU_OPTION_OP_GET => cmd.val64 = u64::from(!iopt.large_pages_disabled()),
                    IOMMU_OPTION_OP_SET => match cmd.val64 {
                        0 => iopt.disable_large_pages()?,
                        1 => iopt.enable_large_pages(),
                        _ => return Err(Errno::EINVAL),
                    },
                    _ => return Err(Errno::EOPNOTSUPP),
                }
            }
            _ => return Err(Errno::EOPNOTSUPP),
        }
        // Linux writes back val64 alone.
        u.arg.write(u.caller, 16, &cmd.val64.to_ne_bytes())
    }

    fn cmd_vfio_ioas(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuVfioIoas = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        match cmd.op {
            IOMMU_VFIO_IOAS_GET => {
                cmd.ioas_id = self.compat_ioas()?;
                u.respond(&cmd)
            }
            IOMMU_VFIO_IOAS_SET => {
                self.objects.ioas(cmd.ioas_id)?;
                self.vfio_ioas = Some(cmd.ioas_id);
                Ok(())
            }
            IOMMU_VFIO_IOAS_CLEAR => {
                self.vfio_ioas = None;
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// The compatibility IOAS, or `ENODEV`.
    pub(crate) fn compat_ioas(&self) -> Result<u32> {
        self.vfio_ioas
            .filter(|&id| self.objects.ioas(id).is_ok())
            .ok_or(Errno::ENODEV)
    }

    fn cmd_change_process(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuIoasChangeProcess = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let caller = u.caller;
        self.ioas_change_process(caller)
    }

    // The commands below act on devices, HWPTs and vIOMMUs: they validate their
    // arguments in Linux's order before looking their objects up.

    fn cmd_hwpt_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        use crate::object::ObjectType;
        let mut cmd: IommuHwptAlloc = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if (cmd.data_type == IOMMU_HWPT_DATA_NONE) != (cmd.data_len == 0) {
            return Err(Errno::EINVAL);
        }
        self.objects.device(cmd.dev_id)?;
        let valid = IOMMU_HWPT_ALLOC_NEST_PARENT
            | IOMMU_HWPT_ALLOC_DIRTY_TRACKING
            | IOMMU_HWPT_FAULT_ID_VALID
            | IOMMU_HWPT_ALLOC_PASID;
        let with_fault = cmd.flags & IOMMU_HWPT_FAULT_ID_VALID != 0;
        let kind = self.objects.kind(cmd.pt_id);
        let id = match kind {
            Some(ObjectType::Ioas) => {
                if cmd.flags & !valid != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                // A nest parent takes no fault handler.
                if with_fault && cmd.flags & IOMMU_HWPT_ALLOC_NEST_PARENT != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let flags = softiommu_iommu::domain::PagingFlags {
                    nest_parent: cmd.flags & IOMMU_HWPT_ALLOC_NEST_PARENT != 0,
                    dirty_tracking: cmd.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0,
                };
                let pgsize = self.paging_data(u.caller, &cmd, flags)?;
                self.hwpt_alloc_sized(cmd.dev_id, cmd.pt_id, flags, pgsize)?
            }
            // A nested HWPT over a nest parent, or made through a vIOMMU.
            Some(ObjectType::HwptPaging | ObjectType::Viommu) => {
                // Nested HWPTs take a fault queue and the PASID flag.
                let via_viommu = kind == Some(ObjectType::Viommu);
                let nested_flags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
                if cmd.flags & !nested_flags != 0 || (!via_viommu && cmd.data_len == 0) {
                    return Err(Errno::EOPNOTSUPP);
                }
                let mem = u.caller.mem;
                let read = || {
                    let mut data = vec![0u8; cmd.data_len as usize];
                    mem.read(cmd.data_uptr, &mut data).map(|()| data)
                };
                if via_viommu {
                    self.viommu_alloc_nested(cmd.dev_id, cmd.pt_id, cmd.data_type, read)?
                } else {
                    self.hwpt_alloc_nested(cmd.dev_id, cmd.pt_id, cmd.data_type, read)?
                }
            }
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        };
        if cmd.flags & IOMMU_HWPT_ALLOC_PASID != 0 {
            self.set_pasid_compat(id);
        }
        // As in Linux, the fault queue is looked up once the HWPT exists.
        let fault = match with_fault {
            true => self.hwpt_set_fault(id, cmd.fault_id),
            false => Ok(()),
        };
        cmd.out_hwpt_id = id;
        if let Err(e) = fault.and_then(|()| u.respond(&cmd)) {
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_get_hw_info(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuHwInfo = u.cmd();
        if cmd.flags & !IOMMU_HW_INFO_FLAG_INPUT_TYPE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.reserved != [0; 3] {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE == 0 {
            cmd.data_type = IOMMU_HW_INFO_TYPE_DEFAULT;
        }
        let dev = self.objects.device(cmd.dev_id)?.dev;
        let driver = {
            let core = self
                .shared()
                .iommu
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            core.topology()
                .iommu(core.topology().iommu_of(dev))
                .driver
                .clone()
        };
        let (data, out_type) = if driver.hw_info_type == IOMMU_HW_INFO_TYPE_NONE {
            (Vec::new(), IOMMU_HW_INFO_TYPE_NONE)
        } else {
            if cmd.data_type != IOMMU_HW_INFO_TYPE_DEFAULT && cmd.data_type != driver.hw_info_type {
                return Err(Errno::EOPNOTSUPP);
            }
            (driver.hw_info.clone(), driver.hw_info_type)
        };
        let copy = (cmd.data_len as usize).min(data.len());
        u.caller.mem.write(cmd.data_uptr, &data[..copy])?;
        if (cmd.data_len as usize) > copy {
            // The part of the user buffer beyond the data is zeroed.
            let zeros = vec![0u8; cmd.data_len as usize - copy];
            let at = cmd
                .data_uptr
                .checked_add(copy as u64)
                .ok_or(Errno::EFAULT)?;
            u.caller.mem.write(at, &zeros)?;
        }
        cmd.data_len = data.len() as u32;
        cmd.data_type = out_type;
        cmd.out_capabilities = if driver.dirty_tracking {
            IOMMU_HW_CAP_DIRTY_TRACKING
        } else {
            0
        };
        cmd.out_max_pasid_log2 = driver.max_pasid_log2;
        u.respond(&cmd)
    }

    fn cmd_set_dirty_tracking(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuHwptSetDirtyTracking = u.cmd();
        if cmd.flags & !IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0 || cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        self.hwpt_set_dirty_tracking(
            cmd.hwpt_id,
            cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0,
        )
    }

    fn cmd_get_dirty_bitmap(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuHwptGetDirtyBitmap = u.cmd();
        if cmd.flags & !IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0 || cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let caller = u.caller;
        let no_clear = cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR != 0;
        self.hwpt_get_dirty_bitmap(
            caller,
            cmd.hwpt_id,
            cmd.iova,
            cmd.length,
            cmd.page_size,
            cmd.data,
            no_clear,
        )
    }

    fn cmd_invalidate(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuHwptInvalidate = u.cmd();
        let mut done = 0;
        let rc = if cmd.reserved != 0 {
            Err(Errno::EOPNOTSUPP)
        } else if cmd.entry_num != 0 && (cmd.data_uptr == 0 || cmd.entry_len == 0) {
            Err(Errno::EINVAL)
        } else if u64::from(cmd.entry_len) > crate::memory::PAGE_SIZE || cmd.entry_num > 1 << 19 {
            // Linux's bounds on one invalidation array.
            Err(Errno::EINVAL)
        } else {
            let caller = u.caller;
            self.invalidate_nested(caller, &cmd, &mut done)
        };
        // entry_num always reports how many entries were handled, on every path.
        cmd.entry_num = done;
        u.respond(&cmd)?;
        rc
    }

    /// The mock nested domain's cache invalidation: each entry
    /// `{flags, iotlb_id}` zeroes one IOTLB slot or, with FLAG_ALL, all.
    /// Stops at the first bad entry; `done` counts the entries handled.
    fn invalidate_nested(
        &mut self,
        caller: &Caller<'_>,
        cmd: &IommuHwptInvalidate,
        done: &mut u32,
    ) -> Result<()> {
        use crate::object::{Object, ObjectType};
        match self.objects.kind(cmd.hwpt_id) {
            Some(ObjectType::HwptNested) => {}
            Some(ObjectType::Viommu) => return self.invalidate_viommu(caller, cmd, done),
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        }
        if self.objects.hwpt_nested(cmd.hwpt_id)?.data_type == IOMMU_HWPT_DATA_VTD_S1 {
            return self.invalidate_vtd_s1(caller, cmd, done);
        }
        if cmd.data_type != t::IOMMU_HWPT_INVALIDATE_DATA_SELFTEST {
            return Err(Errno::EINVAL);
        }
        for i in 0..cmd.entry_num {
            // The mock takes entries of exactly its struct's size.
            if cmd.entry_len != 8 {
                return Err(Errno::EINVAL);
            }
            let mut entry = [0u8; 8];
            let at = cmd
                .data_uptr
                .checked_add(u64::from(i) * 8)
                .ok_or(Errno::EFAULT)?;
            caller.mem.read(at, &mut entry)?;
            let flags = u32::from_ne_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let id = u32::from_ne_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if flags & !t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            if id > t::MOCK_NESTED_DOMAIN_IOTLB_ID_MAX {
                return Err(Errno::EINVAL);
            }
            if let Some(Object::HwptNested(n)) = self.objects.get_mut(cmd.hwpt_id) {
                if flags & t::IOMMU_TEST_INVALIDATE_FLAG_ALL != 0 {
                    n.iotlb = [0; 4];
                } else {
                    n.iotlb[id as usize] = 0;
                }
            }
            *done += 1;
        }
        Ok(())
    }

    /// A paging HWPT's driver data: the mock driver's `struct
    /// iommu_hwpt_selftest` chooses its table shape (`pagetable_type`:
    /// default, or huge with 1 MiB leaves). Returns the leaf sizes it asks
    /// for. Drivers without paging data refuse any (`EOPNOTSUPP`).
    fn paging_data(
        &self,
        caller: &Caller<'_>,
        cmd: &IommuHwptAlloc,
        flags: softiommu_iommu::domain::PagingFlags,
    ) -> Result<Option<u64>> {
        const MOCK_IOMMUPT_DEFAULT: u32 = 0;
        const MOCK_IOMMUPT_HUGE: u32 = 1;
        if cmd.data_type == IOMMU_HWPT_DATA_NONE {
            return Ok(None);
        }
        let dev = self.objects.device(cmd.dev_id)?.dev;
        let driver = {
            let core = self.core();
            core.topology()
                .iommu(core.topology().iommu_of(dev))
                .driver
                .clone()
        };
        if driver.paging_data_type == 0 || cmd.data_type != driver.paging_data_type {
            return Err(Errno::EOPNOTSUPP);
        }
        if flags.dirty_tracking && !driver.dirty_tracking {
            return Err(Errno::EOPNOTSUPP);
        }
        // {iotlb, pagetable_type}, at least through iotlb; a longer tail must
        // be zero.
        const SIZE: u32 = 8;
        if cmd.data_len < 4 {
            return Err(Errno::EINVAL);
        }
        let mut data = [0u8; SIZE as usize];
        let n = cmd.data_len.min(SIZE) as usize;
        caller.mem.read(cmd.data_uptr, &mut data[..n])?;
        if cmd.data_len > SIZE {
            let mut tail = vec![0u8; (cmd.data_len - SIZE) as usize];
            let at = cmd
                .data_uptr
                .checked_add(u64::from(SIZE))
                .ok_or(Errno::EFAULT)?;
            caller.mem.read(at, &mut tail)?;
            if tail.iter().any(|&b| b != 0) {
                return Err(Errno::E2BIG);
            }
        }
        match u32::from_ne_bytes([data[4], data[5], data[6], data[7]]) {
            MOCK_IOMMUPT_DEFAULT => Ok(None),
            // Huge pages, and the CPU page so that iommufd accepts the domain.
            MOCK_IOMMUPT_HUGE => Ok(Some((512 * 2048) | crate::memory::PAGE_SIZE)),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// VT-d stage-1 cache invalidation (`IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`):
    /// entries `{addr, npages, flags, __reserved}`, read one by one as
    /// structs of the caller's size (at least through `__reserved`; a longer
    /// one's tail must be zero). `npages == u64::MAX` with `addr == 0` drops
    /// everything. Stops at the first bad entry; `done` counts those handled.
    fn invalidate_vtd_s1(
        &mut self,
        caller: &Caller<'_>,
        cmd: &IommuHwptInvalidate,
        done: &mut u32,
    ) -> Result<()> {
        const ENTRY: usize = 24;
        const FLAGS_LEAF: u32 = 1;
        if cmd.data_type != IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 {
            return Err(Errno::EINVAL);
        }
        let len = u64::from(cmd.entry_len);
        for i in 0..u64::from(cmd.entry_num) {
            if len < ENTRY as u64 {
                return Err(Errno::EINVAL);
            }
            let at = cmd.data_uptr.checked_add(i * len).ok_or(Errno::EFAULT)?;
            let mut entry = [0u8; ENTRY];
            caller.mem.read(at, &mut entry)?;
            if len > ENTRY as u64 {
                let mut tail = vec![0u8; (len - ENTRY as u64) as usize];
                caller.mem.read(
                    at.checked_add(ENTRY as u64).ok_or(Errno::EFAULT)?,
                    &mut tail,
                )?;
                if tail.iter().any(|&b| b != 0) {
                    return Err(Errno::E2BIG);
                }
            }
            let u64_at = |k: usize| {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&entry[k..k + 8]);
                u64::from_ne_bytes(raw)
            };
            let u32_at =
                |k: usize| u32::from_ne_bytes([entry[k], entry[k + 1], entry[k + 2], entry[k + 3]]);
            let (addr, npages, flags, reserved) = (u64_at(0), u64_at(8), u32_at(16), u32_at(20));
            if flags & !FLAGS_LEAF != 0 || reserved != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            if addr % crate::memory::PAGE_SIZE != 0 || (npages == u64::MAX && addr != 0) {
                return Err(Errno::EINVAL);
            }
            if let Some(crate::object::Object::HwptNested(n)) = self.objects.get_mut(cmd.hwpt_id) {
                if npages == u64::MAX {
                    n.stage1_tlb.invalidate_all();
                } else {
                    n.stage1_tlb.invalidate(addr, npages);
                }
            }
            *done += 1;
        }
        Ok(())
    }

    fn cmd_fault_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuFaultAlloc = u.cmd();
        if cmd.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // Where the transport writes the descriptor if the engine cannot.
        let fd_addr = match u.arg {
            Arg::User(ptr) => ptr.wrapping_add(12),
            Arg::Bytes(_) => 0,
        };
        let caller = u.caller;
        let (id, fd, inode) = self.fault_queue_alloc(caller, fd_addr)?;
        cmd.out_fault_id = id;
        cmd.out_fault_fd = fd.map_or(u32::MAX, |f| f as u32);
        if let Err(e) = u.respond(&cmd) {
            self.side_file_closed(inode);
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_viommu_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuViommuAlloc = u.cmd();
        if cmd.flags != 0 || cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let id = self.viommu_alloc(cmd.dev_id, cmd.hwpt_id, cmd.viommu_type)?;
        // The mock driver's data: {in_data, out_data, out_mmap_offset,
        // out_mmap_length}, at least through out_data.
        let init = if cmd.data_len != 0 {
            self.viommu_init_data(u.caller, id, cmd.data_uptr, cmd.data_len)
        } else {
            Ok(())
        };
        cmd.out_viommu_id = id;
        if let Err(e) = init.and_then(|()| u.respond(&cmd)) {
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_vdevice_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuVdeviceAlloc = u.cmd();
        let id = self.vdevice_alloc(cmd.viommu_id, cmd.dev_id, cmd.virt_id)?;
        cmd.out_vdevice_id = id;
        if let Err(e) = u.respond(&cmd) {
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_veventq_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuVeventqAlloc = u.cmd();
        if cmd.flags != 0 || cmd.reserved != 0 || cmd.veventq_type == IOMMU_VEVENTQ_TYPE_DEFAULT {
            return Err(Errno::EOPNOTSUPP);
        }
        // Linux bounds the depth at 2^19, which fits every hardware queue.
        if cmd.veventq_depth == 0 || cmd.veventq_depth > 1 << 19 {
            return Err(Errno::EINVAL);
        }
        self.lookup_viommu(cmd.viommu_id)?;
        // Where the transport writes the descriptor if the engine cannot.
        let fd_addr = match u.arg {
            Arg::User(ptr) => ptr.wrapping_add(24),
            Arg::Bytes(_) => 0,
        };
        let caller = u.caller;
        let (id, fd, inode) = self.veventq_alloc(
            caller,
            cmd.viommu_id,
            cmd.veventq_type,
            cmd.veventq_depth,
            fd_addr,
        )?;
        cmd.out_veventq_id = id;
        cmd.out_veventq_fd = fd.map_or(u32::MAX, |f| f as u32);
        if let Err(e) = u.respond(&cmd) {
            self.side_file_closed(inode);
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn cmd_hw_queue_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuHwQueueAlloc = u.cmd();
        if cmd.flags != 0 || cmd.hw_queue_type == IOMMU_HW_QUEUE_TYPE_DEFAULT {
            return Err(Errno::EOPNOTSUPP);
        }
        if cmd.length == 0 {
            return Err(Errno::EINVAL);
        }
        cmd.nesting_parent_iova
            .checked_add(cmd.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        let id = self.hw_queue_alloc(
            cmd.viommu_id,
            cmd.hw_queue_type,
            cmd.index,
            cmd.nesting_parent_iova,
            cmd.length,
        )?;
        cmd.out_hw_queue_id = id;
        if let Err(e) = u.respond(&cmd) {
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    fn lookup_viommu(&self, id: u32) -> Result<()> {
        self.viommu(id).map(|_| ())
    }

    fn cmd_test(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuTestCmd = u.cmd();
        match cmd.op {
            t::op::ADD_RESERVED => {
                let p: t::TestAddReserved = cmd.payload_as();
                self.ioas_add_reserved(cmd.id, p.start, p.length)
            }
            t::op::SET_TEMP_MEMORY_LIMIT => {
                let p: t::TestOneId = cmd.payload_as();
                // The batch code needs room for one entry.
                if p.id < 12 {
                    return Err(Errno::EINVAL);
                }
                self.temp_memory_limit = p.id;
                Ok(())
            }
            t::op::MD_CHECK_REFS => {
                let p: t::TestCheckRefs = cmd.payload_as();
                self.check_refs(u.caller, p.uptr, p.length, p.refs)
            }
            t::op::MOCK_DOMAIN | t::op::MOCK_DOMAIN_FLAGS => {
                let mut p: t::TestMockDomain = cmd.payload_as();
                let flags = if cmd.op == t::op::MOCK_DOMAIN_FLAGS {
                    p.dev_flags
                } else {
                    0
                };
                let known = t::MOCK_FLAGS_DEVICE_NO_DIRTY
                    | t::MOCK_FLAGS_DEVICE_HUGE_IOVA
                    | t::MOCK_FLAGS_DEVICE_PASID;
                if flags & !known != 0 {
                    return Err(Errno::EINVAL);
                }
                let (stdev, hwpt, idev) = self.mock_domain(cmd.id, flags)?;
                p.out_stdev_id = stdev;
                p.out_hwpt_id = hwpt;
                p.out_idev_id = idev;
                let mut out = cmd;
                out.set_payload(&p);
                if let Err(e) = u.respond(&out) {
                    let _ = self.destroy(stdev);
                    return Err(e);
                }
                Ok(())
            }
            t::op::MOCK_DOMAIN_REPLACE => {
                let mut p: t::TestOneId = cmd.payload_as();
                let idev = self.objects.selftest(cmd.id)?.device;
                let (hwpt, _) = self.device_replace(idev, p.id)?;
                p.id = hwpt;
                let mut out = cmd;
                out.set_payload(&p);
                u.respond(&out)
            }
            t::op::DIRTY => {
                let mut p: t::TestDirty = cmd.payload_as();
                let caller = u.caller;
                p.out_nr_dirty =
                    self.test_mark_dirty(caller, cmd.id, p.iova, p.length, p.page_size, p.uptr)?;
                let mut out = cmd;
                out.set_payload(&p);
                u.respond(&out)
            }
            t::op::MD_CHECK_MAP => {
                let p: t::TestCheckMap = cmd.payload_as();
                self.check_map(u.caller, cmd.id, p.iova, p.length, p.uptr)
            }
            t::op::PASID_ATTACH | t::op::PASID_REPLACE => {
                let mut p: t::TestPasid = cmd.payload_as();
                let idev = self.objects.selftest(cmd.id)?.device;
                let hwpt = if cmd.op == t::op::PASID_ATTACH {
                    self.pasid_attach(idev, p.pasid, p.pt_id)?
                } else {
                    self.pasid_replace(idev, p.pasid, p.pt_id)?
                };
                p.pt_id = hwpt;
                let mut out = cmd;
                out.set_payload(&p);
                let responded = u.respond(&out);
                if responded.is_err() && cmd.op == t::op::PASID_ATTACH {
                    let _ = self.pasid_detach(idev, p.pasid);
                }
                responded
            }
            t::op::PASID_DETACH => {
                let p: t::TestPasid = cmd.payload_as();
                let idev = self.objects.selftest(cmd.id)?.device;
                self.pasid_detach(idev, p.pasid)
            }
            t::op::PASID_CHECK_HWPT => {
                // Payload {pasid, hwpt_id}; hwpt_id 0 expects no HWPT.
                let p: t::TestPasid = cmd.payload_as();
                let idev = self.objects.selftest(cmd.id)?.device;
                let expected = match p.pt_id {
                    0 => None,
                    id => match self.objects.kind(id) {
                        Some(crate::object::ObjectType::HwptPaging)
                        | Some(crate::object::ObjectType::HwptNested) => Some(id),
                        _ => return Err(Errno::ENOENT),
                    },
                };
                if self.pasid_hwpt(idev, p.pasid)? != expected {
                    return Err(Errno::EINVAL);
                }
                Ok(())
            }
            t::op::DEV_CHECK_CACHE => {
                let p: t::TestCheckCache = cmd.payload_as();
                let device = self.objects.device(cmd.id)?;
                if p.id > t::MOCK_DEV_CACHE_ID_MAX || device.cache[p.id as usize] != p.value {
                    return Err(Errno::EINVAL);
                }
                Ok(())
            }
            t::op::MD_CHECK_IOTLB => {
                let p: t::TestCheckCache = cmd.payload_as();
                if p.id > t::MOCK_NESTED_DOMAIN_IOTLB_ID_MAX {
                    return Err(Errno::EINVAL);
                }
                let n = self.objects.hwpt_nested(cmd.id)?;
                if n.iotlb[p.id as usize] != p.value {
                    return Err(Errno::EINVAL);
                }
                Ok(())
            }
            t::op::TRIGGER_IOPF => {
                let p: t::TestTriggerIopf = cmd.payload_as();
                let request = crate::fault_queue::PageRequest {
                    pasid: p.pasid,
                    grpid: p.grpid,
                    perm: p.perm,
                    addr: p.addr,
                };
                self.report_page_fault(p.dev_id, request)
            }
            t::op::TRIGGER_VEVENT => {
                let p: t::TestOneId = cmd.payload_as();
                self.report_vevent(u.caller, p.id)
            }
            t::op::CREATE_ACCESS => {
                let mut p: t::TestCreateAccess = cmd.payload_as();
                if p.flags & !t::MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let needs_pin = p.flags & t::MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES != 0;
                // Where the transport writes the descriptor if the engine cannot.
                let fd_addr = match u.arg {
                    Arg::User(ptr) => ptr.wrapping_add(16),
                    Arg::Bytes(_) => 0,
                };
                let caller = u.caller;
                let (fd, inode) = self.create_access(caller, cmd.id, needs_pin, fd_addr)?;
                p.out_access_fd = fd.map_or(u32::MAX, |f| f as u32);
                let mut out = cmd;
                out.set_payload(&p);
                if let Err(e) = u.respond(&out) {
                    self.side_file_closed(inode);
                    return Err(e);
                }
                Ok(())
            }
            t::op::ACCESS_PAGES => {
                let mut p: t::TestAccessPages = cmd.payload_as();
                if p.flags & !(t::MOCK_FLAGS_ACCESS_WRITE | t::MOCK_FLAGS_ACCESS_SYZ) != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let caller = u.caller;
                let write = p.flags & t::MOCK_FLAGS_ACCESS_WRITE != 0;
                let item = self.access_pin(caller, cmd.id, write, p.iova, p.length, p.uptr)?;
                p.out_access_pages_id = item;
                let mut out = cmd;
                out.set_payload(&p);
                if let Err(e) = u.respond(&out) {
                    let _ = self.access_unpin(caller, cmd.id, item);
                    return Err(e);
                }
                Ok(())
            }
            t::op::DESTROY_ACCESS_PAGES => {
                let p: t::TestOneId = cmd.payload_as();
                let caller = u.caller;
                self.access_unpin(caller, cmd.id, p.id)
            }
            t::op::ACCESS_RW => {
                let p: t::TestAccessRw = cmd.payload_as();
                if p.flags & !(t::MOCK_ACCESS_RW_WRITE | t::MOCK_ACCESS_RW_SLOW_PATH) != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                let caller = u.caller;
                self.access_rw(
                    caller,
                    cmd.id,
                    p.iova,
                    p.length,
                    p.uptr,
                    p.flags & t::MOCK_ACCESS_RW_WRITE != 0,
                )
            }
            t::op::ACCESS_REPLACE_IOAS => {
                let p: t::TestOneId = cmd.payload_as();
                let caller = u.caller;
                self.access_replace_ioas(caller, cmd.id, p.id)
            }
            // A dma-buf is a file given to the caller: it needs the server.
            t::op::DMABUF_GET => {
                let p: t::TestDmabufGet = cmd.payload_as();
                let length = u64::from(p.length);
                if length == 0
                    || length % crate::memory::PAGE_SIZE != 0
                    || length > 512 * crate::memory::PAGE_SIZE
                {
                    return Err(Errno::EINVAL);
                }
                let caller = u.caller;
                // The descriptor is the ioctl's return value.
                let (fd, inode) = caller.files.create_side_file(u64::MAX)?;
                let memory =
                    std::sync::Arc::new(crate::memory::SimFile::new(length as usize, true));
                let object = crate::object::Object::Dmabuf(Box::new(crate::object::Dmabuf {
                    inode,
                    memory,
                    revoked: false,
                }));
                let id = self.objects.insert(object)?;
                self.side_files.insert(inode, id);
                u.ret = fd.map_or(0, i64::from);
                Ok(())
            }
            t::op::DMABUF_REVOKE => {
                let p: t::TestDmabufRevoke = cmd.payload_as();
                let inode = u
                    .caller
                    .files
                    .inode_of(p.dmabuf_fd)
                    .map_err(|_| Errno::EBADF)?;
                let id = *self.side_files.get(&inode).ok_or(Errno::EINVAL)?;
                let (file_id, revoked) = match self.objects.get_mut(id) {
                    Some(crate::object::Object::Dmabuf(d)) => {
                        d.revoked = p.revoked != 0;
                        (crate::memory::FileBacking::id(d.memory.as_ref()), d.revoked)
                    }
                    _ => return Err(Errno::EINVAL),
                };
                for ioas in self.objects.ids_of(crate::object::ObjectType::Ioas) {
                    if let Ok(t) = self.ioas_mut(ioas) {
                        t.set_file_revoked(file_id, revoked);
                    }
                }
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// The dma-buf behind the caller's descriptor `fd`, if it is one:
    /// `ENODEV` once revoked.
    fn dmabuf_of(
        &self,
        caller: &Caller<'_>,
        fd: i32,
    ) -> Result<Option<std::sync::Arc<dyn crate::memory::FileBacking>>> {
        let Ok(inode) = caller.files.inode_of(fd) else {
            return Ok(None);
        };
        let Some(&id) = self.side_files.get(&inode) else {
            return Ok(None);
        };
        match self.objects.get(id) {
            Some(crate::object::Object::Dmabuf(d)) if d.revoked => Err(Errno::ENODEV),
            Some(crate::object::Object::Dmabuf(d)) => Ok(Some(d.memory.clone())),
            _ => Ok(None),
        }
    }

    /// `MOCK_DOMAIN`: a mock device in a group of its own, bound to this
    /// context and attached to `pt_id`. Objects are made in Linux's order: the
    /// selftest object, the device, then (for an IOAS) the automatic HWPT.
    fn mock_domain(&mut self, pt_id: u32, flags: u32) -> Result<(u32, u32, u32)> {
        use crate::object::{Object, ObjectType, Selftest};
        if !matches!(
            self.objects.kind(pt_id),
            Some(ObjectType::Ioas | ObjectType::HwptPaging | ObjectType::HwptNested)
        ) {
            return Err(Errno::ENOENT);
        }
        let dev = {
            let mut core = self
                .shared()
                .iommu
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let name = format!("selftest-mock-{flags:#x}");
            let iommu = match core.topology().iommu_by_name(&name) {
                Some(i) => i,
                None => {
                    let mut driver = softiommu_iommu::DriverInfo::mock();
                    if flags & t::MOCK_FLAGS_DEVICE_NO_DIRTY != 0 {
                        driver.dirty_tracking = false;
                    }
                    if flags & t::MOCK_FLAGS_DEVICE_PASID != 0 {
                        driver.max_pasid_log2 = t::MOCK_PASID_WIDTH;
                    }
                    if flags & t::MOCK_FLAGS_DEVICE_HUGE_IOVA != 0 {
                        // The mock's huge-page variant: 4 KiB and 1 MiB leaves.
                        driver.pgsize_bitmap = (1 << 12) | (1 << 20);
                    }
                    core.add_iommu(&name, driver)
                }
            };
            let n = core.topology().devices.len();
            core.add_device(iommu, &format!("mock:{n}"))?
        };
        let stdev = self
            .objects
            .insert(Object::Selftest(Box::new(Selftest { device: 0 })))?;
        let idev = match self.bind_device(dev) {
            Ok((idev, _)) => idev,
            Err(e) => {
                let _ = self.objects.remove(stdev);
                return Err(e);
            }
        };
        let hwpt = match self.device_attach(idev, pt_id) {
            Ok((hwpt, _)) => hwpt,
            Err(e) => {
                let _ = self.destroy(idev);
                let _ = self.objects.remove(stdev);
                return Err(e);
            }
        };
        // The selftest object holds the device: DESTROY of the device is EBUSY.
        self.objects.add_user(idev);
        if let Some(Object::Selftest(t)) = self.objects.get_mut(stdev) {
            t.device = idev;
        }
        Ok((stdev, hwpt, idev))
    }

    /// `MD_CHECK_MAP`: every 2 KiB step of `[iova, +length)` in HWPT `hwpt`
    /// translates to the address of the caller's memory at `uptr` (`EINVAL`
    /// otherwise).
    fn check_map(
        &self,
        caller: &Caller<'_>,
        hwpt: u32,
        iova: u64,
        length: u64,
        uptr: u64,
    ) -> Result<()> {
        use crate::memory::PAGE_SIZE;
        use crate::pages::Frame;
        let step = t::MOCK_PAGE_SIZE;
        if iova % step != 0 || length % step != 0 || uptr % step != 0 {
            return Err(Errno::EINVAL);
        }
        iova.checked_add(length).ok_or(Errno::EINVAL)?;
        uptr.checked_add(length).ok_or(Errno::EINVAL)?;
        let table = self.objects.hwpt(hwpt)?.table.clone();
        let table = table.lock().unwrap_or_else(|e| e.into_inner());
        let first_page = uptr - uptr % PAGE_SIZE;
        let npages = (uptr + length).div_ceil(PAGE_SIZE) - first_page / PAGE_SIZE;
        let ids = caller.mem.page_identities(first_page, npages.max(1));
        let mut done = 0;
        while done < length {
            let va = uptr + done;
            let id = ids[((va - first_page) / PAGE_SIZE) as usize];
            let frame = Frame {
                space: id.space,
                page: id.page,
            };
            let want = self
                .shared()
                .address_of(frame)
                .map(|pa| pa + va % PAGE_SIZE);
            let got = table.iova_to_phys(iova + done).map(|(pa, _)| pa);
            if got.is_none() || got != want {
                return Err(Errno::EINVAL);
            }
            done += step;
        }
        Ok(())
    }

    /// `MD_CHECK_REFS`: every page of `[uptr, +length)` in the caller's memory
    /// must be pinned exactly `refs` times (`EIO` otherwise).
    fn check_refs(&self, caller: &Caller<'_>, uptr: u64, length: u64, refs: u32) -> Result<()> {
        use crate::memory::PAGE_SIZE;
        use crate::pages::Frame;
        if uptr % PAGE_SIZE != 0 || length % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        uptr.checked_add(length).ok_or(Errno::EOVERFLOW)?;
        for id in caller.mem.page_identities(uptr, length / PAGE_SIZE) {
            let frame = Frame {
                space: id.space,
                page: id.page,
            };
            if self.shared().pin_count(frame) != refs {
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }
}
