//! The group semantics of the seed review, each point in a named test, and a
//! state-machine test of bind / claim / attach / replace / detach / release /
//! kernel-driver bind against a small reference automaton.

use proptest::prelude::*;
use softiommu_iommu::domain::PagingFlags;
use softiommu_iommu::*;
use std::collections::BTreeSet;

/// iommu A: group 0 = {d0, d1, d2}, group 1 = {d3}; iommu B: group 2 = {d4}.
fn machine() -> IommuCore {
    let topo = Topology::builder()
        .iommu("A", DriverInfo::amd_v1())
        .iommu("B", DriverInfo::intel_vtd())
        .group("A", &["d0", "d1", "d2"])
        .unwrap()
        .group("A", &["d3"])
        .unwrap()
        .group("B", &["d4"])
        .unwrap()
        .build();
    IommuCore::new(topo)
}

const O1: OwnerId = OwnerId(1);
const O2: OwnerId = OwnerId(2);
fn d(i: u32) -> DeviceId {
    DeviceId(i)
}
fn set(v: &[u32]) -> BTreeSet<DeviceId> {
    v.iter().map(|&i| DeviceId(i)).collect()
}

#[test]
fn an_operation_on_one_device_reports_every_device_it_moves() {
    let mut core = machine();
    let pa = core
        .alloc_paging(IommuId(0), PagingFlags::default())
        .unwrap();
    let claimed = core.claim(O1, d(0)).unwrap();
    assert_eq!(
        claimed.devices(),
        set(&[0, 1, 2]),
        "claiming d0 blocks its whole group"
    );
    let attached = core.attach(O1, d(0), pa).unwrap();
    assert_eq!(
        attached.devices(),
        set(&[0, 1, 2]),
        "attaching d0 moves its whole group"
    );
    assert_eq!(attached.changes[0].to, pa);
    // d1 and d2 were never attached by anyone, yet they translate through pa:
    // the report and the inspection both say so.
    assert_eq!(core.device_domain(d(2)), pa);
    let detached = core.detach(O1, d(0)).unwrap();
    assert_eq!(
        detached.devices(),
        set(&[0, 1, 2]),
        "detaching the last device moves the group back"
    );
    let released = core.release(O1, d(0)).unwrap();
    assert_eq!(
        released.devices(),
        set(&[0, 1, 2]),
        "the last release restores the default domain"
    );
    assert_eq!(core.device_domain(d(1)), core.default_domain(GroupId(0)));
}

#[test]
fn the_first_device_attaches_the_group_and_the_rest_share_its_domain() {
    let mut core = machine();
    let pa1 = core
        .alloc_paging(IommuId(0), PagingFlags::default())
        .unwrap();
    let pa2 = core
        .alloc_paging(IommuId(0), PagingFlags::default())
        .unwrap();
    core.claim(O1, d(0)).unwrap();
    core.claim(O1, d(1)).unwrap();
    core.attach(O1, d(0), pa1).unwrap();
    // Attaching another device of the group elsewhere fails as in Linux.
    assert_eq!(core.attach(O1, d(1), pa2), Err(Errno::EINVAL));
    assert_eq!(
        core.replace(O1, d(1), pa2),
        Err(Errno::EINVAL),
        "d1 is not attached"
    );
    // Joining the group's domain changes no DMA.
    assert_eq!(core.attach(O1, d(1), pa1), Ok(Affected::default()));
    assert_eq!(core.attach(O1, d(1), pa1), Err(Errno::EBUSY));
    // Only when the last attached device leaves does the group move.
    assert!(core.detach(O1, d(0)).unwrap().is_empty());
    assert_eq!(core.device_domain(d(0)), pa1);
    assert_eq!(core.detach(O1, d(1)).unwrap().devices(), set(&[0, 1, 2]));
    // Replace moves the whole group at once, never through blocking.
    core.attach(O1, d(0), pa1).unwrap();
    let r = core.replace(O1, d(0), pa2).unwrap();
    assert_eq!(r.changes.len(), 1);
    assert_eq!((r.changes[0].from, r.changes[0].to), (pa1, pa2));
}

