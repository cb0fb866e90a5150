//! Our ABI structs against the rust-vmm bindings generated from the Linux headers:
//! same size, same field offsets, same request numbers.

use core::mem::{offset_of, size_of};
use iommufd_bindings::iommufd as b;
use softiommu_uapi::ioctl::*;
use softiommu_uapi::iommufd::*;
use softiommu_uapi::test_cmd::IommuTestCmd;
use softiommu_uapi::vfio::*;
use vfio_bindings::bindings::vfio as v;

macro_rules! same_layout {
    ($ours:ty, $theirs:ty, $($of:ident = $tf:ident),* $(,)?) => {{
        assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "size of {}", stringify!($ours));
        $(assert_eq!(offset_of!($ours, $of), offset_of!($theirs, $tf),
            "offset of {}.{}", stringify!($ours), stringify!($of));)*
    }};
}

#[test]
fn iommufd_structs_match_the_bindings() {
    same_layout!(IommuDestroy, b::iommu_destroy, size = size, id = id);
    same_layout!(
        IommuIoasAlloc,
        b::iommu_ioas_alloc,
        flags = flags,
        out_ioas_id = out_ioas_id
    );
    same_layout!(
        IommuIovaRange,
        b::iommu_iova_range,
        start = start,
        last = last
    );
    same_layout!(
        IommuIoasIovaRanges,
        b::iommu_ioas_iova_ranges,
        ioas_id = ioas_id,
        num_iovas = num_iovas,
        reserved = __reserved,
        allowed_iovas = allowed_iovas,
        out_iova_alignment = out_iova_alignment
    );
    same_layout!(
        IommuIoasAllowIovas,
        b::iommu_ioas_allow_iovas,
        ioas_id = ioas_id,
        num_iovas = num_iovas,
        reserved = __reserved,
        allowed_iovas = allowed_iovas
    );
    same_layout!(
        IommuIoasMap,
        b::iommu_ioas_map,
        flags = flags,
        ioas_id = ioas_id,
        reserved = __reserved,
        user_va = user_va,
        length = length,
        iova = iova
    );
    same_layout!(
        IommuIoasMapFile,
        b::iommu_ioas_map_file,
        flags = flags,
        ioas_id = ioas_id,
        fd = fd,
        start = start,
        length = length,
        iova = iova
    );
    same_layout!(
        IommuIoasCopy,
        b::iommu_ioas_copy,
        flags = flags,
        dst_ioas_id = dst_ioas_id,
        src_ioas_id = src_ioas_id,
        length = length,
        dst_iova = dst_iova,
        src_iova = src_iova
    );
    same_layout!(
        IommuIoasUnmap,
        b::iommu_ioas_unmap,
        ioas_id = ioas_id,
        iova = iova,
        length = length
    );
    same_layout!(
        IommuOption,
        b::iommu_option,
        option_id = option_id,
        op = op,
        reserved = __reserved,
        object_id = object_id,
        val64 = val64
    );
    same_layout!(
        IommuVfioIoas,
        b::iommu_vfio_ioas,
        ioas_id = ioas_id,
        op = op,
        reserved = __reserved
    );
    same_layout!(
        IommuHwptAlloc,
        b::iommu_hwpt_alloc,
        flags = flags,
        dev_id = dev_id,
        pt_id = pt_id,
        out_hwpt_id = out_hwpt_id,
        reserved = __reserved,
        data_type = data_type,
        data_len = data_len,
        data_uptr = data_uptr,
        fault_id = fault_id,
        reserved2 = __reserved2
    );
    same_layout!(
        IommuHwptVtdS1,
        b::iommu_hwpt_vtd_s1,
        flags = flags,
        pgtbl_addr = pgtbl_addr,
        addr_width = addr_width,
        reserved = __reserved
    );
    same_layout!(IommuHwptArmSmmuv3, b::iommu_hwpt_arm_smmuv3, ste = ste);
    same_layout!(
        IommuHwInfo,
        b::iommu_hw_info,
        flags = flags,
        dev_id = dev_id,
        data_len = data_len,
        data_uptr = data_uptr,
        data_type = __bindgen_anon_1,
        out_max_pasid_log2 = out_max_pasid_log2,
        reserved = __reserved,
        out_capabilities = out_capabilities
    );
    same_layout!(
        IommuHwInfoVtd,
        b::iommu_hw_info_vtd,
        cap_reg = cap_reg,
        ecap_reg = ecap_reg
    );
    same_layout!(
        IommuHwInfoArmSmmuv3,
        b::iommu_hw_info_arm_smmuv3,
        idr = idr,
        iidr = iidr,
        aidr = aidr
    );
    same_layout!(
        IommuHwptSetDirtyTracking,
        b::iommu_hwpt_set_dirty_tracking,
        flags = flags,
        hwpt_id = hwpt_id,
        reserved = __reserved
    );
    same_layout!(
        IommuHwptGetDirtyBitmap,
        b::iommu_hwpt_get_dirty_bitmap,
        hwpt_id = hwpt_id,
        flags = flags,
        reserved = __reserved,
        iova = iova,
        length = length,
        page_size = page_size,
        data = data
    );
    same_layout!(
        IommuHwptVtdS1Invalidate,
        b::iommu_hwpt_vtd_s1_invalidate,
        addr = addr,
        npages = npages,
        flags = flags
    );
    same_layout!(
        IommuViommuArmSmmuv3Invalidate,
        b::iommu_viommu_arm_smmuv3_invalidate,
        cmd = cmd
    );
    same_layout!(
        IommuHwptInvalidate,
        b::iommu_hwpt_invalidate,
        hwpt_id = hwpt_id,
        data_uptr = data_uptr,
        data_type = data_type,
        entry_len = entry_len,
        entry_num = entry_num,
        reserved = __reserved
    );
    same_layout!(
        IommuHwptPgfault,
        b::iommu_hwpt_pgfault,
        flags = flags,
        dev_id = dev_id,
        pasid = pasid,
        grpid = grpid,
        perm = perm,
        addr = addr,
        length = length,
        cookie = cookie
    );
    same_layout!(
        IommuHwptPageResponse,
        b::iommu_hwpt_page_response,
        cookie = cookie,
        code = code
    );
    same_layout!(
        IommuFaultAlloc,
        b::iommu_fault_alloc,
        flags = flags,
        out_fault_id = out_fault_id,
        out_fault_fd = out_fault_fd
    );
    same_layout!(
        IommuViommuAlloc,
        b::iommu_viommu_alloc,
        flags = flags,
        viommu_type = type_,
        dev_id = dev_id,
        hwpt_id = hwpt_id,
        out_viommu_id = out_viommu_id,
        data_len = data_len,
        data_uptr = data_uptr
    );
    same_layout!(
        IommuVdeviceAlloc,
        b::iommu_vdevice_alloc,
        viommu_id = viommu_id,
        dev_id = dev_id,
        out_vdevice_id = out_vdevice_id,
        virt_id = virt_id
    );
    same_layout!(
        IommuIoasChangeProcess,
        b::iommu_ioas_change_process,
        reserved = __reserved
    );
    same_layout!(
        IommufdVeventHeader,
        b::iommufd_vevent_header,
        flags = flags,
        sequence = sequence
    );
    same_layout!(
        IommuVeventqAlloc,
        b::iommu_veventq_alloc,
        viommu_id = viommu_id,
        veventq_type = type_,
        veventq_depth = veventq_depth,
        out_veventq_id = out_veventq_id,
        out_veventq_fd = out_veventq_fd
    );
    same_layout!(
        IommuHwQueueAlloc,
        b::iommu_hw_queue_alloc,
        viommu_id = viommu_id,
        hw_queue_type = type_,
        index = index,
        out_hw_queue_id = out_hw_queue_id,
        nesting_parent_iova = nesting_parent_iova,
        length = length
    );
}

