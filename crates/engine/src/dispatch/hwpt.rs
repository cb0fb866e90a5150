//! Decoding the HWPT commands: allocation, hardware info, dirty tracking and
//! cache invalidation (Linux `hw_pagetable.c`, `device.c`'s `GET_HW_INFO`).
//! Arguments are validated in Linux's order before objects are looked up.

use super::*;
use crate::context::Caller;
use crate::memory::user_copy::{clear_user, Payload};
use crate::ops::hwpt::HwptSpec;
use crate::sync::Locked;

impl Context {
    pub(super) fn cmd_hwpt_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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
                self.hwpt_alloc(
                    cmd.dev_id,
                    HwptSpec::Paging {
                        ioas: cmd.pt_id,
                        flags,
                        pgsize_bitmap: pgsize,
                    },
                )?
            }
            // A nested HWPT over a nest parent, or made through a vIOMMU.
            Some(ObjectType::HwptPaging | ObjectType::Viommu) => {
                // Nested HWPTs take a fault queue and the PASID flag.
                let via_viommu = kind == Some(ObjectType::Viommu);
                let nested_flags = IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID;
                if cmd.flags & !nested_flags != 0 || (!via_viommu && cmd.data_len == 0) {
                    return Err(Errno::EOPNOTSUPP);
                }
                let read = crate::memory::user_copy::Payload::User {
                    mem: &**u.caller.mem,
                    uptr: cmd.data_uptr,
                    len: u64::from(cmd.data_len),
                };
                if via_viommu {
                    self.hwpt_alloc(
                        cmd.dev_id,
                        HwptSpec::ViommuNested {
                            viommu: cmd.pt_id,
                            data_type: cmd.data_type,
                            payload: read,
                        },
                    )?
                } else {
                    self.hwpt_alloc(
                        cmd.dev_id,
                        HwptSpec::Nested {
                            parent: cmd.pt_id,
                            data_type: cmd.data_type,
                            payload: read,
                        },
                    )?
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

    pub(super) fn cmd_get_hw_info(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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
            let core = self.shared().iommu.locked();
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
            let at = cmd
                .data_uptr
                .checked_add(copy as u64)
                .ok_or(Errno::EFAULT)?;
            clear_user(&**u.caller.mem, at, u64::from(cmd.data_len) - copy as u64)?;
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

    pub(super) fn cmd_set_dirty_tracking(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuHwptSetDirtyTracking = u.cmd();
        if cmd.flags & !IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0 || cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        self.hwpt_set_dirty_tracking(
            cmd.hwpt_id,
            cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE != 0,
        )
    }

    pub(super) fn cmd_get_dirty_bitmap(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_invalidate(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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
    pub(super) fn invalidate_nested(
        &mut self,
        caller: &Caller<'_>,
        cmd: &IommuHwptInvalidate,
        done: &mut u32,
    ) -> Result<()> {
        use crate::object::{Object, ObjectType};
        match self.objects.kind(cmd.hwpt_id) {
            Some(ObjectType::HwptNested) => {}
            Some(ObjectType::Viommu) => {
                return self.invalidate_viommu(invalidation_array(caller, cmd), cmd.hwpt_id, done)
            }
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        }
        let domain = self.objects.hwpt_nested(cmd.hwpt_id)?.domain;
        let ops = self.driver_ops_of_domain(domain)?;
        let array = invalidation_array(caller, cmd);
        match self.objects.get_mut(cmd.hwpt_id) {
            Some(Object::HwptNested(hwpt)) => ops.invalidate_hwpt(hwpt, array, done),
            _ => Err(Errno::ENOENT),
        }
    }

    /// A paging HWPT's driver data: the mock driver's `struct
    /// iommu_hwpt_selftest` chooses its table shape (`pagetable_type`:
    /// default, or huge with 1 MiB leaves). Returns the leaf sizes it asks
    /// for. Drivers without paging data refuse any (`EOPNOTSUPP`).
    pub(super) fn paging_data(
        &self,
        caller: &Caller<'_>,
        cmd: &IommuHwptAlloc,
        flags: softiommu_iommu::domain::PagingFlags,
    ) -> Result<Option<u64>> {
        if cmd.data_type == IOMMU_HWPT_DATA_NONE {
            return Ok(None);
        }
        let driver = self.driver_of(self.objects.device(cmd.dev_id)?.dev);
        if driver.paging_data_type == 0 || cmd.data_type != driver.paging_data_type {
            return Err(Errno::EOPNOTSUPP);
        }
        if flags.dirty_tracking && !driver.dirty_tracking {
            return Err(Errno::EOPNOTSUPP);
        }
        crate::driver::ops_for(&driver).paging_data(Payload::User {
            mem: &**caller.mem,
            uptr: cmd.data_uptr,
            len: u64::from(cmd.data_len),
        })
    }
}

/// The invalidation array a `HWPT_INVALIDATE` call names.
pub(crate) fn invalidation_array<'a>(
    caller: &'a Caller<'_>,
    cmd: &IommuHwptInvalidate,
) -> crate::driver::InvalidationArray<'a> {
    crate::driver::InvalidationArray {
        mem: &**caller.mem,
        data_type: cmd.data_type,
        uptr: cmd.data_uptr,
        entry_len: cmd.entry_len,
        entry_num: cmd.entry_num,
    }
}
