//! Register behaviour of a built configuration space: sizing, masks,
//! capability lists, interrupt capabilities, SR-IOV and reset.

mod common;

use common::*;
use softiommu_pci::layout::{
    acs_offset, EXP_OFFSET, MSIX_OFFSET, MSI_OFFSET, PM_OFFSET, SRIOV_OFFSET,
};
use softiommu_pci::regs::*;
use softiommu_pci::{ConfigError, ConfigSpace};

fn full() -> ConfigSpace {
    ConfigSpace::new(&full_spec()).unwrap()
}

/// Writes all ones to a BAR register and returns what reads back.
fn size_bar(space: &mut ConfigSpace, offset: u64) -> u32 {
    write_u32(space, offset, !0);
    read_u32(space, offset)
}

#[test]
fn mem32_bar_sizing_reads_back_size_mask_without_prefetch_bit() {
    let mut space = full();
    assert_eq!(read_u32(&space, 0x18), 0);
    assert_eq!(size_bar(&mut space, 0x18), !(0x1000 - 1) & !0xf);
    write_u32(&mut space, 0x18, 0xfebf_0000);
    assert_eq!(space.bar_address(2), Some(0xfebf_0000));
}

#[test]
fn mem64_prefetchable_bar_sizing_covers_both_halves() {
    let mut space = full();
    assert_eq!(
        read_u32(&space, 0x10),
        0b1100,
        "64-bit, prefetchable at power-on"
    );
    assert_eq!(size_bar(&mut space, 0x10), !(0x4000u32 - 1) | 0b1100);
    assert_eq!(
        size_bar(&mut space, 0x14),
        !0,
        "a 16 KiB BAR decodes every high bit"
    );
    write_u32(&mut space, 0x10, 0x2000_0000);
    write_u32(&mut space, 0x14, 0x0000_0040);
    assert_eq!(space.bar_address(0), Some(0x40_2000_0000));
    assert_eq!(
        space.bar_address(1),
        None,
        "the upper half is not a BAR of its own"
    );
}

#[test]
fn mem64_bar_above_4g_has_read_only_low_bits_in_high_half() {
    let mut space = full();
    assert_eq!(
        size_bar(&mut space, 0x20),
        0b0100,
        "8 GiB: no low address bit is writable"
    );
    assert_eq!(
        size_bar(&mut space, 0x24),
        !1,
        "bit 32 of an 8 GiB BAR reads 0"
    );
    assert_eq!(space.bar_address(4), Some(!((1u64 << 33) - 1)));
}

#[test]
fn io_bar_sizing_keeps_io_space_bit() {
    let mut space = full();
    assert_eq!(read_u32(&space, 0x1c), 1);
    assert_eq!(size_bar(&mut space, 0x1c), !(0x20 - 1) | 1);
    write_u32(&mut space, 0x1c, 0xc040);
    assert_eq!(space.bar_address(3), Some(0xc040));
}

#[test]
fn unimplemented_bar_and_rom_read_zero_after_all_ones() {
    let mut space = ConfigSpace::new(&conventional_spec()).unwrap();
    for offset in [0x14, 0x18, 0x1c, 0x20, 0x24, ROM_ADDRESS as u64] {
        assert_eq!(size_bar(&mut space, offset), 0, "offset {offset:#x}");
    }
    assert_eq!(space.bar_address(1), None);
}

#[test]
fn vf_bar_sizing_works_like_a_bar() {
    let mut space = full();
    let vf_bar0 = (SRIOV_OFFSET + SRIOV_VF_BAR0) as u64;
    assert_eq!(size_bar(&mut space, vf_bar0), !(0x2000u32 - 1) | 0b1100);
    write_u32(&mut space, vf_bar0, 0x8000_0000);
    write_u32(&mut space, vf_bar0 + 4, 0x1);
    assert_eq!(space.vf_bar_address(0), Some(0x1_8000_0000));
}

#[test]
fn identity_registers_ignore_writes() {
    let mut space = full();
    let fresh = full();
    for offset in [
        VENDOR_ID,
        DEVICE_ID,
        REVISION_ID,
        SUBSYSTEM_VENDOR_ID,
        SUBSYSTEM_ID,
    ] {
        write_u16(&mut space, offset as u64, 0xdead);
    }
    space.write(CLASS_CODE as u64, &[0xaa; 3]).unwrap();
    space.write(HEADER_TYPE as u64, &[0x80, 0xff]).unwrap();
    space.write(CAPABILITY_LIST as u64, &[0x99]).unwrap();
    space.write(INTERRUPT_PIN as u64, &[0x3]).unwrap();
    let mut got = [0; 0x40];
    let mut want = [0; 0x40];
    space.read(0, &mut got).unwrap();
    fresh.read(0, &mut want).unwrap();
    assert_eq!(got, want);
    assert_eq!(read_u16(&space, 0), 0x8086);
    assert_eq!(read_u32(&space, 8), 0x0200_0002);
    assert_eq!(read_u8(&space, INTERRUPT_PIN as u64), 1);
}

