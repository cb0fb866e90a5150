/* What the C test programs share beyond CHECK: the prologue most of them
 * start with (open /dev/iommu, an IOAS, a mock device on it, a nest parent)
 * and small wrappers of single commands.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_OPS_H
#define SOFTIOMMU_OPS_H
#include <fcntl.h>
#include "softiommu_abi.h"
#include "check.h"

/* A mock device from MOCK_DOMAIN: its iommufd device id, the selftest's id
 * for it (what MOCK_DOMAIN_REPLACE and the PASID ops take), and the HWPT it
 * was attached to. */
struct mock_dev {
	uint32_t dev, stdev, hwpt;
};

/* IOMMU_IOAS_ALLOC: the new IOAS's id, or -1 (ids start at 1). */
static inline int ioas_alloc(int fd)
{
	struct ioas_alloc_cmd c = { .size = sizeof(c) };
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &c))
		return -1;
	return c.out_ioas_id;
}

/* A new mock device attached to `ioas`: MOCK_DOMAIN, or MOCK_DOMAIN_FLAGS
 * when `dev_flags` is not 0. */
static inline int mock_domain(int fd, uint32_t ioas, uint32_t dev_flags, struct mock_dev *out)
{
	struct test_cmd c = { .size = sizeof(c), .op = dev_flags ? TEST_OP_MOCK_DOMAIN_FLAGS : TEST_OP_MOCK_DOMAIN,
			      .id = ioas };
	c.mock_domain.dev_flags = dev_flags;
	int rc = ioctl(fd, IOMMU_TEST_CMD, &c);
	out->dev = c.mock_domain.out_idev_id;
	out->stdev = c.mock_domain.out_stdev_id;
	out->hwpt = c.mock_domain.out_hwpt_id;
	return rc;
}

/* A nest-parent paging HWPT over `ioas` for `dev`: its id, or 0. */
static inline uint32_t nest_parent(int fd, uint32_t dev, uint32_t ioas)
{
	struct hwpt_alloc_cmd h = { .size = sizeof(h), .flags = HWPT_ALLOC_NEST_PARENT, .dev_id = dev, .pt_id = ioas };
	return ioctl(fd, IOMMU_HWPT_ALLOC, &h) == 0 ? h.out_hwpt_id : 0;
}

/* The prologue: open /dev/iommu and allocate an IOAS into `*ioas`; when
 * `mock` is not NULL, attach a new mock device to it. Each step is a CHECK.
 * Returns the descriptor. */
static inline int open_with_ioas(uint32_t *ioas, struct mock_dev *mock)
{
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	int id = ioas_alloc(fd);
	CHECK(id > 0, "IOAS_ALLOC");
	*ioas = id > 0 ? (uint32_t)id : 0;
	if (mock)
		CHECK(mock_domain(fd, *ioas, 0, mock) == 0, "MOCK_DOMAIN");
	return fd;
}

/* IOMMU_DESTROY of `id`. */
static inline int destroy(int fd, uint32_t id)
{
	struct destroy_cmd d = { .size = sizeof(d), .id = id };
	return ioctl(fd, IOMMU_DESTROY, &d);
}

/* The selftest's MOCK_DOMAIN_REPLACE: mock device `stdev` moves to `pt`. */
static inline int replace(int fd, uint32_t stdev, uint32_t pt)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MOCK_DOMAIN_REPLACE, .id = stdev };
	c.mock_domain_replace.pt_id = pt;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* The selftest's MD_CHECK_REFS: every page of `[buf, buf + len)` is pinned
 * `refs` times. */
static inline int check_refs(int fd, void *buf, uint64_t len, uint32_t refs)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MD_CHECK_REFS };
	c.check_refs.length = len;
	c.check_refs.uptr = (uintptr_t)buf;
	c.check_refs.refs = refs;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}
#endif