#[test]
fn detaching_a_device_that_is_not_attached_is_the_same_whatever_the_group_size() {
    for (dev, group) in [(0u32, 0u32), (3, 1)] {
        let mut core = machine();
        let pa = core
            .alloc_paging(IommuId(0), PagingFlags::default())
            .unwrap();
        core.claim(O1, d(dev)).unwrap();
        let before = core.device_domain(d(dev));
        assert_eq!(
            core.detach(O1, d(dev)),
            Ok(Affected::default()),
            "group {group}, never attached"
        );
        assert_eq!(core.device_domain(d(dev)), before);
        core.attach(O1, d(dev), pa).unwrap();
        core.detach(O1, d(dev)).unwrap();
        assert_eq!(
            core.detach(O1, d(dev)),
            Ok(Affected::default()),
            "group {group}, detached twice"
        );
        assert_eq!(core.attached_devices(GroupId(group)), vec![]);
    }
}

#[test]
fn an_owned_group_is_blocked_until_attached_and_gets_its_default_back() {
    let mut core = machine();
    let g = GroupId(0);
    let default = core.default_domain(g);
    assert_eq!(core.group_domain(g), default);
    core.claim(O1, d(1)).unwrap();
    let blocked = core.group_domain(g);
    assert_ne!(blocked, default);
    assert_eq!(core.domain(blocked).unwrap().kind.name(), "blocking");
    let pa = core
        .alloc_paging(IommuId(0), PagingFlags::default())
        .unwrap();
    core.attach(O1, d(1), pa).unwrap();
    core.detach(O1, d(1)).unwrap();
    assert_eq!(
        core.group_domain(g),
        blocked,
        "owned and detached: blocked, not default"
    );
    core.claim(O1, d(2)).unwrap();
    core.release(O1, d(1)).unwrap();
    assert_eq!(core.group_domain(g), blocked, "still owned through d2");
    core.release(O1, d(2)).unwrap();
    assert_eq!(core.group_domain(g), default);
    assert_eq!(core.group_owner(g), None);
}

#[test]
fn ownership_conflicts_use_linux_errnos() {
    let mut core = machine();
    core.bind_kernel_driver(d(0), "e1000e").unwrap();
    assert_eq!(
        core.claim(O1, d(1)),
        Err(Errno::EPERM),
        "a kernel driver holds the group"
    );
    assert_eq!(
        core.claim(O1, d(0)),
        Err(Errno::EBUSY),
        "the device itself is bound"
    );
    core.unbind_kernel_driver(d(0)).unwrap();
    core.claim(O1, d(1)).unwrap();
    assert_eq!(
        core.claim(O2, d(2)),
        Err(Errno::EPERM),
        "another owner holds the group"
    );
    assert_eq!(
        core.bind_kernel_driver(d(0), "e1000e"),
        Err(Errno::EBUSY),
        "no kernel driver on an owned group"
    );
    let pb = core
        .alloc_paging(IommuId(1), PagingFlags::default())
        .unwrap();
    assert_eq!(
        core.attach(O1, d(1), pb),
        Err(Errno::EINVAL),
        "a domain of another IOMMU"
    );
    assert_eq!(
        core.attach(O2, d(1), pb),
        Err(Errno::EINVAL),
        "not the owner"
    );
    assert_eq!(core.unbind_kernel_driver(d(1)), Err(Errno::EINVAL));
    assert_eq!(core.claim(O1, DeviceId(99)), Err(Errno::ENODEV));
}

