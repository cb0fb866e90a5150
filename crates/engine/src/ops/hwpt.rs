//! HWPTs (Linux `hw_pagetable.c`): paging HWPTs filled from an IOAS and
//! nested HWPTs over a nest parent or made through a vIOMMU, all made by one
//! entry, [`Context::hwpt_alloc`], and destroyed with their domain.

use crate::context::Context;
use crate::errno::{Errno, Result};
use crate::ioas::DomainRef;
use crate::memory::user_copy::Payload;
use crate::object::{HwptNested, HwptPaging, Object};
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::DeviceId;

/// What [`Context::hwpt_alloc`] makes (the forms of `IOMMU_HWPT_ALLOC`).
#[derive(Clone, Copy)]
pub enum HwptSpec<'a> {
    /// A paging HWPT filled from IOAS `ioas`.
    Paging {
        /// Object id of the IOAS.
        ioas: u32,
        /// Nest parent, dirty tracking.
        flags: PagingFlags,
        /// Leaf sizes a driver's paging data chose (`None`: the driver's own).
        pgsize_bitmap: Option<u64>,
    },
    /// A nested HWPT over nest-parent paging HWPT `parent`.
    Nested {
        /// Object id of the nest parent.
        parent: u32,
        /// `IOMMU_HWPT_DATA_*` of the payload.
        data_type: u32,
        /// The driver's stage-1 data, read once the driver is known.
        payload: Payload<'a>,
    },
    /// A nested HWPT made through vIOMMU `viommu`.
    ViommuNested {
        /// Object id of the vIOMMU.
        viommu: u32,
        /// `IOMMU_HWPT_DATA_*` of the payload.
        data_type: u32,
        /// The driver's stage-1 data.
        payload: Payload<'a>,
    },
}

impl HwptSpec<'_> {
    /// A paging HWPT from `ioas` with the driver's own leaf sizes.
    pub fn paging(ioas: u32, flags: PagingFlags) -> Self {
        HwptSpec::Paging {
            ioas,
            flags,
            pgsize_bitmap: None,
        }
    }
}

impl Context {
    /// Makes a HWPT for bound device `dev_id` (`IOMMU_HWPT_ALLOC` after its
    /// argument checks); the checks run in Linux's order, the payload is
    /// read after the parent checks. Returns the HWPT's id.
    pub fn hwpt_alloc(&mut self, dev_id: u32, spec: HwptSpec<'_>) -> Result<u32> {
        match spec {
            HwptSpec::Paging {
                ioas,
                flags,
                pgsize_bitmap,
            } => {
                let dev = self.objects.device(dev_id)?.dev;
                self.objects.ioas(ioas)?;
                self.new_paging_hwpt(dev, ioas, flags, false, pgsize_bitmap)
            }
            HwptSpec::Nested {
                parent,
                data_type,
                payload,
            } => self.new_nested_hwpt(dev_id, parent, data_type, payload, false),
            HwptSpec::ViommuNested {
                viommu,
                data_type,
                payload,
            } => self.new_viommu_nested_hwpt(dev_id, viommu, data_type, payload),
        }
    }

    /// A paging HWPT for machine device `dev`'s IOMMU, filled from `ioas`;
    /// `auto` when an attach to the IOAS makes it (it goes with its last device).
    pub(crate) fn new_paging_hwpt(
        &mut self,
        dev: DeviceId,
        ioas: u32,
        flags: PagingFlags,
        auto: bool,
        pgsize_bitmap: Option<u64>,
    ) -> Result<u32> {
        self.shared().fail_nth.check()?;
        let (domain, table) = {
            let mut core = self.core();
            let iommu = core.topology().iommu_of(dev);
            let domain = core.alloc_paging_sized(iommu, flags, pgsize_bitmap)?;
            (domain, core.paging_table(domain).ok_or(Errno::ENOMEM)?)
        };
        let hwpt = HwptPaging {
            pasid_compat: false,
            ioas,
            domain,
            table: table.clone(),
            auto,
            flags,
            fault: None,
        };
        let id = match self.objects.insert(Object::HwptPaging(Box::new(hwpt))) {
            Ok(id) => id,
            Err(e) => {
                let _ = self.core().free_domain(domain);
                return Err(e);
            }
        };
        if let Err(e) = self
            .ioas_mut(ioas)
            .and_then(|t| t.add_domain(DomainRef { hwpt: id, table }))
        {
            let _ = self.objects.remove(id);
            let _ = self.core().free_domain(domain);
            return Err(e);
        }
        self.objects.add_user(ioas);
        Ok(id)
    }

