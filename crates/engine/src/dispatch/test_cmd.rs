//! `IOMMU_TEST_CMD`: the selftest's multiplexer (Linux `selftest.c`'s
//! `iommufd_test`), decoded here; the mock device's operations live in
//! [`crate::ops::selftest`].

use super::*;

impl Context {
    pub(super) fn cmd_test(&mut self, u: &mut Ucmd<'_, '_>) -> Result<()> {
        let cmd: IommuTestCmd = u.cmd();
        match cmd.op {
            t::op::ADD_RESERVED => {
                let p: t::TestAddReserved = cmd.payload_as();
                self.ioas_add_reserved(cmd.id, p.start, p.length)
            }
            t::op::SET_TEMP_MEMORY_LIMIT => {
                let p: t::TestOneId = cmd.payload_as();
                // The batch code needs room for one entry. Nothing here
                // batches through temporary memory, so a valid limit changes
                // nothing.
                if p.id < 12 {
                    return Err(Errno::EINVAL);
                }
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
                let cache = device
                    .driver_data
                    .get::<crate::driver::mock::MockDevice>()
                    .map(|m| m.cache)
                    .ok_or(Errno::EINVAL)?;
                if p.id > t::MOCK_DEV_CACHE_ID_MAX || cache[p.id as usize] != p.value {
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
                let iotlb = n
                    .driver_data
                    .get::<crate::driver::mock::MockNested>()
                    .map(|m| m.iotlb)
                    .ok_or(Errno::EINVAL)?;
                if iotlb[p.id as usize] != p.value {
                    return Err(Errno::EINVAL);
                }
                Ok(())
            }
            t::op::TRIGGER_IOPF => {
                let p: t::TestTriggerIopf = cmd.payload_as();
                let request = crate::object::PageRequest {
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
                let fd_addr = u.arg.user_address(16);
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
                // The descriptor is the ioctl's return value; the object's
                // room is checked before its file is made.
                self.objects.peek_id()?;
                let (fd, inode) = caller.files.create_side_file(u64::MAX)?;
                let memory = std::sync::Arc::new(crate::memory::SimFile::dmabuf(length as usize));
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
                // A restore allows new maps; the revoked ones stay dead.
                if revoked {
                    self.revoke_file(file_id);
                }
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }
}