#[test]
fn command_register_takes_only_its_writable_bits() {
    let mut space = full();
    write_u16(&mut space, COMMAND as u64, 0xffff);
    let writable = COMMAND_IO
        | COMMAND_MEMORY
        | COMMAND_BUS_MASTER
        | COMMAND_PARITY
        | COMMAND_SERR
        | COMMAND_INTX_DISABLE;
    assert_eq!(space.command(), writable);
    assert!(space.memory_enabled() && space.bus_master() && space.io_enabled());
    assert!(space.intx_disabled());
    write_u16(&mut space, COMMAND as u64, 0);
    assert!(!space.memory_enabled() && !space.bus_master());
}

#[test]
fn status_error_bits_are_write_one_to_clear() {
    let mut space = full();
    // Writing ones where nothing is set changes nothing: the bits cannot be
    // set by software.
    write_u16(&mut space, STATUS as u64, 0xffff);
    assert_eq!(space.status(), STATUS_CAP_LIST);
    space.set_interrupt_status(true);
    assert_eq!(space.status(), STATUS_CAP_LIST | STATUS_INTERRUPT);
    write_u16(&mut space, STATUS as u64, 0xffff);
    assert_eq!(
        space.status() & STATUS_INTERRUPT,
        STATUS_INTERRUPT,
        "interrupt status is read-only"
    );
}

#[test]
fn express_device_status_errors_clear_on_one() {
    let mut space = full();
    let devsta = (EXP_OFFSET + EXP_DEVSTA) as u64;
    assert_eq!(space.byte_masks(EXP_OFFSET + EXP_DEVSTA), Some((0, 0x0f)));
    write_u16(&mut space, devsta, 0xffff);
    assert_eq!(read_u16(&space, devsta), 0);
}

#[test]
fn capability_walk_finds_every_capability_in_order() {
    let space = full();
    assert_ne!(space.status() & STATUS_CAP_LIST, 0);
    let caps = space.capabilities();
    assert_eq!(
        caps,
        vec![
            (CAP_ID_PM, PM_OFFSET as u16),
            (CAP_ID_MSI, MSI_OFFSET as u16),
            (CAP_ID_MSIX, MSIX_OFFSET as u16),
            (CAP_ID_EXP, EXP_OFFSET as u16),
        ]
    );
    // Well-formed: each next pointer is the following capability and the
    // last is 0.
    for pair in caps.windows(2) {
        assert_eq!(
            u16::from(read_u8(&space, u64::from(pair[0].1) + 1)),
            pair[1].1
        );
    }
    assert_eq!(read_u8(&space, u64::from(caps.last().unwrap().1) + 1), 0);
    assert_eq!(
        space.extended_capabilities(),
        vec![
            (EXT_CAP_ID_SRIOV, SRIOV_OFFSET as u16),
            (EXT_CAP_ID_ACS, acs_offset(&full_spec()) as u16)
        ]
    );
    let acs_header = read_u32(&space, acs_offset(&full_spec()) as u64);
    assert_eq!(acs_header >> 20, 0, "the extended list is terminated");
    assert_eq!((acs_header >> 16) & 0xf, 1, "version 1");
}

#[test]
fn conventional_function_has_only_pm_and_256_bytes() {
    let space = ConfigSpace::new(&conventional_spec()).unwrap();
    assert_eq!(space.len(), 256);
    assert_eq!(space.capabilities(), vec![(CAP_ID_PM, PM_OFFSET as u16)]);
    assert!(space.extended_capabilities().is_empty());
    assert!(space.msi().is_none() && space.msix().is_none());
    assert_eq!(space.sriov_num_vfs(), None);
}

#[test]
fn express_function_without_extended_capabilities_reads_zero_at_0x100() {
    let mut spec = conventional_spec();
    spec.pcie = true;
    let space = ConfigSpace::new(&spec).unwrap();
    assert_eq!(space.len(), 4096);
    assert_eq!(read_u32(&space, 0x100), 0);
    assert!(space.extended_capabilities().is_empty());
    let devcap = read_u32(&space, (EXP_OFFSET + EXP_DEVCAP) as u64);
    assert_ne!(
        devcap & EXP_DEVCAP_FLR,
        0,
        "FLR capable, so vfio-pci reports reset"
    );
}

