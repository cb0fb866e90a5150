/* Small wrappers the C test programs share: destroy an object, move a mock
 * device's RID to another HWPT or IOAS.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_OPS_H
#define SOFTIOMMU_OPS_H
#include "softiommu_abi.h"

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
#endif
