//! Fault queues (Linux `iommufd_fault`): IO page faults that a device takes
//! on a HWPT made with a fault queue are delivered to user space as
//! `iommu_hwpt_pgfault` records read from the queue's file; user space
//! answers each with an `iommu_hwpt_page_response` written to that file.
//!
//! The file is a side file: the engine does not read or write it itself. It
//! queues the bytes a file's reader must see ([`Context::take_side_output`]),
//! and the transport writes them to the file after the call; the transport
//! hands bytes written by user space to [`Context::side_file_input`].
//!
//! Lifetime, as in Linux: the object is destroyed by `IOMMU_DESTROY`, which
//! fails with `EBUSY` while its file is open or a HWPT uses it; closing the
//! file only drops the file's hold on it.
//!
//! Deviations, because the file is a plain socket in the caller's process:
//! a cookie is given when a fault is queued (Linux gives it at read), a read
//! or write whose size is not a whole number of records is not refused, and
//! a response with an unknown cookie is dropped instead of failing the write.

use crate::context::{Caller, Context};
use crate::errno::{Errno, Result};
use crate::object::{AwaitingFault, FaultQueue, Object, PageRequest};
use softiommu_uapi::iommufd::{
    IommuHwptPageResponse, IommuHwptPgfault, IOMMU_PGFAULT_FLAGS_LAST_PAGE,
    IOMMU_PGFAULT_FLAGS_PASID_VALID,
};
use zerocopy::{FromBytes, IntoBytes};

impl Context {
    /// Makes a fault queue and the file that stands for it. Returns the
    /// object id, the file's descriptor (if the transport already knows it)
    /// and its inode.
    pub fn fault_queue_alloc(
        &mut self,
        caller: &Caller<'_>,
        fd_addr: u64,
    ) -> Result<(u32, Option<i32>, u64)> {
        self.shared().fail_nth.check()?;
        // The object's room is checked before its file is made.
        self.objects.peek_id()?;
        let (fd, inode) = caller.files.create_side_file(fd_addr)?;
        let queue = FaultQueue::new(inode);
        let id = self.objects.insert(Object::FaultQueue(Box::new(queue)))?;
        // The file's hold on the object.
        self.objects.add_user(id);
        self.side_files.insert(inode, id);
        Ok((id, fd, inode))
    }

    /// The fault queue `id`; `ENOENT` when missing or of another type.
    pub fn fault_queue(&self, id: u32) -> Result<&FaultQueue> {
        match self.objects.get(id) {
            Some(Object::FaultQueue(q)) => Ok(q),
            _ => Err(Errno::ENOENT),
        }
    }

    fn fault_queue_mut(&mut self, id: u32) -> Result<&mut FaultQueue> {
        match self.objects.get_mut(id) {
            Some(Object::FaultQueue(q)) => Ok(q),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Gives HWPT `hwpt` the fault queue `fault` (`ENOENT` if it is none).
    pub(crate) fn hwpt_set_fault(&mut self, hwpt: u32, fault: u32) -> Result<()> {
        self.fault_queue(fault)?;
        match self.objects.get_mut(hwpt) {
            Some(Object::HwptPaging(h)) => h.fault = Some(fault),
            Some(Object::HwptNested(h)) => h.fault = Some(fault),
            _ => return Err(Errno::ENOENT),
        }
        self.objects.add_user(fault);
        Ok(())
    }

    /// Device `dev_id` takes an IO page fault (the selftest's
    /// `TRIGGER_IOPF`). It goes to the fault queue of the HWPT that
    /// translates it: the one attached to its PASID, or else the RID's; with
    /// no such queue it is dropped, as Linux answers it itself. A PASID fault
    /// with no PASID attachment reaches only a nested RID HWPT (the guest then
    /// owns the PASID table in its stage 1).
    pub fn report_page_fault(&mut self, dev_id: u32, request: PageRequest) -> Result<()> {
        let device = self.objects.device(dev_id)?;
        let by_pasid = match request.pasid {
            0 => None,
            pasid => device.pasids.get(&pasid).copied(),
        };
        let fault = match by_pasid {
            Some(hwpt) => match self.objects.get(hwpt) {
                Some(Object::HwptPaging(h)) => h.fault,
                Some(Object::HwptNested(h)) => h.fault,
                _ => None,
            },
            None => device
                .attached
                .and_then(|(hwpt, _)| match self.objects.get(hwpt) {
                    Some(Object::HwptPaging(h)) if request.pasid == 0 => h.fault,
                    Some(Object::HwptNested(h)) => h.fault,
                    _ => None,
                }),
        };
        let Some(fault) = fault else {
            return Ok(());
        };
        let queue = self.fault_queue_mut(fault)?;
        if !queue.file_open {
            return Ok(());
        }
        let cookie = queue.take_cookie();
        queue
            .awaiting
            .insert(cookie, AwaitingFault { dev_id, request });
        let mut flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
        if request.pasid != 0 {
            flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
        }
        let record = IommuHwptPgfault {
            flags,
            dev_id,
            pasid: request.pasid,
            grpid: request.grpid,
            perm: request.perm,
            reserved: 0,
            addr: request.addr,
            length: 0,
            cookie,
        };
        let inode = queue.inode;
        self.side_output.push((inode, record.as_bytes().to_vec()));
        Ok(())
    }

    /// The group index for the next page request a device raises (PRI's
    /// 9-bit PRG index, wrapping).
    pub(crate) fn next_page_request_group(&mut self) -> u32 {
        let grpid = self.page_request_group;
        self.page_request_group = (grpid + 1) % 512;
        grpid
    }

    /// Bytes the transport must write to side files, by the file's inode, in
    /// order. Taking them empties the queue.
    pub fn take_side_output(&mut self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.side_output)
    }

    /// User space wrote `bytes` to the side file `inode`.
    pub fn side_file_input(&mut self, inode: u64, bytes: &[u8]) {
        let Some(&id) = self.side_files.get(&inode) else {
            return;
        };
        let Ok(queue) = self.fault_queue_mut(id) else {
            return;
        };
        queue.partial.extend_from_slice(bytes);
        let size = std::mem::size_of::<IommuHwptPageResponse>();
        let whole = queue.partial.len() / size * size;
        let records: Vec<u8> = queue.partial.drain(..whole).collect();
        for chunk in records.chunks_exact(size) {
            let Ok(response) = IommuHwptPageResponse::read_from_bytes(chunk) else {
                continue;
            };
            if queue.awaiting.remove(&response.cookie).is_some() {
                *queue.responses.entry(response.code).or_default() += 1;
            }
        }
    }

    /// The fault queue's file was closed: the file's hold on it ends.
    pub(crate) fn fault_queue_file_closed(&mut self, id: u32) {
        if let Ok(queue) = self.fault_queue_mut(id) {
            if queue.file_open {
                queue.file_open = false;
                queue.awaiting.clear();
                queue.partial.clear();
                self.objects.drop_user(id);
            }
        }
    }
}
