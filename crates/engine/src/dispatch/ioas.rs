//! Decoding the IOAS commands (Linux `ioas.c`'s ioctl halves) and `IOMMU_OPTION`.

use super::*;

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
    pub(super) fn cmd_destroy(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_ioas_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_allow_iovas(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuIoasAllowIovas = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // The ranges this IOAS may hold: what it holds now (they are
        // replaced) and the context's room. As Linux charges each range
        // as it reads it, one past that is ENOMEM after the ranges before
        // it were read and checked.
        let held = self.objects.ioas(cmd.ioas_id)?.iopt.allowed_count() as u64;
        let fit = held.saturating_add(self.ranges.available());
        let mut ranges = Vec::new();
        let mut seen = crate::ops::ioas::DisjointRanges::default();
        for i in 0..u64::from(cmd.num_iovas) {
            let mut r = IommuIovaRange::default();
            let at = cmd.allowed_iovas.checked_add(i * 16).ok_or(Errno::EFAULT)?;
            u.caller.mem.read(at, r.as_mut_bytes())?;
            // Linux checks each range as it loads it, before the next read.
            if r.start >= r.last || !seen.insert(r.start, r.last) {
                return Err(Errno::EINVAL);
            }
            if ranges.len() as u64 >= fit {
                return Err(Errno::ENOMEM);
            }
            ranges.push((r.start, r.last));
        }
        self.ioas_allow_iovas(cmd.ioas_id, &ranges)
    }

    pub(super) fn cmd_copy(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_iova_ranges(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_map(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_map_file(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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
        let file = match self.dmabuf_of(u.caller, cmd.fd, cmd.start, cmd.length)? {
            Some(memory) => memory,
            None => u.caller.files.resolve(cmd.fd)?,
        };
        let caller = u.caller;
        cmd.iova = self.ioas_map_file(caller, cmd.ioas_id, file, cmd.start, args)?;
        u.respond(&cmd)
    }

    pub(super) fn cmd_unmap(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuIoasUnmap = u.cmd();
        cmd.length = self.ioas_unmap(cmd.ioas_id, cmd.iova, cmd.length)?;
        u.respond(&cmd)
    }

    pub(super) fn cmd_option(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_vfio_ioas(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_change_process(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuIoasChangeProcess = u.cmd();
        if cmd.reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let caller = u.caller;
        self.ioas_change_process(caller)
    }
}
