/* The parts of the iommufd uAPI our C tests use, written for this project from
 * the documented ABI (the build machines' kernel headers may predate iommufd).
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_ABI_H
#define SOFTIOMMU_ABI_H
#include <stdint.h>
#include <sys/ioctl.h>

#define IOMMUFD_TYPE ';'
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, 0x82)
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, 0x83)
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, 0x84)
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, 0x87)
#define IOMMU_VFIO_IOAS _IO(IOMMUFD_TYPE, 0x88)
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, 0x89)
#define IOMMU_HWPT_SET_DIRTY_TRACKING _IO(IOMMUFD_TYPE, 0x8b)
#define IOMMU_HWPT_GET_DIRTY_BITMAP _IO(IOMMUFD_TYPE, 0x8c)
#define IOMMU_HWPT_INVALIDATE _IO(IOMMUFD_TYPE, 0x8d)
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, 0x8e)
#define IOMMU_IOAS_MAP_FILE _IO(IOMMUFD_TYPE, 0x8f)
#define IOMMU_VIOMMU_ALLOC _IO(IOMMUFD_TYPE, 0x90)
#define IOMMU_VDEVICE_ALLOC _IO(IOMMUFD_TYPE, 0x91)
#define IOMMU_VEVENTQ_ALLOC _IO(IOMMUFD_TYPE, 0x93)
#define IOMMU_HW_QUEUE_ALLOC _IO(IOMMUFD_TYPE, 0x94)
#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, 0xa0)
#define VFIO_GET_API_VERSION _IO(IOMMUFD_TYPE, 100)
#define VFIO_CHECK_EXTENSION _IO(IOMMUFD_TYPE, 101)
#define VFIO_SET_IOMMU _IO(IOMMUFD_TYPE, 102)
#define VFIO_IOMMU_MAP_DMA _IO(IOMMUFD_TYPE, 113)
#define VFIO_IOMMU_UNMAP_DMA _IO(IOMMUFD_TYPE, 114)
#define VFIO_TYPE1v2_IOMMU 3

enum {
	MAP_FIXED_IOVA = 1 << 0,
	MAP_WRITEABLE = 1 << 1,
	MAP_READABLE = 1 << 2,
};

struct destroy_cmd { uint32_t size, id; };
struct ioas_alloc_cmd { uint32_t size, flags, out_ioas_id; };
struct iova_range { uint64_t start, last; };
struct iova_ranges_cmd {
	uint32_t size, ioas_id, num_iovas, reserved;
	uint64_t allowed_iovas, out_iova_alignment;
};
struct allow_iovas_cmd { uint32_t size, ioas_id, num_iovas, reserved; uint64_t allowed_iovas; };
struct map_cmd {
	uint32_t size, flags, ioas_id, reserved;
	uint64_t user_va, length, iova;
};
struct map_file_cmd {
	uint32_t size, flags, ioas_id;
	int32_t fd;
	uint64_t start, length, iova;
};
struct copy_cmd {
	uint32_t size, flags, dst_ioas_id, src_ioas_id;
	uint64_t length, dst_iova, src_iova;
};
struct unmap_cmd { uint32_t size, ioas_id; uint64_t iova, length; };
struct option_cmd { uint32_t size, option_id; uint16_t op, reserved; uint32_t object_id; uint64_t val64; };
struct vfio_ioas_cmd { uint32_t size, ioas_id; uint16_t op, reserved; };
struct test_cmd {
	uint32_t size, op, id, reserved;
	union {
		struct { uint64_t start, length; } add_reserved;
		struct { uint64_t length, uptr; uint32_t refs; } check_refs;
		struct { uint32_t out_stdev_id, out_hwpt_id, out_idev_id, dev_flags; } mock_domain;
		struct { uint64_t iova, length, uptr; } check_map;
		struct { uint32_t out_access_fd, flags; } create_access;
		struct { uint32_t access_pages_id; } destroy_access_pages;
		struct { uint32_t flags, out_access_pages_id; uint64_t iova, length, uptr; } access_pages;
		struct { uint64_t iova, length, uptr; uint32_t flags; } access_rw;
		struct { uint32_t length, open_flags; } dmabuf_get;
		struct { int32_t dmabuf_fd; uint32_t revoked; } dmabuf_revoke;
		struct { uint32_t pt_id; } mock_domain_replace;
		struct { uint32_t dev_id, pasid, grpid, perm; uint64_t addr; } trigger_iopf;
		struct { uint32_t dev_id; } trigger_vevent;
		struct { uint32_t pasid, pt_id; } pasid;
		struct { uint32_t flags, pad; uint64_t iova, length, page_size, uptr, out_nr_dirty; } dirty;
		struct { uint32_t id, value; } check_cache;
		uint64_t raw[6];
	};
	uint32_t last;
};
struct hwpt_alloc_cmd {
	uint32_t size, flags, dev_id, pt_id, out_hwpt_id, reserved, data_type, data_len;
	uint64_t data_uptr;
	uint32_t fault_id, reserved2;
};
struct set_dirty_cmd { uint32_t size, flags, hwpt_id, reserved; };
struct get_dirty_cmd {
	uint32_t size, hwpt_id, flags, reserved;
	uint64_t iova, length, page_size, data;
};
struct invalidate_cmd {
	uint32_t size, hwpt_id;
	uint64_t data_uptr;
	uint32_t data_type, entry_len, entry_num, reserved;
};
#define HWPT_ALLOC_DIRTY_TRACKING 2
#define DIRTY_TRACKING_ENABLE 1
#define GET_DIRTY_BITMAP_NO_CLEAR 1
#define HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define TEST_IOTLB_DEFAULT 0xbadbeef
#define TEST_INVALIDATE_FLAG_ALL 1
struct fault_alloc_cmd { uint32_t size, flags, out_fault_id, out_fault_fd; };
struct hwpt_pgfault { uint32_t flags, dev_id, pasid, grpid, perm, reserved; uint64_t addr; uint32_t length, cookie; };
struct page_response { uint32_t cookie, code; };
#define HWPT_ALLOC_NEST_PARENT 1
#define HWPT_FAULT_ID_VALID 4
#define HWPT_ALLOC_PASID 8
#define HWPT_DATA_SELFTEST 0xdead
#define PGFAULT_FLAGS_PASID_VALID 1
#define PGFAULT_FLAGS_LAST_PAGE 2
#define PGFAULT_PERM_READ 1
#define PGFAULT_PERM_WRITE 2
struct viommu_alloc_cmd {
	uint32_t size, flags, type, dev_id, hwpt_id, out_viommu_id, data_len, reserved;
	uint64_t data_uptr;
};
struct vdevice_alloc_cmd { uint32_t size, viommu_id, dev_id, out_vdevice_id; uint64_t virt_id; };
struct veventq_alloc_cmd {
	uint32_t size, flags, viommu_id, type, veventq_depth, out_veventq_id, out_veventq_fd, reserved;
};
struct vevent_header { uint32_t flags, sequence; };
struct viommu_selftest { uint32_t in_data, out_data; uint64_t out_mmap_offset, out_mmap_length; };
struct hw_queue_alloc_cmd {
	uint32_t size, flags, viommu_id, type, index, out_hw_queue_id;
	uint64_t nesting_parent_iova, length;
};
#define HW_QUEUE_TYPE_SELFTEST 0xdeadbeef
#define VIOMMU_TYPE_SELFTEST 0xdeadbeef
#define VEVENTQ_TYPE_SELFTEST 0xbeefbeef
#define VEVENTQ_FLAG_LOST_EVENTS 1
struct vfio_dma_map { uint32_t argsz, flags; uint64_t vaddr, iova, size; };
struct vfio_dma_unmap { uint32_t argsz, flags; uint64_t iova, size; };

#define TEST_OP_ADD_RESERVED 1
#define TEST_OP_MOCK_DOMAIN 2
#define TEST_OP_MD_CHECK_MAP 3
#define TEST_OP_MD_CHECK_REFS 4
#define MOCK_APERTURE_START (1UL << 24)
#define TEST_OP_CREATE_ACCESS 5
#define TEST_OP_DESTROY_ACCESS_PAGES 6
#define TEST_OP_ACCESS_PAGES 7
#define TEST_OP_ACCESS_RW 8
#define TEST_OP_MOCK_DOMAIN_REPLACE 10
#define TEST_OP_TRIGGER_IOPF 15
#define TEST_OP_MOCK_DOMAIN_FLAGS 12
#define TEST_OP_DIRTY 13
#define TEST_OP_MD_CHECK_IOTLB 14
#define TEST_OP_TRIGGER_VEVENT 17
#define TEST_OP_PASID_ATTACH 18
#define TEST_OP_PASID_REPLACE 19
#define TEST_OP_PASID_DETACH 20
#define TEST_OP_PASID_CHECK_HWPT 21
#define MOCK_FLAGS_DEVICE_PASID 4
#define TEST_OP_DMABUF_GET 22
#define TEST_OP_DMABUF_REVOKE 23
#define ACCESS_NEEDS_PIN_PAGES 1
#define ACCESS_RW_WRITE 1
#endif
