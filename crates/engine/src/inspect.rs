//! What `softiommu inspect` shows: every device with its group, holder and
//! current domain, which IOAS feeds that domain, and each IOAS's mappings.
//! Group-wide effects are visible here: a device that was never attached still
//! shows the domain its group moved to.

use crate::context::Context;
use crate::object::ObjectType;
use crate::sync::Locked;
use softiommu_iommu::{DeviceId, DeviceState, DomainKind, GroupId};
use std::fmt;

/// One device's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceReport {
    /// The device's name in the topology.
    pub name: String,
    /// Number of its IOMMU group.
    pub group: u32,
    /// Devices in that group, this one included.
    pub group_size: usize,
    /// Name of the IOMMU instance its group sits behind.
    pub iommu: String,
    /// `unbound`, `kernel driver X`, `owned by this context` or `owned by another context`.
    pub holder: String,
    /// The domain the device translates through now, described.
    pub domain: String,
    /// Whether this device itself asked for its group's attachment.
    pub attached: bool,
    /// The DMA owner that claimed it (a context's [`Context::owner_id`]),
    /// if one did.
    pub owner: Option<u64>,
    /// The kernel driver bound to it, if one is.
    pub kernel_driver: Option<String>,
    /// The domain it translates through now, and that domain's kind.
    pub domain_id: u64,
    /// `default`, `blocking`, `identity`, `paging`, `nested`.
    pub domain_kind: String,
}

/// One IOAS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoasReport {
    /// Object id of the IOAS.
    pub id: u32,
    /// Alignment in bytes every mapping must keep.
    pub iova_alignment: u64,
    /// HWPT ids whose domains mirror it.
    pub hwpts: Vec<u32>,
    /// `(first, last, "rw", pinned pages)`.
    pub areas: Vec<(u64, u64, String, u64)>,
}

/// The whole picture for one context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Every device of the machine, in topology order.
    pub devices: Vec<DeviceReport>,
    /// Every IOAS of the context, by ascending id.
    pub ioas: Vec<IoasReport>,
    /// The context as a DMA owner ([`Context::owner_id`]).
    pub owner: u64,
    /// Its paging HWPTs as `(hwpt id, domain id, IOAS id)`.
    pub hwpts: Vec<(u32, u64, u32)>,
    /// Every live object as `(id, type)`, by ascending id.
    pub objects: Vec<(u32, &'static str)>,
}

/// Describes the machine as `ctx` sees it.
pub fn report(ctx: &Context) -> Report {
    let core = ctx.shared().iommu.locked();
    let topo = core.topology();
    let hwpts: Vec<(u32, softiommu_iommu::DomainId, u32)> = ctx
        .objects()
        .ids_of(ObjectType::HwptPaging)
        .into_iter()
        .filter_map(|id| {
            ctx.objects()
                .hwpt_paging(id)
                .ok()
                .map(|h| (id, h.domain, h.ioas))
        })
        .collect();
    let mut devices = Vec::new();
    for (i, spec) in topo.devices.iter().enumerate() {
        let dev = DeviceId(i as u32);
        if !core.is_present(dev) {
            continue;
        }
        let group = spec.group;
        let domain_id = core.group_domain(group);
        let kind = core.domain(domain_id).map(|d| d.kind.name()).unwrap_or("?");
        let domain = match hwpts.iter().find(|(_, d, _)| *d == domain_id) {
            Some((hwpt, _, ioas)) => format!(
                "{kind} domain {} = HWPT {hwpt}, fed by IOAS {ioas}",
                domain_id.0
            ),
            None => match core.domain(domain_id).map(|d| &d.kind) {
                Some(DomainKind::Paging { .. }) => {
                    format!("{kind} domain {} (another context)", domain_id.0)
                }
                _ => format!("{kind} domain {}", domain_id.0),
            },
        };
        let (owner, kernel_driver) = match core.device_state(dev) {
            DeviceState::Claimed(o) => (Some(o.0), None),
            DeviceState::Kernel(k) => (None, Some(k.to_string())),
            DeviceState::Unbound => (None, None),
        };
        let holder = match core.device_state(dev) {
            DeviceState::Unbound => "unbound".to_string(),
            DeviceState::Kernel(k) => format!("kernel driver {k}"),
            DeviceState::Claimed(o) if *o == ctx.owner_id() => "owned by this context".to_string(),
            DeviceState::Claimed(_) => "owned by another context".to_string(),
        };
        devices.push(DeviceReport {
            name: spec.name.clone(),
            group: group.0,
            group_size: topo.group(group).devices.len(),
            iommu: topo.iommu(topo.group(group).iommu).name.clone(),
            holder,
            domain,
            attached: core.attached_devices(GroupId(group.0)).contains(&dev),
            owner,
            kernel_driver,
            domain_id: domain_id.0,
            domain_kind: kind.to_owned(),
        });
    }
    let mut ioas = Vec::new();
    for id in ctx.objects().ids_of(ObjectType::Ioas) {
        let Ok(t) = ctx.ioas(id) else { continue };
        ioas.push(IoasReport {
            id,
            iova_alignment: t.iova_alignment(),
            hwpts: t.domains().iter().map(|d| d.hwpt).collect(),
            areas: t
                .areas()
                .map(|a| {
                    let rw = format!(
                        "{}{}",
                        if a.prot.read { "r" } else { "-" },
                        if a.prot.write { "w" } else { "-" }
                    );
                    (a.start, a.last, rw, a.pages.pinned())
                })
                .collect(),
        });
    }
    Report {
        devices,
        ioas,
        owner: ctx.owner_id().0,
        hwpts: hwpts.iter().map(|&(h, d, i)| (h, d.0, i)).collect(),
        objects: ctx.objects().kinds(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "devices:")?;
        for d in &self.devices {
            writeln!(
                f,
                "  {:<14} group {} ({} device{}) on {:<8} {:<26} {}{}",
                d.name,
                d.group,
                d.group_size,
                if d.group_size == 1 { "" } else { "s" },
                d.iommu,
                d.holder,
                d.domain,
                if d.attached { "  [attached]" } else { "" }
            )?;
        }
        for i in &self.ioas {
            let hwpts: Vec<String> = i.hwpts.iter().map(|h| h.to_string()).collect();
            writeln!(
                f,
                "IOAS {}: alignment {:#x}, mirrored by HWPT [{}]",
                i.id,
                i.iova_alignment,
                hwpts.join(", ")
            )?;
            for (s, l, rw, pinned) in &i.areas {
                writeln!(f, "  [{s:#014x}, {l:#014x}] {rw} {pinned} pages pinned")?;
            }
        }
        Ok(())
    }
}
