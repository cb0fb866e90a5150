/* Dirty tracking and nested-HWPT invalidation under `softiommu run`:
 * HWPT_SET_DIRTY_TRACKING and HWPT_GET_DIRTY_BITMAP (with NO_CLEAR) over
 * pages the mock device dirtied, and HWPT_INVALIDATE on a nested HWPT, each
 * with its error paths.
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

#define NPAGES 16

static int fd;

static int set_dirty(uint32_t hwpt, uint32_t flags)
{
	struct set_dirty_cmd c = { .size = sizeof(c), .flags = flags, .hwpt_id = hwpt };
	return ioctl(fd, IOMMU_HWPT_SET_DIRTY_TRACKING, &c);
}

static int get_dirty(uint32_t hwpt, uint64_t iova, uint64_t len, uint64_t page, uint64_t *bitmap, uint32_t flags)
{
	struct get_dirty_cmd c = { .size = sizeof(c), .hwpt_id = hwpt, .flags = flags, .iova = iova,
				   .length = len, .page_size = page, .data = (uintptr_t)bitmap };
	return ioctl(fd, IOMMU_HWPT_GET_DIRTY_BITMAP, &c);
}

static int invalidate(uint32_t hwpt, void *entries, uint32_t entry_len, uint32_t *num)
{
	struct invalidate_cmd c = { .size = sizeof(c), .hwpt_id = hwpt, .data_uptr = (uintptr_t)entries,
				    .data_type = HWPT_INVALIDATE_DATA_SELFTEST, .entry_len = entry_len,
				    .entry_num = *num };
	int rc = ioctl(fd, IOMMU_HWPT_INVALIDATE, &c);
	*num = c.entry_num;
	return rc;
}

static int check_iotlb(uint32_t hwpt, uint32_t id, uint32_t value)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MD_CHECK_IOTLB, .id = hwpt };
	c.check_cache.id = id;
	c.check_cache.value = value;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

int main(void)
{
	uint32_t ioas;
	struct mock_dev md;
	fd = open_with_ioas(&ioas, &md);
	uint32_t dev = md.dev, stdev = md.stdev;

	/* Dirty tracking on a paging HWPT made for it. */
	struct hwpt_alloc_cmd h = { .size = sizeof(h), .flags = HWPT_ALLOC_DIRTY_TRACKING, .dev_id = dev,
				    .pt_id = ioas };
	CHECK(ioctl(fd, IOMMU_HWPT_ALLOC, &h) == 0, "a dirty-tracking HWPT");
	CHECK(replace(fd, stdev, h.out_hwpt_id) == 0, "the device moves to it");
	char *buf = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = NPAGES * PAGE,
			     .iova = MOCK_APERTURE_START };
	CHECK(buf != MAP_FAILED && ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "map 16 pages");
	CHECK(FAILS(set_dirty(h.out_hwpt_id, 2), EOPNOTSUPP), "an unknown flag");
	CHECK(FAILS(set_dirty(ioas, DIRTY_TRACKING_ENABLE), ENOENT), "an IOAS is no HWPT");
	CHECK(set_dirty(h.out_hwpt_id, DIRTY_TRACKING_ENABLE) == 0, "tracking on");

	uint64_t marks = (1 << 0) | (1 << 5), bitmap = 0;
	struct test_cmd d = { .size = sizeof(d), .op = TEST_OP_DIRTY, .id = h.out_hwpt_id };
	d.dirty.iova = MOCK_APERTURE_START;
	d.dirty.length = NPAGES * PAGE;
	d.dirty.page_size = PAGE;
	d.dirty.uptr = (uintptr_t)&marks;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &d) == 0 && d.dirty.out_nr_dirty > 0, "the device dirties pages 0 and 5");
	CHECK(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START, NPAGES * PAGE, PAGE, &bitmap,
			GET_DIRTY_BITMAP_NO_CLEAR) == 0 &&
		      bitmap == marks,
	      "the bitmap shows them (NO_CLEAR)");
	bitmap = 0;
	CHECK(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START, NPAGES * PAGE, PAGE, &bitmap, 0) == 0 && bitmap == marks,
	      "still there, now read and cleared");
	bitmap = 0;
	CHECK(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START, NPAGES * PAGE, PAGE, &bitmap, 0) == 0 && bitmap == 0,
	      "clean after clearing");
	CHECK(FAILS(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START, NPAGES * PAGE, PAGE, &bitmap, 2), EOPNOTSUPP),
	      "an unknown flag");
	CHECK(FAILS(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START + 1, PAGE, PAGE, &bitmap, 0), EINVAL),
	      "an unaligned IOVA");
	CHECK(FAILS(get_dirty(h.out_hwpt_id, MOCK_APERTURE_START, NPAGES * PAGE, PAGE, NULL, 0), EFAULT),
	      "a bad bitmap pointer");
	CHECK(set_dirty(h.out_hwpt_id, 0) == 0, "tracking off");

	/* A nested HWPT's IOTLB and its invalidation. */
	uint32_t parent = nest_parent(fd, dev, ioas);
	CHECK(parent != 0, "a nest parent");
	uint32_t stage1 = TEST_IOTLB_DEFAULT;
	struct hwpt_alloc_cmd nested = { .size = sizeof(nested), .dev_id = dev, .pt_id = parent,
					 .data_type = HWPT_DATA_SELFTEST, .data_len = sizeof(stage1),
					 .data_uptr = (uintptr_t)&stage1 };
	CHECK(ioctl(fd, IOMMU_HWPT_ALLOC, &nested) == 0, "a nested HWPT");
	uint32_t n = nested.out_hwpt_id, num;
	uint32_t entries[2][2] = { { 0, 1 }, { 0xffff, 2 } };
	num = 1;
	CHECK(FAILS(invalidate(n, entries, 4, &num), EINVAL) && num == 0, "a short entry");
	num = 2;
	CHECK(FAILS(invalidate(n, entries, 8, &num), EOPNOTSUPP) && num == 1, "the second entry's flags stop it");
	CHECK(check_iotlb(n, 1, 0) == 0 && check_iotlb(n, 0, TEST_IOTLB_DEFAULT) == 0,
	      "entry 1 was handled, nothing else");
	entries[0][1] = 4;
	num = 1;
	CHECK(FAILS(invalidate(n, entries, 8, &num), EINVAL) && num == 0, "an IOTLB id past the last");
	entries[0][0] = TEST_INVALIDATE_FLAG_ALL;
	entries[0][1] = 0; /* checked even with FLAG_ALL */
	num = 1;
	CHECK(invalidate(n, entries, 8, &num) == 0 && num == 1 && check_iotlb(n, 3, 0) == 0, "invalidate all");
	num = 1;
	CHECK(FAILS(invalidate(parent, entries, 8, &num), EINVAL) && num == 0,
	      "a paging HWPT takes no invalidation");
	CHECK(FAILS(destroy(fd, parent), EBUSY), "the nested HWPT holds its parent");
	CHECK(destroy(fd, n) == 0 && destroy(fd, parent) == 0, "destroy both");
	return finish();
}