#[test]
fn msi_programming_is_reflected_by_msi() {
    let mut space = full();
    let base = MSI_OFFSET as u64;
    let before = space.msi().unwrap();
    assert!(!before.enabled);
    assert_eq!((before.vectors_capable, before.vectors_enabled), (8, 1));
    write_u32(&mut space, base + 4, 0xfee0_0003);
    write_u32(&mut space, base + 8, 0x1);
    write_u16(&mut space, base + 12, 0x4041);
    write_u32(&mut space, base + 16, !0);
    // Enable with 4 vectors (log2 2 in bits 6:4); the read-only bits of
    // message control stay as built.
    write_u16(&mut space, base + 2, !MSI_CONTROL_ENABLED_MASK | (2 << 4));
    let msi = space.msi().unwrap();
    assert!(msi.enabled);
    assert_eq!(
        msi.address, 0x1_fee0_0000,
        "the two low address bits are hardwired"
    );
    assert_eq!(msi.data, 0x4041);
    assert_eq!(msi.vectors_enabled, 4);
    assert_eq!(msi.vectors_capable, 8);
    assert_eq!(
        msi.mask_bits,
        Some(0xff),
        "only implemented vectors have mask bits"
    );
    assert_eq!(
        read_u16(&space, base + 2) & 0xff8e,
        MSI_CONTROL_64BIT | MSI_CONTROL_PER_VECTOR_MASK | (3 << 1)
    );
}

#[test]
fn msi_allocation_above_capable_is_cut_down() {
    let mut space = full();
    write_u16(
        &mut space,
        MSI_OFFSET as u64 + 2,
        MSI_CONTROL_ENABLE | (7 << 4),
    );
    assert_eq!(space.msi().unwrap().vectors_enabled, 8);
}

#[test]
fn msi_pending_bits_are_set_by_the_device_only() {
    let mut space = full();
    space.set_msi_pending(3, true);
    space.set_msi_pending(9, true);
    write_u32(&mut space, MSI_OFFSET as u64 + 20, 0);
    assert_eq!(space.msi().unwrap().pending_bits, Some(1 << 3));
}

#[test]
fn msix_enable_and_function_mask_are_reflected_by_msix() {
    let mut space = full();
    let control = MSIX_OFFSET as u64 + 2;
    let msix = space.msix().unwrap();
    assert!(!msix.enabled && !msix.function_mask);
    assert_eq!(
        (msix.vectors, msix.table_bar, msix.table_offset),
        (16, 2, 0)
    );
    assert_eq!((msix.pba_bar, msix.pba_offset), (2, 0x800));
    write_u16(&mut space, control, 0xffff);
    let msix = space.msix().unwrap();
    assert!(msix.enabled && msix.function_mask);
    assert_eq!(msix.vectors, 16, "table size is read-only");
    write_u16(&mut space, control, MSIX_CONTROL_ENABLE);
    assert!(!space.msix().unwrap().function_mask);
}

#[test]
fn unaligned_and_cross_register_accesses() {
    let mut space = full();
    // One write spanning the end of the command register and the status
    // register: memory enable lands, status ignores its ones.
    space
        .write(COMMAND as u64 + 1, &[0x04, 0xff, 0xff])
        .unwrap();
    assert_eq!(space.command(), COMMAND_INTX_DISABLE);
    assert_eq!(space.status(), STATUS_CAP_LIST);
    space.write(COMMAND as u64, &[0x02]).unwrap();
    assert!(space.memory_enabled());
    // A 3-byte read across vendor and device IDs.
    let mut three = [0; 3];
    space.read(1, &mut three).unwrap();
    assert_eq!(three, [0x80, 0x72, 0x15]);
    // An 8-byte read of both halves of BAR 0 after sizing them together.
    space.write(0x10, &[0xff; 8]).unwrap();
    let mut bar = [0; 8];
    space.read(0x10, &mut bar).unwrap();
    assert_eq!(u64::from_le_bytes(bar), !(0x4000u64 - 1) | 0b1100);
    // Byte writes into the middle of the MSI address.
    space.write(MSI_OFFSET as u64 + 5, &[0x12, 0x34]).unwrap();
    assert_eq!(space.msi().unwrap().address, 0x0034_1200);
    // The whole space in one read.
    let mut all = vec![0; space.len()];
    space.read(0, &mut all).unwrap();
    assert_eq!(&all[0..2], &[0x86, 0x80]);
}

#[test]
fn out_of_range_accesses_fail_without_effect() {
    let mut space = full();
    let fresh = space.clone();
    let mut four = [0; 4];
    let err = space.read(4094, &mut four).unwrap_err();
    assert_eq!(
        err,
        ConfigError::OutOfRange {
            offset: 4094,
            len: 4,
            space_len: 4096
        }
    );
    assert!(space.read(4096, &mut [0; 1]).is_err());
    assert!(space.read(u64::MAX, &mut [0; 1]).is_err());
    assert!(space.write(4093, &[0xff; 4]).is_err());
    assert!(space.write(u64::MAX - 1, &[0xff; 4]).is_err());
    assert_eq!(space, fresh, "a refused write changes nothing");
    let mut conventional = ConfigSpace::new(&conventional_spec()).unwrap();
    assert!(conventional.write(0x100, &[0]).is_err());
    assert!(conventional.read(255, &mut [0; 1]).is_ok());
    assert!(
        conventional.read(256, &mut []).is_ok(),
        "an empty access at the end is in range"
    );
}

