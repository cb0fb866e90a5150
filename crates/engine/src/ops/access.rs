//! Accesses (Linux `iommufd_access`): emulated devices that use an IOAS
//! through the CPU — pin its pages, read and write through it — instead of
//! through an IOMMU. Each access stands behind a file given to its user; the
//! access lives until that file's last close.
//!
//! The unmap contract: unmapping a range that an access has pinned notifies
//! the access, which gives its pins in that range up before the unmap goes on
//! (the selftest's mock access drops them all, as here).

use crate::context::{Caller, Context};
use crate::errno::{Errno, Result};
use crate::memory::PAGE_SIZE;
use crate::object::{Access, AccessItem, Object};
use std::collections::BTreeMap;

/// The mock access pins at most this much at once.
const MAX_ACCESS_PIN: u64 = 16 << 20;

impl Context {
    /// Creates an access on `ioas` and the file that stands for it; returns the
    /// file's descriptor (if the transport already knows it) and inode.
    pub fn create_access(
        &mut self,
        caller: &Caller<'_>,
        ioas: u32,
        needs_pin: bool,
        fd_addr: u64,
    ) -> Result<(Option<i32>, u64)> {
        self.objects.ioas(ioas)?;
        if needs_pin {
            self.ioas_mut(ioas)?.add_pinning_access()?;
        }
        let undo = |ctx: &mut Context| {
            if needs_pin {
                if let Ok(t) = ctx.ioas_mut(ioas) {
                    t.remove_pinning_access();
                }
            }
        };
        // The object's room is checked before its file is made.
        if let Err(e) = self
            .shared()
            .fail_nth
            .check()
            .and_then(|()| self.objects.peek_id().map(|_| ()))
        {
            undo(self);
            return Err(e);
        }
        let (fd, inode) = match caller.files.create_side_file(fd_addr) {
            Ok(f) => f,
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        let access = Access {
            ioas,
            needs_pin,
            inode,
            items: BTreeMap::new(),
            next_item: 0,
        };
        let id = match self.objects.insert(Object::Access(Box::new(access))) {
            Ok(id) => id,
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        self.objects.add_user(ioas);
        self.side_files.insert(inode, id);
        Ok((fd, inode))
    }

    /// The caller's file `inode` was closed for the last time.
    pub fn side_file_closed(&mut self, inode: u64) {
        if let Some(id) = self.side_files.remove(&inode) {
            match self.objects.kind(id) {
                Some(crate::object::ObjectType::FaultQueue) => {
                    self.fault_queue_file_closed(id);
                    return;
                }
                Some(crate::object::ObjectType::Veventq) => {
                    self.veventq_file_closed(id);
                    return;
                }
                _ => {}
            }
            match self.objects.remove(id) {
                Ok(Object::Access(a)) => self.destroy_access(*a),
                Ok(other) => self.destroy_object(id, other),
                Err(_) => {}
            }
        }
    }

    pub(crate) fn destroy_access(&mut self, access: Access) {
        if let Ok(t) = self.ioas_mut(access.ioas) {
            for item in access.items.values() {
                let _ = t.unpin(item.pin);
            }
            if access.needs_pin {
                t.remove_pinning_access();
            }
        }
        self.objects.drop_user(access.ioas);
        self.side_files.remove(&access.inode);
    }

    /// The access behind the caller's descriptor `fd` (`EBADFD` otherwise).
    fn access_by_fd(&mut self, caller: &Caller<'_>, fd: u32) -> Result<u32> {
        let inode = caller.files.inode_of(fd as i32)?;
        self.side_files.get(&inode).copied().ok_or(Errno::EBADFD)
    }

    /// Pins `[iova, +length)` for the access on `fd`; the pinned pages must be
    /// those at `uptr` in the caller (`EINVAL` otherwise). Returns an item id.
    pub fn access_pin(
        &mut self,
        caller: &Caller<'_>,
        fd: u32,
        write: bool,
        iova: u64,
        length: u64,
        uptr: u64,
    ) -> Result<u32> {
        let id = self.access_by_fd(caller, fd)?;
        let (ioas, needs_pin) = {
            let a = self.objects.access_mut(id)?;
            (a.ioas, a.needs_pin)
        };
        if !needs_pin {
            return Err(Errno::EOPNOTSUPP);
        }
        if length > MAX_ACCESS_PIN {
            return Err(Errno::ENOMEM);
        }
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let pin = self.ioas_mut(ioas)?.pin(iova, length, write)?;
        // The pinned pages must be the caller's pages at uptr.
        let first = iova - iova % PAGE_SIZE;
        let mut matches = uptr % PAGE_SIZE == iova % PAGE_SIZE;
        let mut page = first;
        while matches && page <= iova + (length - 1) {
            let at = page.max(iova);
            let pa = self
                .ioas(ioas)?
                .area_at(at)
                .and_then(|a| a.pages.address(a.byte_at(at) / PAGE_SIZE));
            let user_page = (uptr - uptr % PAGE_SIZE) + (page - first);
            let id = caller.mem.page_identities(user_page, 1)[0];
            let frame = crate::pages::Frame {
                space: id.space,
                page: id.page,
            };
            let want = self.shared().address_of(frame);
            matches = pa.is_some() && pa == want;
            page += PAGE_SIZE;
        }
        let iopt = self.ioas_mut(ioas)?;
        if !matches {
            let _ = iopt.unpin(pin);
            return Err(Errno::EINVAL);
        }
        let a = self.objects.access_mut(id)?;
        let item = a.next_item;
        a.next_item = a.next_item.wrapping_add(1);
        a.items.insert(item, AccessItem { iova, length, pin });
        Ok(item)
    }

    /// Unpins an item (`ENOENT` if it is gone, for example dropped by an unmap).
    pub fn access_unpin(&mut self, caller: &Caller<'_>, fd: u32, item: u32) -> Result<()> {
        let id = self.access_by_fd(caller, fd)?;
        let a = self.objects.access_mut(id)?;
        let ioas = a.ioas;
        let it = a.items.remove(&item).ok_or(Errno::ENOENT)?;
        let _ = self.ioas_mut(ioas)?.unpin(it.pin);
        Ok(())
    }

    /// Copies between the caller's memory at `uptr` and the IOAS at `iova`
    /// (`write`: into the IOAS).
    pub fn access_rw(
        &mut self,
        caller: &Caller<'_>,
        fd: u32,
        iova: u64,
        length: u64,
        uptr: u64,
        write: bool,
    ) -> Result<()> {
        let id = self.access_by_fd(caller, fd)?;
        let ioas = self.objects.access_mut(id)?.ioas;
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let len = usize::try_from(length).map_err(|_| Errno::ENOMEM)?;
        if len > MAX_ACCESS_PIN as usize {
            return Err(Errno::ENOMEM);
        }
        let mut buf = vec![0u8; len];
        let iopt = self.ioas(ioas)?;
        if write {
            caller.mem.read(uptr, &mut buf)?;
            iopt.access_rw(iova, &mut buf, true)
        } else {
            iopt.access_rw(iova, &mut buf, false)?;
            caller.mem.write(uptr, &buf)
        }
    }

    /// Moves the access on `fd` to IOAS `ioas`, dropping its pins.
    pub fn access_replace_ioas(&mut self, caller: &Caller<'_>, fd: u32, ioas: u32) -> Result<()> {
        let id = self.access_by_fd(caller, fd)?;
        self.objects.ioas(ioas)?;
        let (old, needs_pin) = {
            let a = self.objects.access_mut(id)?;
            (a.ioas, a.needs_pin)
        };
        if old == ioas {
            return Ok(());
        }
        if needs_pin {
            self.ioas_mut(ioas)?.add_pinning_access()?;
        }
        self.notify_access_unmap(id, 0, u64::MAX);
        if needs_pin {
            self.ioas_mut(old)?.remove_pinning_access();
        }
        self.objects.drop_user(old);
        self.objects.add_user(ioas);
        self.objects.access_mut(id)?.ioas = ioas;
        Ok(())
    }

    /// The unmap contract: drops access `id`'s items intersecting `[start, last]`.
    fn notify_access_unmap(&mut self, id: u32, start: u64, last: u64) {
        let Ok(a) = self.objects.access_mut(id) else {
            return;
        };
        let ioas = a.ioas;
        let gone: Vec<u32> = a
            .items
            .iter()
            .filter(|(_, it)| it.iova <= last && start <= it.iova.saturating_add(it.length - 1))
            .map(|(&k, _)| k)
            .collect();
        let pins: Vec<u64> = gone
            .iter()
            .filter_map(|k| a.items.remove(k))
            .map(|it| it.pin)
            .collect();
        if let Ok(t) = self.ioas_mut(ioas) {
            for p in pins {
                let _ = t.unpin(p);
            }
        }
    }

    /// Tells every access of `ioas` that `[start, last]` is going away.
    pub(crate) fn notify_accesses(&mut self, ioas: u32, start: u64, last: u64) -> bool {
        let ids: Vec<u32> = self.side_files.values().copied().collect();
        let mut any = false;
        for id in ids {
            if self
                .objects
                .access_mut(id)
                .is_ok_and(|a| a.ioas == ioas && !a.items.is_empty())
            {
                self.notify_access_unmap(id, start, last);
                any = true;
            }
        }
        any
    }
}
