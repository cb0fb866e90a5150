//! vEVENTQs (Linux `iommufd_veventq`): a vIOMMU reports events of one type
//! (for the mock: a device's virtual id) to user space, which reads them from
//! the queue's file as `iommufd_vevent_header` + event data records.
//!
//! Linux's rules kept here: at most `depth` unread events; a report into a
//! full queue queues a lost-events header instead (flag
//! `IOMMU_VEVENTQ_FLAG_LOST_EVENTS`, no data); every report, lost or not,
//! takes the next sequence number, which wraps from `INT_MAX` to 0; one
//! queue per (vIOMMU, type), `EEXIST` for a second; no queue of the type
//! means the report fails with `EOPNOTSUPP`.
//!
//! The file is a side file the engine only writes to (through
//! [`Context::take_side_output`]). What the reader has consumed the
//! transport tells the engine as the number of bytes still unread
//! ([`Context::side_file_unread`]); the engine asks for it before every
//! report, so `depth` counts exactly what the reader has not read.
//!
//! Deviation, because records already handed to the file cannot be taken
//! back: Linux drops an unread lost-events header when a newer record
//! follows it (and renumbers it on a further overflow). Here it stays where
//! it was written; a further overflow right behind it adds nothing, and the
//! sequence numbers still show how many records were lost.

use crate::context::{Caller, Context};
use crate::errno::{Errno, Result};
use crate::object::{Object, Veventq};

impl Context {
    /// The vEVENTQ `id`; `ENOENT` when missing or of another type.
    pub fn veventq(&self, id: u32) -> Result<&Veventq> {
        match self.objects.get(id) {
            Some(Object::Veventq(q)) => Ok(q),
            _ => Err(Errno::ENOENT),
        }
    }

    fn veventq_mut(&mut self, id: u32) -> Result<&mut Veventq> {
        match self.objects.get_mut(id) {
            Some(Object::Veventq(q)) => Ok(q),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Makes a vEVENTQ of `veventq_type` on vIOMMU `viommu_id` holding at
    /// most `depth` unread events, and the file that stands for it
    /// (`IOMMU_VEVENTQ_ALLOC` after its argument checks). Returns the object
    /// id, the file's descriptor (if the transport already knows it) and its
    /// inode.
    pub fn veventq_alloc(
        &mut self,
        caller: &Caller<'_>,
        viommu_id: u32,
        veventq_type: u32,
        depth: u32,
        fd_addr: u64,
    ) -> Result<(u32, Option<i32>, u64)> {
        if self.viommu(viommu_id)?.veventqs.contains_key(&veventq_type) {
            return Err(Errno::EEXIST);
        }
        self.shared().fail_nth.check()?;
        // The object's room is checked before its file is made.
        self.objects.peek_id()?;
        let (fd, inode) = caller.files.create_event_file(fd_addr)?;
        let queue = Veventq::new(inode, viommu_id, veventq_type, depth);
        let id = self.objects.insert(Object::Veventq(Box::new(queue)))?;
        // The file's hold on the object, and the object's on its vIOMMU.
        self.objects.add_user(id);
        self.objects.add_user(viommu_id);
        if let Some(Object::Viommu(v)) = self.objects.get_mut(viommu_id) {
            v.veventqs.insert(veventq_type, id);
        }
        self.side_files.insert(inode, id);
        Ok((id, fd, inode))
    }

    /// The reader of event file `inode` has left `unread_bytes` bytes in it.
    /// Transports call this (or answer [`CallerFiles::unread_bytes`]) so
    /// that a queue's depth counts only what is still unread.
    ///
    /// [`CallerFiles::unread_bytes`]: crate::memory::CallerFiles::unread_bytes
    pub fn side_file_unread(&mut self, inode: u64, unread_bytes: u64) {
        let Some(&id) = self.side_files.get(&inode) else {
            return;
        };
        if let Ok(q) = self.veventq_mut(id) {
            q.note_unread(unread_bytes);
        }
    }

    /// How many bytes a `read(2)` of `count` bytes takes from vEVENTQ file
    /// `inode` (Linux `iommufd_veventq_fops_read`): whole records only, as
    /// many as fit; `EINVAL` when `count` is below a header or the first
    /// record does not fit; 0 when nothing is queued. `unread_bytes` is what
    /// the file holds now, as the transport counts it. `None` if `inode` is
    /// no vEVENTQ's file.
    pub fn veventq_read_plan(
        &mut self,
        inode: u64,
        unread_bytes: u64,
        count: u64,
    ) -> Option<Result<u64>> {
        let id = *self.side_files.get(&inode)?;
        self.veventq(id).ok()?;
        self.side_file_unread(inode, unread_bytes);
        let queue = self.veventq(id).ok()?;
        Some(queue.read_plan(count))
    }

    /// vIOMMU `viommu_id` reports an event of `veventq_type` with `data`
    /// (Linux `iommufd_viommu_report_event`): `EOPNOTSUPP` when no vEVENTQ
    /// of that type listens.
    pub fn viommu_report_event(
        &mut self,
        caller: &Caller<'_>,
        viommu_id: u32,
        veventq_type: u32,
        data: &[u8],
    ) -> Result<()> {
        let id = *self
            .viommu(viommu_id)?
            .veventqs
            .get(&veventq_type)
            .ok_or(Errno::EOPNOTSUPP)?;
        let inode = self.veventq(id)?.inode;
        if let Some(unread) = caller.files.unread_bytes(inode) {
            self.side_file_unread(inode, unread);
        }
        let queue = self.veventq_mut(id)?;
        let bytes = queue.report(data);
        if queue.file_open && !bytes.is_empty() {
            self.side_output.push((inode, bytes));
        }
        Ok(())
    }

    /// The vEVENTQ's file was closed: the file's hold on it ends. Unread
    /// records stay counted, as in Linux, where they stay queued.
    pub(crate) fn veventq_file_closed(&mut self, id: u32) {
        if let Ok(queue) = self.veventq_mut(id) {
            if queue.file_open {
                queue.file_open = false;
                self.objects.drop_user(id);
            }
        }
    }

    pub(crate) fn destroy_veventq(&mut self, queue: Veventq) {
        if let Some(Object::Viommu(v)) = self.objects.get_mut(queue.viommu) {
            v.veventqs.remove(&queue.veventq_type);
        }
        self.objects.drop_user(queue.viommu);
        self.side_files.remove(&queue.inode);
    }
}
