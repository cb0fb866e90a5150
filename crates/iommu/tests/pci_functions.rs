//! Machine devices that are PCI functions: the built-in machine's, and
//! those a topology file describes.

use softiommu_iommu::Topology;

#[test]
fn every_pci_device_of_the_built_in_machine_is_a_function() {
    let topo = Topology::default_machine();
    let pci: Vec<&str> = topo
        .devices
        .iter()
        .filter(|d| d.pci.is_some())
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        pci,
        [
            "0000:01:00.0",
            "0000:01:00.1",
            "0000:01:00.2",
            "0000:02:00.0",
            "0000:03:00.0",
            "0000:04:00.0",
            "0000:00:04.0",
            "0000:6a:01.0"
        ]
    );
    let dsa = topo.device(topo.device_by_name("0000:6a:01.0").unwrap());
    assert_eq!(dsa.model.as_deref(), Some("dsa"));
    assert_eq!(dsa.pci.as_ref().unwrap().ids.device, 0x0b25);
    // The I/OAT channel: its model's function.
    let ioat = topo.device(topo.device_by_name("0000:00:04.0").unwrap());
    assert_eq!(ioat.model.as_deref(), Some("ioat"));
    assert_eq!(ioat.pci.as_ref().unwrap().ids.device, 0x2021);
    // The SR-IOV port: its VFs are not there until enabled.
    let pf = topo.device(topo.device_by_name("0000:04:00.0").unwrap());
    let sriov = pf.pci.as_ref().unwrap().sriov.as_ref().unwrap();
    assert_eq!((sriov.total_vfs, sriov.vf_device), (8, 0x10ed));
    assert!(topo.device_by_name("0000:04:10.0").is_none());
    // The selftest's mock device is no PCI function.
    let mock = topo.device_by_name("mock:0").unwrap();
    assert!(topo.device(mock).pci.is_none());
}

#[test]
fn a_topology_file_describes_a_function() {
    let topo = Topology::from_toml(
        r#"
        [[iommu]]
        name = "dmar0"
        driver = "intel_vtd"
        [[group]]
        iommu = "dmar0"
        devices = ["0000:05:00.0"]
        [[device]]
        name = "0000:05:00.0"
        [device.pci]
        ids = { vendor = 0x8086, device = 0x0b25, class = 0x088000 }
        bars = [{ index = 0, size = 0x10000, kind = { type = "mem64" } }]
        pcie = true
        "#,
    )
    .unwrap();
    let spec = topo.devices[0].pci.as_ref().unwrap();
    assert_eq!((spec.ids.vendor, spec.ids.device), (0x8086, 0x0b25));
    assert_eq!(spec.bars[0].size, 0x10000);
}

#[test]
fn a_function_the_pci_model_refuses_is_an_error_naming_the_device() {
    let err = Topology::from_toml(
        r#"
        [[iommu]]
        name = "dmar0"
        driver = "intel_vtd"
        [[group]]
        iommu = "dmar0"
        devices = ["0000:05:00.0"]
        [[device]]
        name = "0000:05:00.0"
        [device.pci]
        ids = { vendor = 0x8086, device = 0x0b25, class = 0x088000 }
        bars = [{ index = 0, size = 0x1001, kind = { type = "mem32" } }]
        "#,
    )
    .unwrap_err();
    assert!(err.0.contains("0000:05:00.0"), "{err}");
}
