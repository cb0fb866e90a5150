/* Fault queues under `softiommu run`: a fault the device takes on a HWPT made
 * with a fault queue is read from the queue's descriptor, and answered by
 * writing to it; the queue outlives its descriptor until destroyed.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int trigger(int fd, uint32_t dev, uint64_t addr)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_TRIGGER_IOPF };
	c.trigger_iopf.dev_id = dev;
	c.trigger_iopf.pasid = 1;
	c.trigger_iopf.grpid = 2;
	c.trigger_iopf.perm = PGFAULT_PERM_READ | PGFAULT_PERM_WRITE;
	c.trigger_iopf.addr = addr;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

int main(void)
{
	uint32_t ioas;
	struct mock_dev md;
	int fd = open_with_ioas(&ioas, &md);
	uint32_t dev = md.dev, stdev = md.stdev;
	uint32_t parent = nest_parent(fd, dev, ioas);
	CHECK(parent != 0, "a nest parent");

	struct fault_alloc_cmd q = { .size = sizeof(q) };
	CHECK(ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &q) == 0, "FAULT_QUEUE_ALLOC");
	int qfd = (int)q.out_fault_fd;
	CHECK(q.out_fault_id != 0 && qfd > 2 && (fcntl(qfd, F_GETFD) & FD_CLOEXEC), "a close-on-exec descriptor");

	uint32_t stage1 = 0x0badbeef;
	struct hwpt_alloc_cmd nested = { .size = sizeof(nested), .flags = HWPT_FAULT_ID_VALID, .dev_id = dev,
					 .pt_id = parent, .data_type = HWPT_DATA_SELFTEST,
					 .data_len = sizeof(stage1), .data_uptr = (uintptr_t)&stage1,
					 .fault_id = q.out_fault_id };
	CHECK(ioctl(fd, IOMMU_HWPT_ALLOC, &nested) == 0, "a nested HWPT with the fault queue");
	CHECK(replace(fd, stdev, nested.out_hwpt_id) == 0, "the device moves to it");

	struct pollfd pfd = { .fd = qfd, .events = POLLIN };
	CHECK(poll(&pfd, 1, 0) == 0, "nothing to read before a fault");
	CHECK(trigger(fd, dev, 0xdeadbeaf) == 0, "TRIGGER_IOPF");
	CHECK(poll(&pfd, 1, 0) == 1, "the fault is readable when the ioctl returns");
	struct hwpt_pgfault f;
	CHECK(read(qfd, &f, sizeof(f)) == sizeof(f), "read one fault record");
	CHECK(f.dev_id == dev && f.pasid == 1 && f.grpid == 2 && f.addr == 0xdeadbeaf &&
		      f.flags == (PGFAULT_FLAGS_LAST_PAGE | PGFAULT_FLAGS_PASID_VALID) && f.cookie != 0,
	      "the record names the device, PASID, group and address");
	struct page_response r = { .cookie = f.cookie, .code = 0 };
	CHECK(write(qfd, &r, sizeof(r)) == sizeof(r), "write the response");

	CHECK(replace(fd, stdev, parent) == 0, "back to the parent");
	CHECK(destroy(fd, nested.out_hwpt_id) == 0, "destroy the nested HWPT");
	CHECK(destroy(fd, q.out_fault_id) == -1 && errno == EBUSY, "the open descriptor holds the queue");
	/* Bytes still in flight when the descriptor closes do not keep it open. */
	struct page_response stray = { .cookie = 777, .code = 0 };
	CHECK(write(qfd, &stray, sizeof(stray)) == sizeof(stray), "write a response nobody awaits");
	CHECK(close(qfd) == 0, "close the queue's descriptor");
	CHECK(destroy(fd, q.out_fault_id) == 0, "now the queue can be destroyed");

	return finish();
}