#[test]
fn vfio_structs_match_the_bindings() {
    same_layout!(
        VfioIommuType1Info,
        v::vfio_iommu_type1_info,
        argsz = argsz,
        flags = flags,
        iova_pgsizes = iova_pgsizes,
        cap_offset = cap_offset
    );
    same_layout!(
        VfioInfoCapHeader,
        v::vfio_info_cap_header,
        id = id,
        version = version,
        next = next
    );
    same_layout!(
        VfioIommuType1InfoCapIovaRange,
        v::vfio_iommu_type1_info_cap_iova_range,
        header = header,
        nr_iovas = nr_iovas,
        reserved = reserved
    );
    same_layout!(VfioIovaRange, v::vfio_iova_range, start = start, end = end);
    same_layout!(
        VfioIommuType1InfoDmaAvail,
        v::vfio_iommu_type1_info_dma_avail,
        header = header,
        avail = avail
    );
    same_layout!(
        VfioIommuType1DmaMap,
        v::vfio_iommu_type1_dma_map,
        argsz = argsz,
        flags = flags,
        vaddr = vaddr,
        iova = iova,
        size = size
    );
    same_layout!(
        VfioIommuType1DmaUnmap,
        v::vfio_iommu_type1_dma_unmap,
        argsz = argsz,
        flags = flags,
        iova = iova,
        size = size
    );
    same_layout!(
        VfioDeviceInfo,
        v::vfio_device_info,
        argsz = argsz,
        flags = flags,
        num_regions = num_regions,
        num_irqs = num_irqs,
        cap_offset = cap_offset,
        pad = pad
    );
    same_layout!(
        VfioRegionInfo,
        v::vfio_region_info,
        argsz = argsz,
        flags = flags,
        index = index,
        cap_offset = cap_offset,
        size = size,
        offset = offset
    );
    same_layout!(
        VfioIrqInfo,
        v::vfio_irq_info,
        argsz = argsz,
        flags = flags,
        index = index,
        count = count
    );
    same_layout!(
        VfioIrqSet,
        v::vfio_irq_set,
        argsz = argsz,
        flags = flags,
        index = index,
        start = start,
        count = count
    );
    same_layout!(
        VfioDeviceBindIommufd,
        v::vfio_device_bind_iommufd,
        argsz = argsz,
        flags = flags,
        iommufd = iommufd,
        out_devid = out_devid,
        token_uuid_ptr = token_uuid_ptr
    );
    same_layout!(
        VfioDeviceAttachIommufdPt,
        v::vfio_device_attach_iommufd_pt,
        argsz = argsz,
        flags = flags,
        pt_id = pt_id,
        pasid = pasid
    );
    same_layout!(
        VfioPciHotResetHead,
        v::vfio_pci_hot_reset_info,
        argsz = argsz,
        flags = flags,
        count = count
    );
    same_layout!(
        VfioPciHotResetHead,
        v::vfio_pci_hot_reset,
        argsz = argsz,
        flags = flags,
        count = count
    );
    same_layout!(
        VfioPciDependentDevice,
        v::vfio_pci_dependent_device,
        segment = segment,
        bus = bus,
        devfn = devfn
    );
    assert_eq!(
        v::VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
        VFIO_PCI_HOT_RESET_FLAG_DEV_ID
    );
    assert_eq!(
        v::VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
        VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
    );
    assert_eq!(v::VFIO_PCI_DEVID_OWNED, VFIO_PCI_DEVID_OWNED);
    assert_eq!(v::VFIO_PCI_DEVID_NOT_OWNED as u32, VFIO_PCI_DEVID_NOT_OWNED);
    same_layout!(
        VfioDeviceDetachIommufdPt,
        v::vfio_device_detach_iommufd_pt,
        argsz = argsz,
        flags = flags,
        pasid = pasid
    );
    for (ours, theirs) in [
        (VFIO_DEVICE_FLAGS_RESET, v::VFIO_DEVICE_FLAGS_RESET),
        (VFIO_DEVICE_FLAGS_PCI, v::VFIO_DEVICE_FLAGS_PCI),
        (VFIO_DEVICE_FLAGS_CAPS, v::VFIO_DEVICE_FLAGS_CAPS),
        (VFIO_REGION_INFO_FLAG_MMAP, v::VFIO_REGION_INFO_FLAG_MMAP),
        (
            u32::from(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE),
            v::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
        ),
        (VFIO_IRQ_INFO_NORESIZE, v::VFIO_IRQ_INFO_NORESIZE),
        (VFIO_IRQ_SET_ACTION_TRIGGER, v::VFIO_IRQ_SET_ACTION_TRIGGER),
        (VFIO_IRQ_SET_DATA_TYPE_MASK, v::VFIO_IRQ_SET_DATA_TYPE_MASK),
        (
            VFIO_IRQ_SET_ACTION_TYPE_MASK,
            v::VFIO_IRQ_SET_ACTION_TYPE_MASK,
        ),
        (VFIO_DEVICE_BIND_FLAG_TOKEN, v::VFIO_DEVICE_BIND_FLAG_TOKEN),
        (
            VFIO_PCI_CONFIG_REGION_INDEX,
            v::VFIO_PCI_CONFIG_REGION_INDEX,
        ),
        (VFIO_PCI_NUM_REGIONS, v::VFIO_PCI_NUM_REGIONS),
        (VFIO_PCI_MSIX_IRQ_INDEX, v::VFIO_PCI_MSIX_IRQ_INDEX),
        (VFIO_PCI_NUM_IRQS, v::VFIO_PCI_NUM_IRQS),
    ] {
        assert_eq!(ours, theirs);
    }
    same_layout!(
        VfioGroupStatus,
        v::vfio_group_status,
        argsz = argsz,
        flags = flags
    );
    assert_eq!(VFIO_GROUP_FLAGS_VIABLE, v::VFIO_GROUP_FLAGS_VIABLE);
    assert_eq!(
        VFIO_GROUP_FLAGS_CONTAINER_SET,
        v::VFIO_GROUP_FLAGS_CONTAINER_SET
    );
    // _IO(';', 100 + n) for the group and device ioctls.
    for (request, n) in [
        (VFIO_GROUP_GET_STATUS, 3),
        (VFIO_GROUP_SET_CONTAINER, 4),
        (VFIO_GROUP_UNSET_CONTAINER, 5),
        (VFIO_GROUP_GET_DEVICE_FD, 6),
        (VFIO_DEVICE_GET_INFO, 7),
        (VFIO_DEVICE_GET_REGION_INFO, 8),
        (VFIO_DEVICE_GET_IRQ_INFO, 9),
        (VFIO_DEVICE_SET_IRQS, 10),
        (VFIO_DEVICE_RESET, 11),
        (VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, 12),
        (VFIO_DEVICE_PCI_HOT_RESET, 13),
        (VFIO_DEVICE_FEATURE, 17),
        (VFIO_DEVICE_BIND_IOMMUFD, 18),
        (VFIO_DEVICE_ATTACH_IOMMUFD_PT, 19),
        (VFIO_DEVICE_DETACH_IOMMUFD_PT, 20),
    ] {
        assert_eq!(request, (u32::from(b';') << 8) | (100 + n));
    }
    for (ours, theirs) in [
        (VFIO_DEVICE_FEATURE_MASK, v::VFIO_DEVICE_FEATURE_MASK),
        (VFIO_DEVICE_FEATURE_GET, v::VFIO_DEVICE_FEATURE_GET),
        (VFIO_DEVICE_FEATURE_SET, v::VFIO_DEVICE_FEATURE_SET),
        (VFIO_DEVICE_FEATURE_PROBE, v::VFIO_DEVICE_FEATURE_PROBE),
        (
            VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
            v::VFIO_DEVICE_FEATURE_PCI_VF_TOKEN,
        ),
        (
            VFIO_DEVICE_FEATURE_MIGRATION,
            v::VFIO_DEVICE_FEATURE_MIGRATION,
        ),
        (
            VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
            v::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
        ),
        (
            VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
            v::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT,
        ),
    ] {
        assert_eq!(ours, theirs);
    }
    assert_eq!(v::VFIO_API_VERSION as i64, VFIO_API_VERSION);
    assert_eq!(u64::from(v::VFIO_TYPE1_IOMMU), VFIO_TYPE1_IOMMU);
    assert_eq!(u64::from(v::VFIO_TYPE1v2_IOMMU), VFIO_TYPE1V2_IOMMU);
    assert_eq!(u64::from(v::VFIO_UNMAP_ALL), VFIO_UNMAP_ALL);
    assert_eq!(u64::from(v::VFIO_DMA_CC_IOMMU), VFIO_DMA_CC_IOMMU);
}

