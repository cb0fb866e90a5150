/* The parts of the VFIO uAPI our C tests use, written for this project from
 * the documented ABI (build machines' kernel headers may predate the cdev
 * interface), with names of our own so they never clash with <linux/vfio.h>.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_VFIO_ABI_H
#define SOFTIOMMU_VFIO_ABI_H
#include <stdint.h>
#include <sys/ioctl.h>

#define VFIO_REQ(n) _IO(';', 100 + (n))
#define T_VFIO_GET_API_VERSION VFIO_REQ(0)
#define T_VFIO_CHECK_EXTENSION VFIO_REQ(1)
#define T_VFIO_SET_IOMMU VFIO_REQ(2)
#define T_VFIO_GROUP_GET_STATUS VFIO_REQ(3)
#define T_VFIO_GROUP_SET_CONTAINER VFIO_REQ(4)
#define T_VFIO_GROUP_UNSET_CONTAINER VFIO_REQ(5)
#define T_VFIO_GROUP_GET_DEVICE_FD VFIO_REQ(6)
#define T_VFIO_DEVICE_GET_INFO VFIO_REQ(7)
#define T_VFIO_DEVICE_GET_REGION_INFO VFIO_REQ(8)
#define T_VFIO_DEVICE_GET_IRQ_INFO VFIO_REQ(9)
#define T_VFIO_DEVICE_SET_IRQS VFIO_REQ(10)
#define T_VFIO_DEVICE_RESET VFIO_REQ(11)
#define T_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO VFIO_REQ(12)
#define T_VFIO_DEVICE_PCI_HOT_RESET VFIO_REQ(13)
#define T_VFIO_IOMMU_MAP_DMA VFIO_REQ(13)
#define T_VFIO_IOMMU_UNMAP_DMA VFIO_REQ(14)
#define T_VFIO_DEVICE_BIND_IOMMUFD VFIO_REQ(18)
#define T_VFIO_DEVICE_ATTACH_IOMMUFD_PT VFIO_REQ(19)
#define T_VFIO_DEVICE_DETACH_IOMMUFD_PT VFIO_REQ(20)

#define T_VFIO_TYPE1V2_IOMMU 3
#define T_GROUP_VIABLE (1u << 0)
#define T_GROUP_CONTAINER_SET (1u << 1)
#define T_DEVICE_FLAGS_RESET (1u << 0)
#define T_DEVICE_FLAGS_PCI (1u << 1)
#define T_REGION_READ (1u << 0)
#define T_REGION_WRITE (1u << 1)
#define T_REGION_MMAP (1u << 2)
#define T_IRQ_DATA_NONE (1u << 0)
#define T_IRQ_DATA_EVENTFD (1u << 2)
#define T_IRQ_ACTION_UNMASK (1u << 4)
#define T_IRQ_ACTION_TRIGGER (1u << 5)
#define T_INTX_IRQ 0
#define T_CONFIG_REGION 7
#define T_MSIX_IRQ 2
#define T_REGION_OFFSET(i) ((uint64_t)(i) << 40)

struct t_group_status { uint32_t argsz, flags; };
struct t_device_info { uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad; };
struct t_region_info { uint32_t argsz, flags, index, cap_offset; uint64_t size, offset; };
struct t_irq_info { uint32_t argsz, flags, index, count; };
struct t_irq_set { uint32_t argsz, flags, index, start, count; int32_t data[]; };
struct t_bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token_uuid_ptr; };
struct t_attach { uint32_t argsz, flags, pt_id, pasid; };
struct t_detach { uint32_t argsz, flags, pasid; };
struct t_dma_map { uint32_t argsz, flags; uint64_t vaddr, iova, size; };
struct t_dependent_device { uint32_t id; uint16_t segment; uint8_t bus, devfn; };
struct t_hot_reset_info { uint32_t argsz, flags, count; struct t_dependent_device devices[4]; };
struct t_hot_reset { uint32_t argsz, flags, count; int32_t group_fds[2]; };

#endif
