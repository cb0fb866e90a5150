//! Groups, DMA ownership and group-consistent attach (Linux `iommu.c`, plus the
//! per-group attach bookkeeping iommufd keeps in `device.c`).
//!
//! Invariants, per group:
//! - `owner_cnt` counts kernel drivers bound (owner `None`) or devices claimed
//!   by the one user owner; never both kinds at once;
//! - owned (`owner` set) ⇒ the group's domain is never the default domain: it
//!   is the blocking domain, or the domain of `attach`;
//! - `attach` is set ⇔ at least one claimed device is attached, and then every
//!   device of the group translates through `attach.domain`.

use crate::domain::{new_table, Domain, DomainId, DomainKind, PagingFlags};
use crate::topology::{DeviceId, GroupId, IommuId, Topology};
use std::collections::{BTreeMap, BTreeSet};

pub use softiommu_uapi::errno::Errno;

/// A user owner of DMA (an iommufd context).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub u64);

/// Who holds a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// No driver and no user owner.
    Unbound,
    /// Bound to a kernel driver, which uses the group's default domain.
    Kernel(String),
    /// Claimed for user-owned DMA.
    Claimed(OwnerId),
}

/// One group's DMA moved from one domain to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The group whose domain changed.
    pub group: GroupId,
    /// The domain it translated through before.
    pub from: DomainId,
    /// The domain it translates through now; never equal to `from`.
    pub to: DomainId,
    /// Every device of the group: all of them now translate through `to`.
    pub devices: Vec<DeviceId>,
}

/// What a call changed. Empty when no device's DMA changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affected {
    /// One entry per group moved, in the order the moves happened.
    pub changes: Vec<Change>,
}

impl Affected {
    /// Devices whose translation changed.
    pub fn devices(&self) -> BTreeSet<DeviceId> {
        self.changes
            .iter()
            .flat_map(|c| c.devices.iter().copied())
            .collect()
    }

    /// Whether no device's translation changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The user attachment of a group: its domain and the claimed devices that
/// asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct UserAttach {
    domain: DomainId,
    devices: BTreeSet<DeviceId>,
}

#[derive(Debug)]
struct GroupState {
    owner: Option<OwnerId>,
    owner_cnt: u32,
    default_domain: DomainId,
    blocking_domain: Option<DomainId>,
    domain: DomainId,
    attach: Option<UserAttach>,
}

/// The IOMMU core of one machine.
#[derive(Debug)]
pub struct IommuCore {
    topo: Topology,
    groups: Vec<GroupState>,
    devices: Vec<DeviceState>,
    domains: BTreeMap<DomainId, Domain>,
    /// How many groups translate through each domain, plus how many nested
    /// domains sit on it; absent for none. Kept by `set_group_domain`,
    /// group creation and removal, `alloc_nested` and `free_domain`, so a
    /// free asks one map, not every group and domain.
    uses: BTreeMap<DomainId, u32>,
    next_domain: u64,
    /// Slots of hot-unplugged devices, each with the group it had alone;
    /// [`add_device`](IommuCore::add_device) reuses them, so plugging and
    /// unplugging forever keeps the machine's size bounded.
    unplugged: Vec<DeviceId>,
}

impl Default for IommuCore {
    /// The built-in machine ([`Topology::default_machine`]).
    fn default() -> Self {
        IommuCore::new(Topology::default_machine())
    }
}

impl IommuCore {
    /// Boots the machine: every group on its default domain, kernel drivers of
    /// the topology bound.
    pub fn new(topo: Topology) -> Self {
        let mut core = IommuCore {
            topo,
            groups: Vec::new(),
            devices: Vec::new(),
            domains: BTreeMap::new(),
            uses: BTreeMap::new(),
            next_domain: 1,
            unplugged: Vec::new(),
        };
        for g in 0..core.topo.groups.len() {
            let iommu = core.topo.groups[g].iommu;
            let default_domain = core.insert_domain(iommu, DomainKind::Default);
            core.use_domain(default_domain);
            core.groups.push(GroupState {
                owner: None,
                owner_cnt: 0,
                default_domain,
                blocking_domain: None,
                domain: default_domain,
                attach: None,
            });
        }
        core.devices = vec![DeviceState::Unbound; core.topo.devices.len()];
        for d in 0..core.topo.devices.len() {
            if let Some(k) = core.topo.devices[d].kernel_driver.clone() {
                let _ = core.bind_kernel_driver(DeviceId(d as u32), &k);
            }
        }
        core
    }