#[test]
fn the_test_command_has_the_selftest_layout() {
    assert_eq!(size_of::<IommuTestCmd>(), 72);
    assert_eq!(offset_of!(IommuTestCmd, payload), 16);
    assert_eq!(offset_of!(IommuTestCmd, last), 64);
    let info = command_info(0xa0).unwrap().unwrap();
    assert_eq!((info.size, info.min_size, info.request), (72, 68, 0x3ba0));
}

#[test]
fn command_numbers_match_the_bindings() {
    let pairs = [
        (IOMMU_DESTROY, b::IOMMUFD_CMD_DESTROY),
        (IOMMU_IOAS_ALLOC, b::IOMMUFD_CMD_IOAS_ALLOC),
        (IOMMU_IOAS_ALLOW_IOVAS, b::IOMMUFD_CMD_IOAS_ALLOW_IOVAS),
        (IOMMU_IOAS_COPY, b::IOMMUFD_CMD_IOAS_COPY),
        (IOMMU_IOAS_IOVA_RANGES, b::IOMMUFD_CMD_IOAS_IOVA_RANGES),
        (IOMMU_IOAS_MAP, b::IOMMUFD_CMD_IOAS_MAP),
        (IOMMU_IOAS_UNMAP, b::IOMMUFD_CMD_IOAS_UNMAP),
        (IOMMU_OPTION, b::IOMMUFD_CMD_OPTION),
        (IOMMU_VFIO_IOAS, b::IOMMUFD_CMD_VFIO_IOAS),
        (IOMMU_HWPT_ALLOC, b::IOMMUFD_CMD_HWPT_ALLOC),
        (IOMMU_GET_HW_INFO, b::IOMMUFD_CMD_GET_HW_INFO),
        (
            IOMMU_HWPT_SET_DIRTY_TRACKING,
            b::IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
        ),
        (
            IOMMU_HWPT_GET_DIRTY_BITMAP,
            b::IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
        ),
        (IOMMU_HWPT_INVALIDATE, b::IOMMUFD_CMD_HWPT_INVALIDATE),
        (IOMMU_FAULT_QUEUE_ALLOC, b::IOMMUFD_CMD_FAULT_QUEUE_ALLOC),
        (IOMMU_IOAS_MAP_FILE, b::IOMMUFD_CMD_IOAS_MAP_FILE),
        (IOMMU_VIOMMU_ALLOC, b::IOMMUFD_CMD_VIOMMU_ALLOC),
        (IOMMU_VDEVICE_ALLOC, b::IOMMUFD_CMD_VDEVICE_ALLOC),
        (
            IOMMU_IOAS_CHANGE_PROCESS,
            b::IOMMUFD_CMD_IOAS_CHANGE_PROCESS,
        ),
        (IOMMU_VEVENTQ_ALLOC, b::IOMMUFD_CMD_VEVENTQ_ALLOC),
        (IOMMU_HW_QUEUE_ALLOC, b::IOMMUFD_CMD_HW_QUEUE_ALLOC),
    ];
    for (ours, nr) in pairs {
        assert_eq!(ours, (u32::from(b::IOMMUFD_TYPE) << 8) | nr);
        let info = command_info(nr as u8).unwrap().unwrap();
        assert_eq!(info.request, ours);
    }
    assert_eq!(command_info(0x7f), Ok(None));
    assert_eq!(command_info(0x95), Err(()));
    assert_eq!(command_info(0xa1), Ok(None));
}

#[test]
fn min_sizes_are_those_of_linux() {
    let expect = [
        (0x80u8, 8, 8),
        (0x81, 12, 12),
        (0x82, 24, 24),
        (0x83, 40, 40),
        (0x84, 32, 32),
        (0x85, 40, 40),
        (0x86, 24, 24),
        (0x87, 24, 24),
        (0x88, 12, 12),
        (0x89, 48, 24),
        (0x8a, 40, 32),
        (0x8b, 16, 16),
        (0x8c, 48, 48),
        (0x8d, 32, 32),
        (0x8e, 16, 16),
        (0x8f, 40, 40),
        (0x90, 40, 24),
        (0x91, 24, 24),
        (0x92, 8, 8),
        (0x93, 32, 28),
        (0x94, 40, 40),
    ];
    for (nr, size, min) in expect {
        let info = command_info(nr).unwrap().unwrap();
        assert_eq!((info.size, info.min_size), (size, min), "command {nr:#x}");
    }
}