#[test]
fn domains_in_use_cannot_be_freed_and_nesting_needs_a_parent() {
    let mut core = machine();
    assert_eq!(
        core.alloc_paging(
            IommuId(0),
            PagingFlags {
                nest_parent: true,
                dirty_tracking: false
            }
        ),
        Err(Errno::EOPNOTSUPP)
    );
    let parent = core
        .alloc_paging(
            IommuId(1),
            PagingFlags {
                nest_parent: true,
                dirty_tracking: true,
            },
        )
        .unwrap();
    let plain = core
        .alloc_paging(IommuId(1), PagingFlags::default())
        .unwrap();
    assert_eq!(core.alloc_nested(plain, 1), Err(Errno::EINVAL));
    let nested = core.alloc_nested(parent, 1).unwrap();
    assert_eq!(core.free_domain(parent), Err(Errno::EBUSY));
    core.claim(O1, d(4)).unwrap();
    core.attach(O1, d(4), nested).unwrap();
    assert_eq!(core.free_domain(nested), Err(Errno::EBUSY));
    core.release(O1, d(4)).unwrap();
    core.free_domain(nested).unwrap();
    core.free_domain(parent).unwrap();
    let default = core.default_domain(GroupId(0));
    assert_eq!(core.free_domain(default), Err(Errno::EINVAL));
}

#[test]
fn topologies_come_from_toml_and_the_default_machine_has_a_multi_device_group() {
    let t = Topology::from_toml(
        r#"
        [[iommu]]
        name = "smmu0"
        driver = "arm_smmuv3"
        [[group]]
        iommu = "smmu0"
        devices = ["a", "b"]
        [[device]]
        name = "a"
        kernel_driver = "ixgbe"
        reserved = [{ start = 0x8000000, length = 0x100000, type = "sw_msi" }]
        "#,
    )
    .unwrap();
    assert_eq!(t.groups[0].devices.len(), 2);
    assert_eq!(t.device(DeviceId(0)).reserved[0].kind, ReservedType::SwMsi);
    let core = IommuCore::new(t);
    assert_eq!(
        core.device_state(DeviceId(0)),
        &DeviceState::Kernel("ixgbe".into())
    );
    assert!(Topology::from_toml("[[group]]\niommu = \"nope\"\ndevices = [\"x\"]").is_err());
    assert!(Topology::from_toml("[[iommu]]\nname = \"i\"\ndriver = \"unknown\"").is_err());
    assert!(Topology::from_toml("[[iommu]]\nname = \"i\"\ndriver = \"mock\"\nbogus = 1").is_err());
    let m = Topology::default_machine();
    assert!(m.groups.iter().any(|g| g.devices.len() >= 3));
    assert!(m.iommus.len() >= 2);
}

// ---- the state machine against a reference automaton ---------------------------------------

#[derive(Clone, Copy, Debug)]
enum Op {
    BindKernel(u32),
    UnbindKernel(u32),
    Claim(u64, u32),
    Release(u64, u32),
    Attach(u64, u32, usize),
    Replace(u64, u32, usize),
    Detach(u64, u32),
}

/// Reference: device holders, each group's attached domain and devices.
#[derive(Clone, Debug, PartialEq)]
enum Holder {
    Free,
    Kernel,
    User(u64),
}

const GROUPS: [&[u32]; 3] = [&[0, 1, 2], &[3], &[4]];
/// The user domains: two on IOMMU A, one on B.
const DOMAIN_IOMMU: [usize; 3] = [0, 0, 1];

fn group_of(dev: u32) -> usize {
    GROUPS.iter().position(|g| g.contains(&dev)).unwrap()
}
fn iommu_of_group(g: usize) -> usize {
    if g == 2 {
        1
    } else {
        0
    }
}

/// What a group translates through, symbolically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dma {
    Default,
    Blocked,
    Domain(usize),
}

#[derive(Clone, Debug)]
struct Reference {
    holder: [Holder; 5],
    attach: [Option<(usize, BTreeSet<u32>)>; 3],
}