    /// Domains that exist (default and blocking ones included).
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// The machine: IOMMU instances, groups and devices.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    fn use_domain(&mut self, id: DomainId) {
        *self.uses.entry(id).or_insert(0) += 1;
    }

    fn unuse_domain(&mut self, id: DomainId) {
        if let Some(n) = self.uses.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.uses.remove(&id);
            }
        }
    }

    fn insert_domain(&mut self, iommu: IommuId, kind: DomainKind) -> DomainId {
        let id = DomainId(self.next_domain);
        self.next_domain += 1;
        self.domains.insert(id, Domain { iommu, kind });
        id
    }

    fn check_device(&self, dev: DeviceId) -> Result<(), Errno> {
        if (dev.0 as usize) < self.devices.len() {
            Ok(())
        } else {
            Err(Errno::ENODEV)
        }
    }

    fn group_of(&self, dev: DeviceId) -> GroupId {
        self.topo.device(dev).group
    }

    fn gs(&self, g: GroupId) -> &GroupState {
        &self.groups[g.0 as usize]
    }

    fn gs_mut(&mut self, g: GroupId) -> &mut GroupState {
        &mut self.groups[g.0 as usize]
    }

    /// Moves group `g` to `to`, recording the change.
    fn set_group_domain(&mut self, g: GroupId, to: DomainId) -> Affected {
        let from = self.gs(g).domain;
        if from == to {
            return Affected::default();
        }
        self.gs_mut(g).domain = to;
        self.unuse_domain(from);
        self.use_domain(to);
        if crate::watch::recording() {
            let topo = &self.topo;
            crate::watch::note(
                topo.group(g)
                    .devices
                    .iter()
                    .map(|&d| topo.device(d).name.as_str()),
            );
        }
        Affected {
            changes: vec![Change {
                group: g,
                from,
                to,
                devices: self.topo.group(g).devices.clone(),
            }],
        }
    }

    /// The id the next [`add_device`](Self::add_device) will give.
    pub fn next_device_id(&self) -> DeviceId {
        self.unplugged
            .last()
            .copied()
            .unwrap_or(DeviceId(self.topo.devices.len() as u32))
    }

    /// Adds a device in a group of its own behind IOMMU `iommu` (hot-plug; the
    /// selftest's mock devices arrive this way), in an unplugged device's
    /// slot when there is one.
    pub fn add_device(&mut self, iommu: IommuId, name: &str) -> Result<DeviceId, Errno> {
        self.add_function(iommu, name, None, Vec::new())
    }

    /// Adds a device as [`add_device`](Self::add_device) does, with its PCI
    /// function and reserved regions (an SR-IOV virtual function arrives
    /// this way when its PF enables it).
    pub fn add_function(
        &mut self,
        iommu: IommuId,
        name: &str,
        pci: Option<softiommu_pci::FunctionSpec>,
        reserved: Vec<crate::driver::ReservedRegion>,
    ) -> Result<DeviceId, Errno> {
        self.topo
            .iommus
            .get(iommu.0 as usize)
            .ok_or(Errno::ENODEV)?;
        let default_domain = self.insert_domain(iommu, DomainKind::Default);
        self.use_domain(default_domain);
        let state = GroupState {
            owner: None,
            owner_cnt: 0,
            default_domain,
            blocking_domain: None,
            domain: default_domain,
            attach: None,
        };
        let spec = |group| crate::topology::DeviceSpec {
            name: name.into(),
            group,
            kernel_driver: None,
            reserved,
            pci,
            model: None,
        };
        if let Some(dev) = self.unplugged.pop() {
            let group = self.topo.devices[dev.0 as usize].group;
            self.topo.devices[dev.0 as usize] = spec(group);
            self.topo.groups[group.0 as usize] = crate::topology::GroupSpec {
                iommu,
                devices: vec![dev],
            };
            self.groups[group.0 as usize] = state;
            self.devices[dev.0 as usize] = DeviceState::Unbound;
            return Ok(dev);
        }
        let group = GroupId(self.topo.groups.len() as u32);
        let dev = DeviceId(self.topo.devices.len() as u32);
        self.topo.devices.push(spec(group));
        self.topo.groups.push(crate::topology::GroupSpec {
            iommu,
            devices: vec![dev],
        });
        self.groups.push(state);
        self.devices.push(DeviceState::Unbound);
        Ok(dev)
    }

    /// Unplugs a device that [`add_device`](Self::add_device) plugged: it
    /// must be unbound and its group back on its default domain (`EBUSY`
    /// otherwise). Its group's domains go with it; its slot waits for the
    /// next hot-plug.
    pub fn remove_device(&mut self, dev: DeviceId) -> Result<(), Errno> {
        self.check_device(dev)?;
        if !self.is_present(dev) {
            return Err(Errno::ENODEV);
        }
        let g = self.group_of(dev);
        let gs = self.gs(g);
        if self.devices[dev.0 as usize] != DeviceState::Unbound
            || self.topo.group(g).devices != [dev]
            || gs.domain != gs.default_domain
            || gs.owner.is_some()
        {
            return Err(Errno::EBUSY);
        }
        let (default_domain, blocking) = (gs.default_domain, gs.blocking_domain);
        self.domains.remove(&default_domain);
        self.uses.remove(&default_domain);
        if let Some(b) = blocking {
            self.domains.remove(&b);
        }
        let slot = &mut self.topo.devices[dev.0 as usize];
        slot.name.clear();
        slot.pci = None;
        slot.model = None;
        slot.reserved.clear();
        self.topo.groups[g.0 as usize].devices.clear();
        self.unplugged.push(dev);
        Ok(())
    }

    /// Whether `dev` is plugged in (not an unplugged slot).
    pub fn is_present(&self, dev: DeviceId) -> bool {
        // An unplugged slot keeps no name; every plugged device has one.
        self.topo
            .devices
            .get(dev.0 as usize)
            .is_some_and(|d| !d.name.is_empty())
    }

    /// Adds an IOMMU instance (hot-plug).
    pub fn add_iommu(&mut self, name: &str, driver: crate::driver::DriverInfo) -> IommuId {
        self.topo.iommus.push(crate::topology::IommuSpec {
            name: name.into(),
            driver,
        });
        IommuId(self.topo.iommus.len() as u32 - 1)
    }

    // ---- inspection -----------------------------------------------------------------------

    /// Who holds `dev`.
    pub fn device_state(&self, dev: DeviceId) -> &DeviceState {
        &self.devices[dev.0 as usize]
    }

    /// The domain a group translates through now.
    pub fn group_domain(&self, g: GroupId) -> DomainId {
        self.gs(g).domain
    }

    /// The group's user owner; `None` while its DMA belongs to the kernel.
    pub fn group_owner(&self, g: GroupId) -> Option<OwnerId> {
        self.gs(g).owner
    }

    /// The group's default domain, fixed for its lifetime.
    pub fn default_domain(&self, g: GroupId) -> DomainId {
        self.gs(g).default_domain
    }

    /// The domain a device translates through.
    pub fn device_domain(&self, dev: DeviceId) -> DomainId {
        self.group_domain(self.group_of(dev))
    }

    /// Devices attached by their owner (not merely sharing the group's domain).
    pub fn attached_devices(&self, g: GroupId) -> Vec<DeviceId> {
        self.gs(g)
            .attach
            .as_ref()
            .map(|a| a.devices.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The domain `id`, if it exists.
    pub fn domain(&self, id: DomainId) -> Option<&Domain> {
        self.domains.get(&id)
    }

    /// The domain `id` for changing, if it exists.
    pub fn domain_mut(&mut self, id: DomainId) -> Option<&mut Domain> {
        self.domains.get_mut(&id)
    }

    /// Groups currently translating through `id`.
    pub fn groups_using(&self, id: DomainId) -> Vec<GroupId> {
        (0..self.groups.len())
            .map(|g| GroupId(g as u32))
            .filter(|&g| self.gs(g).domain == id)
            .collect()
    }

    // ---- kernel drivers -------------------------------------------------------------------

    /// A kernel driver binds (Linux `iommu_device_use_default_domain`): `EBUSY`
    /// while a user owns the group or the group is off its default domain.
    pub fn bind_kernel_driver(&mut self, dev: DeviceId, driver: &str) -> Result<(), Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Unbound {
            return Err(Errno::EBUSY);
        }
        let g = self.group_of(dev);
        let st = self.gs(g);
        if st.owner_cnt > 0 && (st.owner.is_some() || st.domain != st.default_domain) {
            return Err(Errno::EBUSY);
        }
        self.gs_mut(g).owner_cnt += 1;
        self.devices[dev.0 as usize] = DeviceState::Kernel(driver.into());
        Ok(())
    }

    /// The kernel driver lets go of `dev`.
    pub fn unbind_kernel_driver(&mut self, dev: DeviceId) -> Result<(), Errno> {
        self.check_device(dev)?;
        if !matches!(self.devices[dev.0 as usize], DeviceState::Kernel(_)) {
            return Err(Errno::EINVAL);
        }
        let g = self.group_of(dev);
        self.gs_mut(g).owner_cnt -= 1;
        self.devices[dev.0 as usize] = DeviceState::Unbound;
        Ok(())
    }

    // ---- DMA ownership --------------------------------------------------------------------

    /// Claims `dev` for `owner` (Linux `iommu_device_claim_dma_owner`). The
    /// first claim on a group takes the whole group off its default domain onto
    /// the blocking domain; every device of the group must be unbound or claimed
    /// by the same owner (`EPERM` if another owner or a kernel driver holds it).
    pub fn claim(&mut self, owner: OwnerId, dev: DeviceId) -> Result<Affected, Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Unbound {
            return Err(Errno::EBUSY);
        }
        let g = self.group_of(dev);
        let st = self.gs(g);
        if st.owner_cnt > 0 {
            if st.owner != Some(owner) {
                return Err(Errno::EPERM);
            }
            self.gs_mut(g).owner_cnt += 1;
            self.devices[dev.0 as usize] = DeviceState::Claimed(owner);
            return Ok(Affected::default());
        }
        if st.domain != st.default_domain {
            return Err(Errno::EBUSY);
        }
        let iommu = self.topo.group(g).iommu;
        let blocking = match st.blocking_domain {
            Some(b) => b,
            None => {
                let b = self.insert_domain(iommu, DomainKind::Blocking);
                self.gs_mut(g).blocking_domain = Some(b);
                b
            }
        };
        let st = self.gs_mut(g);
        st.owner = Some(owner);
        st.owner_cnt = 1;
        self.devices[dev.0 as usize] = DeviceState::Claimed(owner);
        Ok(self.set_group_domain(g, blocking))
    }

    /// Releases `owner`'s claim on `dev`, detaching it first if attached. The
    /// last release gives the group its default domain back.
    pub fn release(&mut self, owner: OwnerId, dev: DeviceId) -> Result<Affected, Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Claimed(owner) {
            return Err(Errno::EINVAL);
        }
        let mut affected = self.detach(owner, dev)?;
        let g = self.group_of(dev);
        self.devices[dev.0 as usize] = DeviceState::Unbound;
        let st = self.gs_mut(g);
        st.owner_cnt -= 1;
        if st.owner_cnt == 0 {
            st.owner = None;
            let default = st.default_domain;
            affected
                .changes
                .extend(self.set_group_domain(g, default).changes);
        }
        Ok(affected)
    }

    // ---- domains --------------------------------------------------------------------------

    /// Allocates a paging domain on `iommu` (`EOPNOTSUPP` for a capability the
    /// driver lacks).
    pub fn alloc_paging(&mut self, iommu: IommuId, flags: PagingFlags) -> Result<DomainId, Errno> {
        self.alloc_paging_sized(iommu, flags, None)
    }

    /// As [`alloc_paging`](Self::alloc_paging), with leaf sizes other than
    /// the driver's (a driver can offer several table shapes).
    pub fn alloc_paging_sized(
        &mut self,
        iommu: IommuId,
        flags: PagingFlags,
        pgsize_bitmap: Option<u64>,
    ) -> Result<DomainId, Errno> {
        let driver = &self
            .topo
            .iommus
            .get(iommu.0 as usize)
            .ok_or(Errno::ENODEV)?
            .driver;
        if (flags.dirty_tracking && !driver.dirty_tracking)
            || (flags.nest_parent && !driver.nesting)
        {
            return Err(Errno::EOPNOTSUPP);
        }
        let table = match pgsize_bitmap {
            Some(sizes) => {
                let mut shaped = driver.clone();
                shaped.pgsize_bitmap = sizes;
                new_table(&shaped)
            }
            None => new_table(driver),
        }
        .ok_or(Errno::ENOMEM)?;
        Ok(self.insert_domain(
            iommu,
            DomainKind::Paging {
                table: std::sync::Arc::new(std::sync::Mutex::new(table)),
                flags,
            },
        ))
    }

    /// Allocates a nested domain over nest-parent `parent` (`EINVAL` when the
    /// parent is not a nest-parent paging domain).
    pub fn alloc_nested(&mut self, parent: DomainId, data_type: u32) -> Result<DomainId, Errno> {
        let p = self.domains.get(&parent).ok_or(Errno::ENOENT)?;
        match &p.kind {
            DomainKind::Paging { flags, .. } if flags.nest_parent => {}
            _ => return Err(Errno::EINVAL),
        }
        let iommu = p.iommu;
        self.use_domain(parent);
        Ok(self.insert_domain(iommu, DomainKind::Nested { parent, data_type }))
    }

    /// The page table of a paging domain; `None` for other kinds.
    pub fn paging_table(
        &self,
        id: DomainId,
    ) -> Option<std::sync::Arc<std::sync::Mutex<softiommu_pt::AnyPageTable>>> {
        match &self.domains.get(&id)?.kind {
            DomainKind::Paging { table, .. } => Some(table.clone()),
            _ => None,
        }
    }

    /// An identity domain on `iommu`; `ENODEV` if there is no such IOMMU.
    pub fn alloc_identity(&mut self, iommu: IommuId) -> Result<DomainId, Errno> {
        self.topo
            .iommus
            .get(iommu.0 as usize)
            .ok_or(Errno::ENODEV)?;
        Ok(self.insert_domain(iommu, DomainKind::Identity))
    }

    /// Frees a user domain: `EBUSY` while a group uses it or a nested domain
    /// sits on it; `EINVAL` for a group's own default or blocking domain.
    pub fn free_domain(&mut self, id: DomainId) -> Result<(), Errno> {
        let d = self.domains.get(&id).ok_or(Errno::ENOENT)?;
        if matches!(d.kind, DomainKind::Default | DomainKind::Blocking) {
            return Err(Errno::EINVAL);
        }
        let in_use = self.uses.contains_key(&id);
        // Debug builds (the tests) check the count against a full scan.
        debug_assert_eq!(
            in_use,
            !self.groups_using(id).is_empty()
                || self
                    .domains
                    .values()
                    .any(|x| matches!(x.kind, DomainKind::Nested { parent, .. } if parent == id)),
            "use count of {id:?} disagrees with the groups and domains"
        );
        if in_use {
            return Err(Errno::EBUSY);
        }
        if let Some(Domain {
            kind: DomainKind::Nested { parent, .. },
            ..
        }) = self.domains.remove(&id)
        {
            self.unuse_domain(parent);
        }
        Ok(())
    }

    /// Whether a user may attach `dev`'s group to `domain`.
    fn check_attachable(&self, dev: DeviceId, domain: DomainId) -> Result<(), Errno> {
        let d = self.domains.get(&domain).ok_or(Errno::ENOENT)?;
        // Domains belong to a driver: any instance of the same driver may use
        // them, as Linux compares the domain's ops with the device's.
        let dev_driver = &self.topo.iommu(self.topo.iommu_of(dev)).driver;
        if self.topo.iommu(d.iommu).driver.name != dev_driver.name {
            return Err(Errno::EINVAL);
        }
        match &d.kind {
            DomainKind::Default | DomainKind::Blocking => Err(Errno::EINVAL),
            // A device that cannot track dirty pages cannot use a domain that does.
            DomainKind::Paging { flags, .. }
                if flags.dirty_tracking && !dev_driver.dirty_tracking =>
            {
                Err(Errno::EINVAL)
            }
            _ => Ok(()),
        }
    }

    // ---- device-centric attach ------------------------------------------------------------

    /// Attaches claimed device `dev` to `domain`. The first device of a group
    /// attaches the whole group; later devices must name the same domain
    /// (`EINVAL` otherwise) and change no DMA; attaching twice is `EBUSY`.
    pub fn attach(
        &mut self,
        owner: OwnerId,
        dev: DeviceId,
        domain: DomainId,
    ) -> Result<Affected, Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Claimed(owner) {
            return Err(Errno::EINVAL);
        }
        self.check_attachable(dev, domain)?;
        let g = self.group_of(dev);
        match &mut self.gs_mut(g).attach {
            Some(a) if a.domain != domain => Err(Errno::EINVAL),
            Some(a) => {
                if !a.devices.insert(dev) {
                    return Err(Errno::EBUSY);
                }
                Ok(Affected::default())
            }
            slot @ None => {
                *slot = Some(UserAttach {
                    domain,
                    devices: BTreeSet::from([dev]),
                });
                Ok(self.set_group_domain(g, domain))
            }
        }
    }

    /// Switches the attached group of `dev` to `domain` in one step, never
    /// passing through the blocking domain. `EINVAL` if `dev` is not attached.
    pub fn replace(
        &mut self,
        owner: OwnerId,
        dev: DeviceId,
        domain: DomainId,
    ) -> Result<Affected, Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Claimed(owner) {
            return Err(Errno::EINVAL);
        }
        let g = self.group_of(dev);
        let current = match &self.gs(g).attach {
            Some(a) if a.devices.contains(&dev) => a.domain,
            _ => return Err(Errno::EINVAL),
        };
        if current == domain {
            return Ok(Affected::default());
        }
        self.check_attachable(dev, domain)?;
        if let Some(a) = &mut self.gs_mut(g).attach {
            a.domain = domain;
        }
        Ok(self.set_group_domain(g, domain))
    }

    /// Detaches `dev`. The last attached device of a group takes the group back
    /// to the blocking domain. A device that is not attached is left as it is,
    /// whatever the size of its group: nothing changes and nothing is reported.
    pub fn detach(&mut self, owner: OwnerId, dev: DeviceId) -> Result<Affected, Errno> {
        self.check_device(dev)?;
        if self.devices[dev.0 as usize] != DeviceState::Claimed(owner) {
            return Err(Errno::EINVAL);
        }
        let g = self.group_of(dev);
        let Some(a) = &mut self.gs_mut(g).attach else {
            return Ok(Affected::default());
        };
        if !a.devices.remove(&dev) {
            return Ok(Affected::default());
        }
        if !a.devices.is_empty() {
            return Ok(Affected::default());
        }
        self.gs_mut(g).attach = None;
        let blocking = self.gs(g).blocking_domain.ok_or(Errno::EINVAL)?;
        Ok(self.set_group_domain(g, blocking))
    }
}
