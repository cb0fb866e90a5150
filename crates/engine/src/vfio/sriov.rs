//! SR-IOV through vfio-pci: a physical function (PF) bound to vfio-pci
//! creates its virtual functions (VFs) when `sriov_numvfs` is written
//! (Linux `sriov_numvfs_store` and `vfio_pci_core_sriov_configure`), each
//! VF a new function with its own address and group; and the VF token, the
//! UUID that a PF's user and its VFs' users must share
//! (`vfio_pci_core_match_token_uuid`).
//!
//! Lock order: the host's group use, then functions (in address order),
//! then a VF token.
//!
//! Deviation: Linux removes VFs that a program still has open by asking it
//! to let go (the REQ interrupt) and waiting; here disabling VFs while any
//! is open fails with `EBUSY` instead of blocking the writer.

use super::{Function, HostState, VfioHost};
use crate::errno::{Errno, Result};
use crate::pages::EngineState;
use crate::sync::Locked;
use softiommu_iommu::{DeviceId, GroupId};
use softiommu_pci::{Address, FunctionSpec};
use std::sync::{Arc, Mutex};

/// A PF's VF token (Linux `vfio_pci_vf_token`). A leaf lock.
#[derive(Debug)]
pub struct VfToken {
    /// The UUID, random until a PF user sets it.
    pub uuid: [u8; 16],
    /// Device files open on the PF's VFs: while any is, the PF's users
    /// must present the token too.
    pub users: u32,
}

/// A function's part in SR-IOV.
#[derive(Debug, Default)]
pub enum SriovRole {
    /// Neither PF nor VF: a VF token given to it is `EINVAL`.
    #[default]
    None,
    /// A physical function with the SR-IOV capability.
    Pf {
        /// The token its VFs' users must present.
        token: Arc<Mutex<VfToken>>,
        /// Its enabled VFs, VF 0 first.
        vfs: Vec<DeviceId>,
    },
    /// A virtual function created through vfio-pci.
    Vf {
        /// Its PF.
        pf: DeviceId,
        /// The PF's token.
        token: Arc<Mutex<VfToken>>,
    },
}

impl SriovRole {
    /// The role of a function built from `spec`: a PF (with a fresh random
    /// token, as vfio-pci's `uuid_gen`) when it has SR-IOV.
    pub fn for_spec(spec: &FunctionSpec) -> Self {
        match spec.sriov {
            Some(_) => SriovRole::Pf {
                token: Arc::new(Mutex::new(VfToken {
                    uuid: random_uuid(),
                    users: 0,
                })),
                vfs: Vec::new(),
            },
            None => SriovRole::None,
        }
    }

    /// Checks a token a user presents to open the function, and lets a PF
    /// user set it while no VF is open (Linux
    /// `vfio_pci_core_match_token_uuid`): a VF needs its PF's token
    /// (`EACCES` without or wrong); a PF whose VFs are open needs it too; a
    /// token for a function that is neither is `EINVAL`.
    pub fn match_token(&self, uuid: Option<&[u8; 16]>) -> Result<()> {
        match self {
            SriovRole::Vf { token, .. } => match uuid {
                Some(uuid) if token.locked().uuid == *uuid => Ok(()),
                _ => Err(Errno::EACCES),
            },
            SriovRole::Pf { token, .. } => {
                let mut token = token.locked();
                if token.users > 0 {
                    return match uuid {
                        Some(uuid) if token.uuid == *uuid => Ok(()),
                        _ => Err(Errno::EACCES),
                    };
                }
                if let Some(uuid) = uuid {
                    token.uuid = *uuid;
                }
                Ok(())
            }
            SriovRole::None => match uuid {
                Some(_) => Err(Errno::EINVAL),
                None => Ok(()),
            },
        }
    }

    /// The token whose users an open VF counts in.
    pub fn vf_token(&self) -> Option<&Arc<Mutex<VfToken>>> {
        match self {
            SriovRole::Vf { token, .. } => Some(token),
            _ => None,
        }
    }

