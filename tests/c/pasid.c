/* PASID attachments under `softiommu run`: a PASID-capable mock device
 * attaches HWPTs made with IOMMU_HWPT_ALLOC_PASID to its PASIDs, beside its
 * RID's; replace keeps the old HWPT when the driver fails; IO page faults
 * with a PASID reach the queue of the PASID's HWPT.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int fd;

static int pasid_op(uint32_t op, uint32_t stdev, uint32_t pasid, uint32_t pt)
{
	struct test_cmd c = { .size = sizeof(c), .op = op, .id = stdev };
	c.pasid.pasid = pasid;
	c.pasid.pt_id = pt;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

static uint32_t hwpt(uint32_t dev, uint32_t pt, uint32_t flags, int nested, uint32_t fault_id)
{
	static uint32_t stage1 = 0x0badbeef;
	struct hwpt_alloc_cmd h = { .size = sizeof(h), .flags = flags, .dev_id = dev, .pt_id = pt, .fault_id = fault_id };
	if (nested) {
		h.data_type = HWPT_DATA_SELFTEST;
		h.data_len = sizeof(stage1);
		h.data_uptr = (uintptr_t)&stage1;
	}
	return ioctl(fd, IOMMU_HWPT_ALLOC, &h) == 0 ? h.out_hwpt_id : 0;
}

#define ATTACH(p, pt) pasid_op(TEST_OP_PASID_ATTACH, stdev, p, pt)
#define REPLACE(p, pt) pasid_op(TEST_OP_PASID_REPLACE, stdev, p, pt)
#define DETACH(p) pasid_op(TEST_OP_PASID_DETACH, stdev, p, 0)
#define CHECK_HWPT(p, h) pasid_op(TEST_OP_PASID_CHECK_HWPT, stdev, p, h)

int main(void)
{
	uint32_t ioas;
	fd = open_with_ioas(&ioas, NULL);
	struct mock_dev md, md0;
	CHECK(mock_domain(fd, ioas, MOCK_FLAGS_DEVICE_PASID, &md) == 0, "a PASID-capable mock device");
	uint32_t dev = md.dev, stdev = md.stdev;
	CHECK(mock_domain(fd, ioas, 0, &md0) == 0, "a mock device without PASID support");
	uint32_t plain_stdev = md0.stdev;

	uint32_t parent = nest_parent(fd, dev, ioas);
	uint32_t nested0 = hwpt(dev, parent, HWPT_ALLOC_PASID, 1, 0);
	uint32_t nested1 = hwpt(dev, parent, HWPT_ALLOC_PASID, 1, 0);
	uint32_t s2 = hwpt(dev, ioas, HWPT_ALLOC_PASID, 0, 0);
	CHECK(parent && nested0 && nested1 && s2, "HWPTs, three of them PASID-compatible");

	CHECK(replace(fd, stdev, parent) == 0, "the RID on a PASID-incompatible HWPT");
	CHECK(FAILS(ATTACH(100, s2), EINVAL), "no PASID while the RID's HWPT is incompatible");
	CHECK(replace(fd, stdev, s2) == 0, "the RID on a compatible HWPT");
	CHECK(ATTACH(100, nested0) == 0, "PASID 100 attaches");
	CHECK(FAILS(replace(fd, stdev, parent), EINVAL), "the RID cannot leave for an incompatible HWPT now");
	CHECK(DETACH(100) == 0 && CHECK_HWPT(100, 0) == 0, "detached: no HWPT");

	CHECK(FAILS(pasid_op(TEST_OP_PASID_ATTACH, plain_stdev, 100, s2), EINVAL),
	      "a device without PASID support takes no PASID");
	CHECK(FAILS(ATTACH(100, parent), EINVAL) && CHECK_HWPT(100, 0) == 0, "an incompatible HWPT");
	CHECK(FAILS(ATTACH(100, ioas), EINVAL) && CHECK_HWPT(100, 0) == 0, "an IOAS");
	CHECK(FAILS(ATTACH(1 << 20, s2), EINVAL), "a PASID past the device's width");
	CHECK(FAILS(ATTACH(100, 9999), ENOENT), "no such object");
	CHECK(ATTACH(100, s2) == 0 && CHECK_HWPT(100, s2) == 0, "PASID 100 on the stage 2");
	CHECK(FAILS(CHECK_HWPT(100, nested0), EINVAL), "CHECK_HWPT tells HWPTs apart");
	CHECK(FAILS(ATTACH(100, nested0), EBUSY), "attach does not overwrite");
	CHECK(FAILS(destroy(fd, s2), EBUSY), "the attachment holds its HWPT");
	CHECK(DETACH(100) == 0, "detach");

	CHECK(FAILS(REPLACE(200, s2), EINVAL), "replace needs an attached PASID");
	CHECK(ATTACH(200, s2) == 0, "PASID 200 on the stage 2");
	CHECK(FAILS(REPLACE(200, ioas), EINVAL) && CHECK_HWPT(200, s2) == 0, "not onto an IOAS");
	CHECK(REPLACE(200, nested0) == 0 && CHECK_HWPT(200, nested0) == 0, "replace with a nested HWPT");
	CHECK(REPLACE(200, nested1) == 0 && CHECK_HWPT(200, nested1) == 0, "and with another");
	CHECK(DETACH(200) == 0, "detach PASID 200");

	CHECK(ATTACH(1024, s2) == 0, "PASID 1024 attaches");
	CHECK(FAILS(REPLACE(1024, nested0), ENOMEM) && CHECK_HWPT(1024, s2) == 0,
	      "the driver's failure keeps the old HWPT");
	CHECK(DETACH(1024) == 0, "detach PASID 1024");

	struct fault_alloc_cmd q = { .size = sizeof(q) };
	CHECK(ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &q) == 0, "a fault queue");
	uint32_t iopf = hwpt(dev, parent, HWPT_FAULT_ID_VALID | HWPT_ALLOC_PASID, 1, q.out_fault_id);
	CHECK(iopf && ATTACH(2048, iopf) == 0, "PASID 2048 on a fault-capable HWPT");
	struct test_cmd t = { .size = sizeof(t), .op = TEST_OP_TRIGGER_IOPF };
	t.trigger_iopf.dev_id = dev;
	t.trigger_iopf.pasid = 2048;
	t.trigger_iopf.addr = 0x1000;
	t.trigger_iopf.perm = PGFAULT_PERM_READ;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &t) == 0, "TRIGGER_IOPF with PASID 2048");
	struct hwpt_pgfault f;
	CHECK(read((int)q.out_fault_fd, &f, sizeof(f)) == sizeof(f) && f.pasid == 2048 &&
		      (f.flags & PGFAULT_FLAGS_PASID_VALID),
	      "the fault reaches the PASID's queue");
	CHECK(REPLACE(2048, s2) == 0 && DETACH(2048) == 0, "replace and detach PASID 2048");
	CHECK(destroy(fd, iopf) == 0, "destroy the fault-capable HWPT");
	CHECK(replace(fd, stdev, ioas) == 0, "the RID back on the IOAS");
	return finish();
}