#[test]
fn power_state_takes_d3hot_but_refuses_d1_and_d2() {
    let mut space = full();
    let control = (PM_OFFSET + PM_CTRL) as u64;
    write_u16(&mut space, control, 3);
    assert_eq!(space.power_state(), 3);
    write_u16(&mut space, control, 1);
    assert_eq!(
        space.power_state(),
        3,
        "D1 is not supported: the state stays"
    );
    write_u16(&mut space, control, 0);
    assert_eq!(space.power_state(), 0);
    assert_ne!(read_u16(&space, control) & PM_CTRL_NO_SOFT_RESET, 0);
}

#[test]
fn sriov_num_vfs_is_checked_and_reflected() {
    let mut space = full();
    assert_eq!(space.sriov_num_vfs(), Some(0));
    assert_eq!(read_u16(&space, (SRIOV_OFFSET + SRIOV_TOTAL_VFS) as u64), 8);
    assert_eq!(
        read_u16(&space, (SRIOV_OFFSET + SRIOV_VF_DEVICE_ID) as u64),
        0x154c
    );
    assert_eq!(
        space.set_sriov_num_vfs(9),
        Err(ConfigError::TooManyVfs {
            requested: 9,
            total: 8
        })
    );
    space.set_sriov_num_vfs(4).unwrap();
    assert_eq!(space.sriov_num_vfs(), Some(4));
    write_u16(&mut space, (SRIOV_OFFSET + SRIOV_CTRL) as u64, 0xffff);
    assert!(space.sriov_vfs_enabled());
    assert_eq!(
        space.sriov_control(),
        Some(SRIOV_CTRL_VF_ENABLE | SRIOV_CTRL_VF_MEMORY | SRIOV_CTRL_ARI)
    );
    assert_eq!(space.set_sriov_num_vfs(2), Err(ConfigError::VfsEnabled));
    let mut plain = ConfigSpace::new(&conventional_spec()).unwrap();
    assert_eq!(plain.set_sriov_num_vfs(1), Err(ConfigError::NoSriov));
}

#[test]
fn acs_control_takes_only_advertised_bits() {
    let mut space = full();
    let base = acs_offset(&full_spec()) as u64;
    write_u16(&mut space, base + ACS_CTRL as u64, 0xffff);
    let redirect = ACS_REQUEST_REDIRECT | ACS_COMPLETION_REDIRECT;
    assert_eq!(read_u16(&space, base + ACS_CAP as u64), redirect);
    assert_eq!(read_u16(&space, base + ACS_CTRL as u64), redirect);
}

/// Programs a little of everything so a reset has something to undo.
fn program(space: &mut ConfigSpace) {
    write_u16(space, COMMAND as u64, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    write_u32(space, 0x10, 0xfe00_0000);
    write_u16(space, MSI_OFFSET as u64 + 2, MSI_CONTROL_ENABLE);
    write_u16(space, MSIX_OFFSET as u64 + 2, MSIX_CONTROL_ENABLE);
    space.write(INTERRUPT_LINE as u64, &[11]).unwrap();
    space.set_sriov_num_vfs(3).unwrap();
    space.set_interrupt_status(true);
}

#[test]
fn reset_restores_power_on_values() {
    let mut space = full();
    let fresh = full();
    program(&mut space);
    assert_ne!(space, fresh);
    space.reset();
    assert_eq!(space.resets(), 1);
    let (mut got, mut want) = (vec![0; 4096], vec![0; 4096]);
    space.read(0, &mut got).unwrap();
    fresh.read(0, &mut want).unwrap();
    assert_eq!(got, want);
}

#[test]
fn initiate_flr_by_config_write_resets_the_function() {
    let mut space = full();
    program(&mut space);
    let devctl = (EXP_OFFSET + EXP_DEVCTL) as u64;
    let value = read_u16(&space, devctl) | EXP_DEVCTL_INITIATE_FLR;
    write_u16(&mut space, devctl, value);
    assert_eq!(space.resets(), 1);
    assert!(!space.memory_enabled());
    assert!(!space.msi().unwrap().enabled && !space.msix().unwrap().enabled);
    assert_eq!(
        read_u16(&space, devctl) & EXP_DEVCTL_INITIATE_FLR,
        0,
        "the FLR bit reads 0"
    );
}