    /// The token `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN` sets: a PF's.
    pub fn pf_token(&self) -> Option<&Arc<Mutex<VfToken>>> {
        match self {
            SriovRole::Pf { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// A VF that went away: what its sysfs entries were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedVf {
    /// Its address.
    pub name: String,
    /// The group it had alone.
    pub group: GroupId,
}

/// What a write of `sriov_numvfs` changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SriovChange {
    /// VFs created, VF 0 first.
    pub added: Vec<DeviceId>,
    /// VFs removed, VF 0 first.
    pub removed: Vec<RemovedVf>,
}

impl VfioHost {
    /// `(TotalVFs, NumVFs)` of PF `dev`; `None` for a function without
    /// SR-IOV.
    pub fn sriov_counts(&self, dev: DeviceId) -> Option<(u16, u16)> {
        let function = self.function(dev)?;
        let f = function.locked();
        let total = f.spec().sriov.as_ref()?.total_vfs;
        match &f.sriov {
            SriovRole::Pf { vfs, .. } => Some((total, vfs.len() as u16)),
            _ => None,
        }
    }

    /// A write of `text` to PF `dev`'s `sriov_numvfs` (Linux
    /// `sriov_numvfs_store`): a number (decimal, `0x` hex or `0` octal,
    /// one trailing newline allowed; `EINVAL` otherwise, `ERANGE` past 16
    /// bits or past TotalVFs). The same number changes nothing; a PF whose
    /// driver is not vfio-pci is `ENOENT`; 0 removes the VFs (`EBUSY`
    /// while one is open, see the module's deviation); a new number while
    /// VFs are enabled is `EBUSY`.
    pub fn write_sriov_numvfs(
        &self,
        shared: &EngineState,
        dev: DeviceId,
        text: &[u8],
    ) -> Result<SriovChange> {
        let requested = parse_u16(text)?;
        let pf = self.function(dev).ok_or(Errno::ENOENT)?;
        let mut pf = pf.locked();
        let Some(total) = pf.spec().sriov.as_ref().map(|s| s.total_vfs) else {
            return Err(Errno::ENOENT);
        };
        if requested > total {
            return Err(Errno::ERANGE);
        }
        let current = match &pf.sriov {
            SriovRole::Pf { vfs, .. } => vfs.len() as u16,
            _ => return Err(Errno::ENOENT),
        };
        if requested == current {
            return Ok(SriovChange::default());
        }
        if shared
            .iommu
            .locked()
            .topology()
            .device(dev)
            .kernel_driver
            .is_some()
        {
            return Err(Errno::ENOENT);
        }
        if requested == 0 {
            return disable(&self.host, shared, &mut pf);
        }
        if current != 0 {
            return Err(Errno::EBUSY);
        }
        enable(&self.host, shared, &mut pf, requested)
    }
}

/// Creates `n` VFs of `pf`: each a new device in a group of its own behind
/// the PF's IOMMU, with the PF's reserved regions, bound to vfio-pci.
fn enable(
    host: &HostState,
    shared: &EngineState,
    pf: &mut Function,
    n: u16,
) -> Result<SriovChange> {
    let sriov = pf.spec().sriov.clone().ok_or(Errno::ENOENT)?;
    let token = pf.sriov.pf_token().cloned().ok_or(Errno::ENOENT)?;
    let vf_spec = sriov.vf_function(pf.spec());
    let mut added = Vec::new();
    let mut made = Vec::new();
    let outcome = (|| -> Result<()> {
        let (iommu, address, reserved) = {
            let core = shared.iommu.locked();
            let topology = core.topology();
            let spec = topology.device(pf.dev);
            let address = Address::parse(&spec.name).ok_or(Errno::EINVAL)?;
            (topology.iommu_of(pf.dev), address, spec.reserved.clone())
        };
        for index in 0..n {
            let name = address
                .virtual_function(&sriov, index)
                .ok_or(Errno::EINVAL)?
                .to_string();
            let dev = {
                let mut core = shared.iommu.locked();
                if core.topology().device_by_name(&name).is_some() {
                    return Err(Errno::EEXIST);
                }
                core.add_function(iommu, &name, Some(vf_spec.clone()), reserved.clone())
                    .map_err(|_| Errno::ENODEV)?
            };
            let group = shared.iommu.locked().topology().device(dev).group;
            added.push(dev);
            let mut functions = host.functions.locked();
            let minor = functions.free_minor();
            let mut vf = Function::new(dev, group, &vf_spec, minor)?;
            vf.sriov = SriovRole::Vf {
                pf: pf.dev,
                token: token.clone(),
            };
            functions.insert(dev, minor, vf);
            made.push(dev);
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        // Undo in reverse: nothing of a failed enable stays.
        let mut functions = host.functions.locked();
        for &dev in &made {
            functions.remove(dev);
        }
        drop(functions);
        let mut core = shared.iommu.locked();
        for &dev in added.iter().rev() {
            let _ = core.remove_device(dev);
        }
        return Err(e);
    }
    pf.config.set_sriov_enabled(n).map_err(|_| Errno::EINVAL)?;
    if let SriovRole::Pf { vfs, .. } = &mut pf.sriov {
        *vfs = added.clone();
    }
    Ok(SriovChange {
        added,
        removed: Vec::new(),
    })
}

/// Removes every VF of `pf`, none of which may be open. Each is marked
/// removed under its lock while no file has it open and its group is not
/// held, so no open can slip in between the check and the removal.
fn disable(host: &HostState, shared: &EngineState, pf: &mut Function) -> Result<SriovChange> {
    let vfs = match &pf.sriov {
        SriovRole::Pf { vfs, .. } => vfs.clone(),
        _ => return Err(Errno::ENOENT),
    };
    let functions: Vec<Arc<Mutex<Function>>> =
        vfs.iter().filter_map(|&dev| host.function(dev)).collect();
    {
        let use_ = host.groups.locked();
        let mut locked: Vec<_> = functions.iter().map(|f| f.locked()).collect();
        let busy = |f: &Function| {
            f.open_files > 0
                || use_.open.contains(&f.group)
                || use_.cdev_bound.get(&f.group).is_some_and(|&n| n > 0)
        };
        if locked.iter().any(|f| busy(f)) {
            return Err(Errno::EBUSY);
        }
        for f in &mut locked {
            f.removed = true;
        }
    }
    {
        let mut map = host.functions.locked();
        for &dev in &vfs {
            map.remove(dev);
        }
    }
    let mut removed = Vec::new();
    let mut core = shared.iommu.locked();
    for &dev in &vfs {
        let spec = core.topology().device(dev);
        let gone = RemovedVf {
            name: spec.name.clone(),
            group: spec.group,
        };
        core.remove_device(dev)?;
        removed.push(gone);
    }
    drop(core);
    pf.config.set_sriov_enabled(0).map_err(|_| Errno::EINVAL)?;
    if let SriovRole::Pf { vfs, .. } = &mut pf.sriov {
        vfs.clear();
    }
    Ok(SriovChange {
        added: Vec::new(),
        removed,
    })
}

/// Linux's `kstrtou16(text, 0)`.
fn parse_u16(text: &[u8]) -> Result<u16> {
    crate::text::parse_unsigned(text, u64::from(u16::MAX)).map(|v| v as u16)
}

/// A version-4 UUID from the process's random hasher keys.
fn random_uuid() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for (i, half) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_kstrtou16_does() {
        assert_eq!(parse_u16(b"1"), Ok(1));
        assert_eq!(parse_u16(b"1\n"), Ok(1));
        assert_eq!(parse_u16(b"0x10"), Ok(16));
        assert_eq!(parse_u16(b"010"), Ok(8));
        assert_eq!(parse_u16(b"0"), Ok(0));
        assert_eq!(parse_u16(b"+3"), Ok(3));
        assert_eq!(parse_u16(b"65536"), Err(Errno::ERANGE));
        for bad in [&b""[..], b"\n", b"-1", b"1 ", b"x", b"08", b"1\n\n", b"0x"] {
            assert_eq!(parse_u16(bad), Err(Errno::EINVAL), "{bad:?}");
        }
    }

    #[test]
    fn tokens_follow_vfio_pci() {
        let spec = FunctionSpec {
            sriov: Some(softiommu_pci::SriovSpec {
                total_vfs: 1,
                vf_device: 1,
                first_vf_offset: 1,
                vf_stride: 1,
                vf_bars: Vec::new(),
                vf_msix: None,
            }),
            ..Default::default()
        };
        let pf = SriovRole::for_spec(&spec);
        let (a, b) = ([1u8; 16], [2u8; 16]);
        // With no VF open, a PF user may set the token, or give none.
        assert_eq!(pf.match_token(None), Ok(()));
        assert_eq!(pf.match_token(Some(&a)), Ok(()));
        let token = pf.pf_token().unwrap().clone();
        let vf = SriovRole::Vf {
            pf: DeviceId(0),
            token: token.clone(),
        };
        assert_eq!(vf.match_token(Some(&a)), Ok(()));
        assert_eq!(vf.match_token(Some(&b)), Err(Errno::EACCES));
        assert_eq!(vf.match_token(None), Err(Errno::EACCES));
        // A VF in use: the PF needs the token too and cannot change it.
        token.locked().users = 1;
        assert_eq!(pf.match_token(None), Err(Errno::EACCES));
        assert_eq!(pf.match_token(Some(&b)), Err(Errno::EACCES));
        assert_eq!(pf.match_token(Some(&a)), Ok(()));
        assert_eq!(SriovRole::None.match_token(Some(&a)), Err(Errno::EINVAL));
        assert_eq!(SriovRole::None.match_token(None), Ok(()));
        assert_ne!(random_uuid(), random_uuid());
    }
}