impl Reference {
    fn dma(&self, g: usize) -> Dma {
        if !GROUPS[g]
            .iter()
            .any(|&d| matches!(self.holder[d as usize], Holder::User(_)))
        {
            return Dma::Default;
        }
        match &self.attach[g] {
            Some((dom, _)) => Dma::Domain(*dom),
            None => Dma::Blocked,
        }
    }

    fn step(&mut self, op: Op) -> Result<(), Errno> {
        match op {
            Op::BindKernel(dv) => {
                let g = group_of(dv);
                if self.holder[dv as usize] != Holder::Free
                    || GROUPS[g]
                        .iter()
                        .any(|&x| matches!(self.holder[x as usize], Holder::User(_)))
                {
                    return Err(Errno::EBUSY);
                }
                self.holder[dv as usize] = Holder::Kernel;
            }
            Op::UnbindKernel(dv) => {
                if self.holder[dv as usize] != Holder::Kernel {
                    return Err(Errno::EINVAL);
                }
                self.holder[dv as usize] = Holder::Free;
            }
            Op::Claim(o, dv) => {
                if self.holder[dv as usize] != Holder::Free {
                    return Err(Errno::EBUSY);
                }
                let g = group_of(dv);
                for &x in GROUPS[g] {
                    match self.holder[x as usize] {
                        Holder::Kernel => return Err(Errno::EPERM),
                        Holder::User(p) if p != o => return Err(Errno::EPERM),
                        _ => {}
                    }
                }
                self.holder[dv as usize] = Holder::User(o);
            }
            Op::Release(o, dv) => {
                if self.holder[dv as usize] != Holder::User(o) {
                    return Err(Errno::EINVAL);
                }
                self.step(Op::Detach(o, dv))?;
                self.holder[dv as usize] = Holder::Free;
            }
            Op::Attach(o, dv, dom) => {
                if self.holder[dv as usize] != Holder::User(o) {
                    return Err(Errno::EINVAL);
                }
                let g = group_of(dv);
                if DOMAIN_IOMMU[dom] != iommu_of_group(g) {
                    return Err(Errno::EINVAL);
                }
                match &mut self.attach[g] {
                    Some((cur, _)) if *cur != dom => return Err(Errno::EINVAL),
                    Some((_, devs)) => {
                        if !devs.insert(dv) {
                            return Err(Errno::EBUSY);
                        }
                    }
                    None => self.attach[g] = Some((dom, BTreeSet::from([dv]))),
                }
            }
            Op::Replace(o, dv, dom) => {
                if self.holder[dv as usize] != Holder::User(o) {
                    return Err(Errno::EINVAL);
                }
                let g = group_of(dv);
                match &mut self.attach[g] {
                    Some((cur, devs)) if devs.contains(&dv) => {
                        if *cur != dom {
                            if DOMAIN_IOMMU[dom] != iommu_of_group(g) {
                                return Err(Errno::EINVAL);
                            }
                            *cur = dom;
                        }
                    }
                    _ => return Err(Errno::EINVAL),
                }
            }
            Op::Detach(o, dv) => {
                if self.holder[dv as usize] != Holder::User(o) {
                    return Err(Errno::EINVAL);
                }
                let g = group_of(dv);
                if let Some((_, devs)) = &mut self.attach[g] {
                    devs.remove(&dv);
                    if devs.is_empty() {
                        self.attach[g] = None;
                    }
                }
            }
        }
        Ok(())
    }
}

