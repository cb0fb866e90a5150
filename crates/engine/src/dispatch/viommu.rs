//! Decoding fault-queue, vIOMMU, vDEVICE, vEVENTQ and HW-queue allocation
//! (Linux `eventq.c`, `viommu.c`).

use super::*;

impl Context {
    pub(super) fn cmd_fault_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuFaultAlloc = u.cmd();
        if cmd.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        // Where the transport writes the descriptor if the engine cannot.
        let fd_addr = u.arg.user_address(12);
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

    pub(super) fn cmd_viommu_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn cmd_vdevice_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let mut cmd: IommuVdeviceAlloc = u.cmd();
        let id = self.vdevice_alloc(cmd.viommu_id, cmd.dev_id, cmd.virt_id)?;
        cmd.out_vdevice_id = id;
        if let Err(e) = u.respond(&cmd) {
            let _ = self.destroy(id);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn cmd_veventq_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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
        let fd_addr = u.arg.user_address(24);
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

    pub(super) fn cmd_hw_queue_alloc(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
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

    pub(super) fn lookup_viommu(&self, id: u32) -> Result<()> {
        self.viommu(id).map(|_| ())
    }
}
