//! Queues that carry events to user space through a file: IO page-fault
//! queues (Linux `iommufd_fault`) and vEVENTQs (`iommufd_veventq`). State and
//! the queue rules that need no context.

use softiommu_uapi::iommufd::{IommufdVeventHeader, IOMMU_VEVENTQ_FLAG_LOST_EVENTS};
use std::collections::{BTreeMap, VecDeque};
use zerocopy::IntoBytes;

/// A fault a device took, as its driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// `0` means the request carries no PASID.
    pub pasid: u32,
    /// Page request group index (PRI `grpid`).
    pub grpid: u32,
    /// `IOMMU_PGFAULT_PERM_*`.
    pub perm: u32,
    /// The faulting IOVA.
    pub addr: u64,
}

/// A delivered fault that awaits its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwaitingFault {
    /// The device object that took it.
    pub dev_id: u32,
    /// The fault as the driver reported it.
    pub request: PageRequest,
}

/// A fault queue. Invariant: every cookie in `awaiting` was handed out in a
/// record already queued for the file, and `next_cookie` is never 0.
#[derive(Debug)]
pub struct FaultQueue {
    /// The inode of the file that stands for it.
    pub inode: u64,
    /// The file is still open (and holds a user of the object).
    pub file_open: bool,
    /// Delivered faults by cookie.
    pub awaiting: BTreeMap<u32, AwaitingFault>,
    next_cookie: u32,
    /// Bytes of a response written in part.
    pub partial: Vec<u8>,
    /// Responses received, by `IOMMUFD_PAGE_RESP_*` code.
    pub responses: BTreeMap<u32, u64>,
}

impl FaultQueue {
    /// A queue for the file with inode `inode`, which is open.
    pub fn new(inode: u64) -> Self {
        FaultQueue {
            inode,
            file_open: true,
            awaiting: BTreeMap::new(),
            next_cookie: 1,
            partial: Vec::new(),
            responses: BTreeMap::new(),
        }
    }

    /// The next free cookie (never 0).
    pub fn take_cookie(&mut self) -> u32 {
        loop {
            let cookie = self.next_cookie;
            self.next_cookie = self.next_cookie.checked_add(1).unwrap_or(1);
            if !self.awaiting.contains_key(&cookie) {
                return cookie;
            }
        }
    }
}

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
    /// Object id of the vIOMMU whose events it carries.
    pub viommu: u32,
    /// Type of the events it carries (`IOMMU_VEVENTQ_TYPE_*`).
    pub veventq_type: u32,
    /// Most events it holds unread; beyond it events are lost (Linux `depth`).
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
    /// An empty queue of `depth` events for the file with inode `inode`.
    pub fn new(inode: u64, viommu: u32, veventq_type: u32, depth: u32) -> Self {
        Veventq {
            inode,
            file_open: true,
            viommu,
            veventq_type,
            depth,
            sequence: 0,
            num_events: 0,
            unread: VecDeque::new(),
            front_read: 0,
        }
    }

    /// The reader has left `unread_bytes` bytes in the file: forget the
    /// records it has read whole.
    pub fn note_unread(&mut self, unread_bytes: u64) {
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

    /// How many bytes a read of `count` bytes takes: whole records only,
    /// `EINVAL` when not even the first fits (Linux `iommufd_veventq_fops_read`).
    pub fn read_plan(&self, count: u64) -> crate::errno::Result<u64> {
        const HEADER: u64 = std::mem::size_of::<IommufdVeventHeader>() as u64;
        if count < HEADER {
            return Err(crate::errno::Errno::EINVAL);
        }
        let mut take = 0u64;
        for (i, record) in self.unread.iter().enumerate() {
            let len = if i == 0 {
                record.len - self.front_read
            } else {
                record.len
            };
            if take + len > count {
                if take == 0 {
                    return Err(crate::errno::Errno::EINVAL);
                }
                break;
            }
            take += len;
        }
        Ok(take)
    }

    /// Queues one report; returns the bytes the file's reader must see.
    pub fn report(&mut self, data: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(depth: u32) -> Veventq {
        Veventq::new(1, 1, 1, depth)
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
