//! The selftest's mock device and its checks (Linux `selftest.c`): mock
//! domains, `MD_CHECK_MAP`, `MD_CHECK_REFS`, the dma-buf lookup.

use crate::context::{Caller, Context};
use crate::errno::{Errno, Result};
use crate::sync::Locked;
use softiommu_uapi::test_cmd as t;

impl crate::memory::DmabufImporter for std::sync::Mutex<Context> {
    fn revoke(&self, file_id: u64) {
        self.locked().revoke_file(file_id);
    }
}

/// How many pages the selftest checks identify at once.
const CHECK_WINDOW_PAGES: u64 = 1024;

impl Context {
    /// The dma-buf behind the caller's descriptor `fd`, if it is one (the
    /// selftest's, or one a VFIO function exported), for a map of
    /// `[start, start + length)` of it: `EINVAL` past its end, `ENODEV`
    /// once revoked, `EOPNOTSUPP` for an exported one of several ranges or
    /// in a context that cannot be told of a revoke.
    pub(crate) fn dmabuf_of(
        &self,
        caller: &Caller<'_>,
        fd: i32,
        start: u64,
        length: u64,
    ) -> Result<Option<std::sync::Arc<dyn crate::memory::FileBacking>>> {
        let Ok(inode) = caller.files.inode_of(fd) else {
            return Ok(None);
        };
        if let Some(exported) = self.shared.exported_dmabuf(inode) {
            // Linux checks the range (`iopt_alloc_dmabuf_pages`) before it
            // attaches to the exporter.
            if start
                .checked_add(length)
                .is_none_or(|end| end > exported.size())
            {
                return Err(Errno::EINVAL);
            }
            let me = self.me.clone().ok_or(Errno::EOPNOTSUPP)?;
            let importer: std::sync::Weak<dyn crate::memory::DmabufImporter> = me;
            return exported.import(importer).map(Some);
        }
        let Some(&id) = self.side_files.get(&inode) else {
            return Ok(None);
        };
        match self.objects.get(id) {
            Some(crate::object::Object::Dmabuf(d)) if d.revoked => Err(Errno::ENODEV),
            Some(crate::object::Object::Dmabuf(d)) => Ok(Some(d.memory.clone())),
            _ => Ok(None),
        }
    }

    /// The memory of file `file_id` was revoked by its exporter: its areas
    /// leave every domain of every IOAS, for good.
    pub(crate) fn revoke_file(&mut self, file_id: u64) {
        for ioas in self.objects.ids_of(crate::object::ObjectType::Ioas) {
            if let Ok(t) = self.ioas_mut(ioas) {
                t.revoke_file(file_id);
            }
        }
    }

    /// `MOCK_DOMAIN`: a mock device in a group of its own, bound to this
    /// context and attached to `pt_id`. Objects are made in Linux's order: the
    /// selftest object, the device, then (for an IOAS) the automatic HWPT.
    pub(crate) fn mock_domain(&mut self, pt_id: u32, flags: u32) -> Result<(u32, u32, u32)> {
        use crate::object::{Object, ObjectType, Selftest};
        if !matches!(
            self.objects.kind(pt_id),
            Some(ObjectType::Ioas | ObjectType::HwptPaging | ObjectType::HwptNested)
        ) {
            return Err(Errno::ENOENT);
        }
        let dev = {
            let mut core = self.shared().iommu.locked();
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
            let n = core.next_device_id().0;
            core.add_device(iommu, &format!("mock:{n}"))?
        };
        let stdev = self
            .objects
            .insert(Object::Selftest(Box::new(Selftest { device: 0 })))?;
        let idev = match self.device_bind(dev) {
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
    pub(crate) fn check_map(
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
        let table = self.objects.hwpt_paging(hwpt)?.table.clone();
        let table = table.locked();
        // Identities are looked up a window of pages at a time, so a
        // caller-chosen length never sizes an allocation.
        let mut window: (u64, Vec<crate::memory::PageIdentity>) = (u64::MAX, Vec::new());
        let mut done = 0;
        while done < length {
            let va = uptr + done;
            let page = va / PAGE_SIZE;
            let window_first = page - page % CHECK_WINDOW_PAGES;
            if window.0 != window_first {
                window = (
                    window_first,
                    caller
                        .mem
                        .page_identities(window_first * PAGE_SIZE, CHECK_WINDOW_PAGES),
                );
            }
            let id = window.1[(page - window_first) as usize];
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
    pub(crate) fn check_refs(
        &self,
        caller: &Caller<'_>,
        uptr: u64,
        length: u64,
        refs: u32,
    ) -> Result<()> {
        use crate::memory::PAGE_SIZE;
        use crate::pages::Frame;
        if uptr % PAGE_SIZE != 0 || length % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        uptr.checked_add(length).ok_or(Errno::EINVAL)?;
        // A window of pages at a time; each window must be mapped in the
        // caller (`EFAULT`, as Linux's pin of the page fails), so a huge
        // length over unmapped memory ends at once.
        let mut at = uptr;
        let end = uptr + length;
        while at < end {
            let mut npages = ((end - at) / PAGE_SIZE).min(CHECK_WINDOW_PAGES);
            let mut len = npages * PAGE_SIZE;
            let runs = match caller
                .mem
                .probe_and_identify_runs(at, len, false, at, npages)
            {
                Ok(runs) => runs,
                // Linux checks page by page: a wrong count before the
                // unmapped page is EIO, the unmapped page itself EFAULT.
                Err(_) => {
                    (npages, len) = (1, PAGE_SIZE);
                    caller.mem.probe_and_identify_runs(at, len, false, at, 1)?
                }
            };
            for id in runs.iter().flat_map(|r| (0..r.count).map(|k| r.nth(k))) {
                let frame = Frame {
                    space: id.space,
                    page: id.page,
                };
                if self.shared().pin_count(frame) != refs {
                    return Err(Errno::EIO);
                }
            }
            at += len;
        }
        Ok(())
    }
}
