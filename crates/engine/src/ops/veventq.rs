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
use crate::object::Object;
use softiommu_uapi::iommufd::{IommufdVeventHeader, IOMMU_VEVENTQ_FLAG_LOST_EVENTS};
use std::collections::VecDeque;
use zerocopy::IntoBytes;

/// One record handed to the file and not yet known to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Record {
    /// Header plus data, in bytes.
    len: u64,
    lost_events: bool,
}

/// A vEVENTQ. Invariants: `num_events` is the number of records in
/// `unread` that are events (not lost-events headers) and never exceeds
/// `depth`; `front_read` is less than the front record's length.
#[derive(Debug)]
pub struct Veventq {
    /// The inode of the file that stands for it.
    pub inode: u64,
    /// The file is still open (and holds a user of the object).
    pub file_open: bool,
    pub viommu: u32,
    pub veventq_type: u32,
    pub depth: u32,
    /// The sequence number the next record takes.
    pub sequence: u32,
    /// Events handed to the file and not read (Linux `num_events`).
    pub num_events: u32,
    unread: VecDeque<Record>,
    /// Bytes of the front record the reader has already taken.
    front_read: u64,
}

impl Veventq {
    /// The reader has left `unread_bytes` bytes in the file: forget the
    /// records it has read whole.
    fn note_unread(&mut self, unread_bytes: u64) {
        let held: u64 = self.unread.iter().map(|r| r.len).sum::<u64>() - self.front_read;
        let mut consumed = held.saturating_sub(unread_bytes);
        while consumed > 0 {
            let Some(front) = self.unread.front().copied() else {
                break;
            };
            let rest = front.len - self.front_read;
            if consumed < rest {
                self.front_read += consumed;
                break;
            }
            consumed -= rest;
            self.front_read = 0;
            self.unread.pop_front();
            if !front.lost_events {
                self.num_events -= 1;
            }
        }
    }

    /// Queues one report; returns the bytes the file's reader must see.
    fn report(&mut self, data: &[u8]) -> Vec<u8> {
        let sequence = self.sequence;
        self.sequence = (self.sequence + 1) & i32::MAX as u32;
        if self.num_events == self.depth {
            if self.unread.back().is_some_and(|r| r.lost_events) {
                return Vec::new();
            }
            let header = IommufdVeventHeader {
                flags: IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
                sequence,
            };
            self.unread.push_back(Record {
                len: header.as_bytes().len() as u64,
                lost_events: true,
            });
            return header.as_bytes().to_vec();
        }
        let header = IommufdVeventHeader { flags: 0, sequence };
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        self.unread.push_back(Record {
            len: bytes.len() as u64,
            lost_events: false,
        });
        self.num_events += 1;
        bytes
    }
}

impl Context {
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
        self.shared().faults.check()?;
        let (fd, inode) = caller.files.create_event_file(fd_addr)?;
        let queue = Veventq {
            inode,
            file_open: true,
            viommu: viommu_id,
            veventq_type,
            depth,
            sequence: 0,
            num_events: 0,
            unread: VecDeque::new(),
            front_read: 0,
        };
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
    /// Transports call this (or answer [`FileResolver::unread_bytes`]) so
    /// that a queue's depth counts only what is still unread.
    ///
    /// [`FileResolver::unread_bytes`]: crate::memory::FileResolver::unread_bytes
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
        const HEADER: u64 = std::mem::size_of::<IommufdVeventHeader>() as u64;
        if count < HEADER {
            return Some(Err(Errno::EINVAL));
        }
        let mut take = 0u64;
        for (i, record) in queue.unread.iter().enumerate() {
            let len = if i == 0 {
                record.len - queue.front_read
            } else {
                record.len
            };
            if take + len > count {
                if take == 0 {
                    return Some(Err(Errno::EINVAL));
                }
                break;
            }
            take += len;
        }
        Some(Ok(take))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(depth: u32) -> Veventq {
        Veventq {
            inode: 1,
            file_open: true,
            viommu: 1,
            veventq_type: 1,
            depth,
            sequence: 0,
            num_events: 0,
            unread: VecDeque::new(),
            front_read: 0,
        }
    }

    #[test]
    fn a_full_queue_queues_one_lost_events_header_and_counts_on() {
        let mut q = queue(2);
        assert_eq!(q.report(&[1, 0, 0, 0]).len(), 12);
        assert_eq!(q.report(&[1, 0, 0, 0]).len(), 12);
        let lost = q.report(&[1, 0, 0, 0]);
        assert_eq!(lost, [1, 0, 0, 0, 2, 0, 0, 0]);
        assert!(q.report(&[1, 0, 0, 0]).is_empty());
        assert_eq!(q.sequence, 4);
        // The reader takes everything: the next event is delivered again.
        q.note_unread(0);
        assert_eq!(q.num_events, 0);
        assert_eq!(&q.report(&[7, 0, 0, 0])[4..8], &4u32.to_ne_bytes());
    }

    #[test]
    fn a_record_read_in_part_stays_counted() {
        let mut q = queue(1);
        q.report(&[1, 0, 0, 0]);
        q.note_unread(5);
        assert_eq!(q.num_events, 1);
        q.note_unread(0);
        assert_eq!(q.num_events, 0);
    }

    #[test]
    fn sequence_numbers_wrap_at_int_max() {
        let mut q = queue(8);
        q.sequence = i32::MAX as u32;
        let first = q.report(&[0; 4]);
        let second = q.report(&[0; 4]);
        assert_eq!(&first[4..8], &(i32::MAX as u32).to_ne_bytes());
        assert_eq!(&second[4..8], &0u32.to_ne_bytes());
    }
}