fn run_sequence(ops: &[Op]) {
    let mut core = machine();
    let doms = [
        core.alloc_paging(IommuId(0), PagingFlags::default())
            .unwrap(),
        core.alloc_paging(IommuId(0), PagingFlags::default())
            .unwrap(),
        core.alloc_paging(IommuId(1), PagingFlags::default())
            .unwrap(),
    ];
    let mut model = Reference {
        holder: [
            Holder::Free,
            Holder::Free,
            Holder::Free,
            Holder::Free,
            Holder::Free,
        ],
        attach: [None, None, None],
    };
    let symbolic = |core: &IommuCore, g: usize| -> Dma {
        let id = core.group_domain(GroupId(g as u32));
        if id == core.default_domain(GroupId(g as u32)) {
            Dma::Default
        } else if let Some(i) = doms.iter().position(|&x| x == id) {
            Dma::Domain(i)
        } else {
            Dma::Blocked
        }
    };
    for (n, &op) in ops.iter().enumerate() {
        let before: Vec<Dma> = (0..3).map(|g| model.dma(g)).collect();
        let mut next = model.clone();
        let want = next.step(op);
        if want.is_ok() {
            model = next;
        }
        let got = match op {
            Op::BindKernel(x) => core
                .bind_kernel_driver(d(x), "drv")
                .map(|()| Affected::default()),
            Op::UnbindKernel(x) => core
                .unbind_kernel_driver(d(x))
                .map(|()| Affected::default()),
            Op::Claim(o, x) => core.claim(OwnerId(o), d(x)),
            Op::Release(o, x) => core.release(OwnerId(o), d(x)),
            Op::Attach(o, x, dom) => core.attach(OwnerId(o), d(x), doms[dom]),
            Op::Replace(o, x, dom) => core.replace(OwnerId(o), d(x), doms[dom]),
            Op::Detach(o, x) => core.detach(OwnerId(o), d(x)),
        };
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(|e| *e),
            want,
            "step {n}: {op:?} in {ops:?}"
        );
        let after: Vec<Dma> = (0..3).map(|g| model.dma(g)).collect();
        let expected: BTreeSet<DeviceId> = (0..3)
            .filter(|&g| before[g] != after[g])
            .flat_map(|g| GROUPS[g].iter().map(|&x| DeviceId(x)))
            .collect();
        assert_eq!(
            got.map(|a| a.devices()).unwrap_or_default(),
            expected,
            "affected devices at step {n}: {op:?}"
        );
        for (g, want) in after.iter().enumerate() {
            assert_eq!(
                symbolic(&core, g),
                *want,
                "group {g} after step {n}: {op:?}"
            );
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let dev = 0u32..5;
    let owner = 1u64..3;
    let dom = 0usize..3;
    prop_oneof![
        1 => dev.clone().prop_map(Op::BindKernel),
        1 => dev.clone().prop_map(Op::UnbindKernel),
        4 => (owner.clone(), dev.clone()).prop_map(|(o, x)| Op::Claim(o, x)),
        2 => (owner.clone(), dev.clone()).prop_map(|(o, x)| Op::Release(o, x)),
        5 => (owner.clone(), dev.clone(), dom.clone()).prop_map(|(o, x, m)| Op::Attach(o, x, m)),
        2 => (owner.clone(), dev.clone(), dom).prop_map(|(o, x, m)| Op::Replace(o, x, m)),
        3 => (owner, dev).prop_map(|(o, x)| Op::Detach(o, x)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_agree_with_the_reference(ops in prop::collection::vec(op(), 1..80)) {
        run_sequence(&ops);
    }
}

/// Every sequence of three operations over a reduced alphabet (the
/// three-device group, the single-device group and the other IOMMU's device).
#[test]
fn every_short_sequence_agrees_with_the_reference() {
    let mut alphabet = Vec::new();
    for x in [0u32, 1, 3, 4] {
        alphabet.extend([
            Op::BindKernel(x),
            Op::Claim(1, x),
            Op::Release(1, x),
            Op::Detach(1, x),
            Op::Claim(2, x),
        ]);
        alphabet.extend([
            Op::Attach(1, x, 0),
            Op::Attach(1, x, 1),
            Op::Attach(1, x, 2),
            Op::Replace(1, x, 1),
        ]);
    }
    let mut count = 0;
    for &a in &alphabet {
        for &b in &alphabet {
            for &c in &alphabet {
                run_sequence(&[a, b, c]);
                count += 1;
            }
        }
    }
    assert_eq!(count, alphabet.len().pow(3));
}