    /// A nested HWPT over nest parent `parent`, directly or (`via_viommu`)
    /// for a vIOMMU over it.
    fn new_nested_hwpt(
        &mut self,
        dev_id: u32,
        parent: u32,
        data_type: u32,
        payload: Payload<'_>,
        via_viommu: bool,
    ) -> Result<u32> {
        let dev = self.objects.device(dev_id)?.dev;
        let (parent_domain, auto, nest_parent) = {
            let p = self.objects.hwpt_paging(parent)?;
            (p.domain, p.auto, p.flags.nest_parent)
        };
        let driver = {
            let core = self.core();
            let mine = core
                .topology()
                .iommu(core.topology().iommu_of(dev))
                .driver
                .clone();
            let parents = core
                .domain(parent_domain)
                .map(|d| core.topology().iommu(d.iommu).driver.name.clone())
                .unwrap_or_default();
            if auto || !nest_parent || parents != mine.name {
                return Err(Errno::EINVAL);
            }
            mine
        };
        if driver.nested_data_type == 0
            || data_type != driver.nested_data_type
            || (driver.nested_needs_viommu && !via_viommu)
        {
            return Err(Errno::EOPNOTSUPP);
        }
        let payload = payload.read(driver.nested_data_min, driver.nested_data_size)?;
        let ops = crate::driver::ops_for(&driver);
        ops.check_nested_data(&payload)?;
        self.shared().fail_nth.check()?;
        let domain = self.core().alloc_nested(parent_domain, data_type)?;
        let driver_data = ops.new_nested_data(&payload);
        let nested = HwptNested {
            pasid_compat: false,
            parent,
            domain,
            data_type,
            data: payload,
            driver_data,
            fault: None,
            viommu: None,
            stage1_tlb: Default::default(),
        };
        match self.objects.insert(Object::HwptNested(Box::new(nested))) {
            Ok(id) => {
                self.objects.add_user(parent);
                Ok(id)
            }
            Err(e) => {
                let _ = self.core().free_domain(domain);
                Err(e)
            }
        }
    }

    /// A nested HWPT made through vIOMMU `viommu_id` for `dev_id`, which must
    /// sit behind the vIOMMU's IOMMU (`EINVAL`). The vIOMMU, not its nest
    /// parent, holds the new HWPT's reference.
    fn new_viommu_nested_hwpt(
        &mut self,
        dev_id: u32,
        viommu_id: u32,
        data_type: u32,
        payload: Payload<'_>,
    ) -> Result<u32> {
        let (parent, iommu) = {
            let v = self.viommu(viommu_id)?;
            (v.hwpt, v.iommu)
        };
        let dev = self.objects.device(dev_id)?.dev;
        if self.core().topology().iommu_of(dev) != iommu {
            return Err(Errno::EINVAL);
        }
        let id = self.new_nested_hwpt(dev_id, parent, data_type, payload, true)?;
        if let Some(Object::HwptNested(n)) = self.objects.get_mut(id) {
            n.viommu = Some(viommu_id);
        }
        self.objects.drop_user(parent);
        self.objects.add_user(viommu_id);
        Ok(id)
    }

    /// The domain behind a paging or nested HWPT, and the IOAS whose reserved
    /// IOVA governs it (a nested HWPT's parent's).
    pub(crate) fn hwpt_target(&self, hwpt: u32) -> Result<(softiommu_iommu::DomainId, u32)> {
        if let Ok(h) = self.objects.hwpt_paging(hwpt) {
            return Ok((h.domain, h.ioas));
        }
        let n = self.objects.hwpt_nested(hwpt)?;
        Ok((n.domain, self.objects.hwpt_paging(n.parent)?.ioas))
    }

    pub(crate) fn destroy_hwpt(&mut self, id: u32, hwpt: HwptPaging) {
        if let Ok(t) = self.ioas_mut(hwpt.ioas) {
            t.remove_domain(id);
        }
        self.objects.drop_user(hwpt.ioas);
        if let Some(fault) = hwpt.fault {
            self.objects.drop_user(fault);
        }
        let _ = self.core().free_domain(hwpt.domain);
    }

    pub(crate) fn destroy_nested(&mut self, hwpt: HwptNested) {
        self.objects.drop_user(hwpt.viommu.unwrap_or(hwpt.parent));
        if let Some(fault) = hwpt.fault {
            self.objects.drop_user(fault);
        }
        let _ = self.core().free_domain(hwpt.domain);
    }
}
