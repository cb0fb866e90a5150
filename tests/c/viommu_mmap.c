/* vIOMMU driver data and HW queues under `softiommu run`: the mock vIOMMU's
 * region is mapped with mmap() of the /dev/iommu descriptor at the offset it
 * reports, holds its owner while mapped, and HW queues pin their guest
 * memory in order.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int hw_queue(int fd, uint32_t viommu, uint32_t type, uint32_t index, uint64_t iova, uint64_t len,
		    uint32_t *out)
{
	struct hw_queue_alloc_cmd c = { .size = sizeof(c), .viommu_id = viommu, .type = type, .index = index,
					.nesting_parent_iova = iova, .length = len };
	int rc = ioctl(fd, IOMMU_HW_QUEUE_ALLOC, &c);
	*out = c.out_hw_queue_id;
	return rc;
}

static int unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t len)
{
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = iova, .length = len };
	return ioctl(fd, IOMMU_IOAS_UNMAP, &u);
}

static int mmap_fails(int fd, size_t len, off_t off, int prot, int flags, int err)
{
	void *p = mmap(NULL, len, prot, flags, fd, off);
	return p == MAP_FAILED && errno == err;
}

int main(void)
{
	uint32_t ioas;
	struct mock_dev md;
	int fd = open_with_ioas(&ioas, &md);
	uint32_t dev = md.dev;
	uint32_t parent = nest_parent(fd, dev, ioas);
	CHECK(parent != 0, "a nest parent");

	struct viommu_selftest data = { .in_data = 0xbeef };
	struct viommu_alloc_cmd v = { .size = sizeof(v), .type = VIOMMU_TYPE_SELFTEST, .dev_id = dev,
				      .hwpt_id = parent, .data_len = 4,
				      .data_uptr = (uintptr_t)&data };
	CHECK(ioctl(fd, IOMMU_VIOMMU_ALLOC, &v) == -1 && errno == EINVAL, "data shorter than out_data");
	v.data_len = sizeof(data);
	CHECK(ioctl(fd, IOMMU_VIOMMU_ALLOC, &v) == 0, "VIOMMU_ALLOC with driver data");
	CHECK(data.out_data == 0xbeef, "out_data echoes in_data");
	CHECK(data.out_mmap_offset >= PAGE && data.out_mmap_offset % PAGE == 0 && data.out_mmap_length == 2 * PAGE,
	      "a two-page region at a page-aligned offset past the first page");

	size_t len = data.out_mmap_length;
	off_t off = (off_t)data.out_mmap_offset;
	int rw = PROT_READ | PROT_WRITE;
	CHECK(mmap_fails(fd, len, off + PAGE, rw, MAP_SHARED, ENXIO), "an offset inside the region");
	CHECK(mmap_fails(fd, len, off + 2 * PAGE, rw, MAP_SHARED, ENXIO), "an offset past the region");
	CHECK(mmap_fails(fd, len / 2, off, rw, MAP_SHARED, ENXIO), "half the length");
	CHECK(mmap_fails(fd, len * 2, off, rw, MAP_SHARED, ENXIO), "twice the length");
	CHECK(mmap_fails(fd, len, off, rw, MAP_PRIVATE, EINVAL), "a private mapping");
	CHECK(mmap_fails(fd, len, off, rw | PROT_EXEC, MAP_SHARED, EPERM), "an executable mapping");
	uint32_t *region = mmap(NULL, len, rw, MAP_SHARED, fd, off);
	CHECK(region != MAP_FAILED, "mmap the region");
	CHECK(region[0] == 0xbeef, "it starts with in_data");
	region[1] = 7;
	CHECK(region[1] == 7, "it is writable");
	CHECK(destroy(fd, v.out_viommu_id) == -1 && errno == EBUSY, "the mapping holds the vIOMMU");
	CHECK(munmap(region, len) == 0, "munmap the region");

	/* HW queues live in guest memory mapped in the stage 2. */
	uint64_t iova = MOCK_APERTURE_START;
	uint32_t q0, q1, q;
	CHECK(hw_queue(fd, v.out_viommu_id, 0, 0, iova, PAGE, &q) == -1 && errno == EOPNOTSUPP,
	      "the default queue type is refused");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 0, iova, 0, &q) == -1 && errno == EINVAL,
	      "length 0 is refused");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 0, ~0ULL, PAGE, &q) == -1 &&
		      errno == EOVERFLOW,
	      "an overflowing range is refused");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 0, iova, PAGE, &q) == -1 && errno == ENOENT,
	      "unmapped guest memory is refused");
	char *buf = mmap(NULL, 2 * PAGE, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED, "guest memory");
	for (int i = 0; i < 2; i++) {
		struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
				     .ioas_id = ioas, .user_va = (uintptr_t)buf + i * PAGE,
				     .length = PAGE, .iova = iova + i * PAGE };
		CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "map one page of guest memory");
	}
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 1, iova, PAGE, &q) == -1 && errno == EIO,
	      "index 1 before index 0");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 2, iova, PAGE, &q) == -1 && errno == EINVAL,
	      "an index past the driver's queues");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 0, iova, PAGE, &q0) == 0, "queue 0");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 0, iova, PAGE, &q) == -1 && errno == EEXIST,
	      "queue 0 again");
	CHECK(unmap(fd, ioas, iova, PAGE) == -1 && errno == EBUSY, "the queue's page cannot be unmapped");
	CHECK(unmap(fd, ioas, iova + PAGE, PAGE) == 0, "the other page can");
	CHECK(hw_queue(fd, v.out_viommu_id, HW_QUEUE_TYPE_SELFTEST, 1, iova + PAGE / 2, PAGE / 2, &q1) == 0,
	      "queue 1, unaligned, inside the pinned page");
	CHECK(destroy(fd, q0) == -1 && errno == EBUSY, "queue 1 depends on queue 0");
	CHECK(destroy(fd, v.out_viommu_id) == -1 && errno == EBUSY, "the queues hold the vIOMMU");
	CHECK(destroy(fd, q1) == 0 && destroy(fd, q0) == 0, "destroy in descending order");
	CHECK(unmap(fd, ioas, iova, PAGE) == 0, "now the first page can be unmapped");
	CHECK(destroy(fd, v.out_viommu_id) == 0, "and the vIOMMU destroyed");
	return finish();
}
