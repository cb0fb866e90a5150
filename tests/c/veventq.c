/* vEVENTQs under `softiommu run`: a vIOMMU's events are read from the
 * queue's descriptor as header + event records, with sequence numbers, a
 * lost-events header once the queue holds `depth` unread events, and room
 * again once the reader has read them.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int trigger(int fd, uint32_t dev)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_TRIGGER_VEVENT };
	c.trigger_vevent.dev_id = dev;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

/* One event record as the mock vIOMMU reports it: its virtual id. */
struct record {
	struct vevent_header hdr;
	uint32_t virt_id;
};

static int veventq_alloc(int fd, uint32_t viommu, uint32_t type, uint32_t depth, struct veventq_alloc_cmd *out)
{
	*out = (struct veventq_alloc_cmd){ .size = sizeof(*out), .viommu_id = viommu, .type = type,
					   .veventq_depth = depth };
	return ioctl(fd, IOMMU_VEVENTQ_ALLOC, out);
}

int main(void)
{
	uint32_t ioas;
	struct mock_dev md;
	int fd = open_with_ioas(&ioas, &md);
	uint32_t dev = md.dev, stdev = md.stdev;
	uint32_t parent = nest_parent(fd, dev, ioas);
	CHECK(parent != 0, "a nest parent");
	struct viommu_alloc_cmd v = { .size = sizeof(v), .type = VIOMMU_TYPE_SELFTEST, .dev_id = dev,
				      .hwpt_id = parent };
	CHECK(ioctl(fd, IOMMU_VIOMMU_ALLOC, &v) == 0, "VIOMMU_ALLOC");

	struct veventq_alloc_cmd q;
	CHECK(veventq_alloc(fd, v.out_viommu_id, 0, 2, &q) == -1 && errno == EOPNOTSUPP,
	      "the default type is refused");
	CHECK(veventq_alloc(fd, v.out_viommu_id, VEVENTQ_TYPE_SELFTEST, 0, &q) == -1 && errno == EINVAL,
	      "depth 0 is refused");
	CHECK(veventq_alloc(fd, 9999, VEVENTQ_TYPE_SELFTEST, 2, &q) == -1 && errno == ENOENT,
	      "an unknown vIOMMU is refused");
	CHECK(veventq_alloc(fd, v.out_viommu_id, VEVENTQ_TYPE_SELFTEST, 2, &q) == 0, "VEVENTQ_ALLOC, depth 2");
	int qfd = (int)q.out_veventq_fd;
	CHECK(qfd > 2 && (fcntl(qfd, F_GETFD) & FD_CLOEXEC), "a close-on-exec descriptor");
	struct veventq_alloc_cmd again;
	CHECK(veventq_alloc(fd, v.out_viommu_id, VEVENTQ_TYPE_SELFTEST, 2, &again) == -1 && errno == EEXIST,
	      "one queue per type");

	struct vdevice_alloc_cmd vd = { .size = sizeof(vd), .viommu_id = v.out_viommu_id, .dev_id = dev,
					.virt_id = 0x99 };
	struct vdevice_alloc_cmd bad = vd;
	bad.viommu_id = 9999;
	CHECK(ioctl(fd, IOMMU_VDEVICE_ALLOC, &bad) == -1 && errno == ENOENT, "VDEVICE_ALLOC: no such vIOMMU");
	bad = vd;
	bad.dev_id = 9999;
	CHECK(ioctl(fd, IOMMU_VDEVICE_ALLOC, &bad) == -1 && errno == ENOENT, "VDEVICE_ALLOC: no such device");
	CHECK(ioctl(fd, IOMMU_VDEVICE_ALLOC, &vd) == 0, "VDEVICE_ALLOC, virtual id 0x99");
	bad = vd;
	CHECK(ioctl(fd, IOMMU_VDEVICE_ALLOC, &bad) == -1 && errno == EEXIST, "one vDEVICE per device");
	uint32_t stage1 = 0x0badbeef;
	struct hwpt_alloc_cmd nested = { .size = sizeof(nested), .dev_id = dev, .pt_id = v.out_viommu_id,
					 .data_type = HWPT_DATA_SELFTEST, .data_len = sizeof(stage1),
					 .data_uptr = (uintptr_t)&stage1 };
	CHECK(ioctl(fd, IOMMU_HWPT_ALLOC, &nested) == 0, "a nested HWPT through the vIOMMU");
	CHECK(trigger(fd, dev) == -1 && errno == ENOENT, "no events before the device attaches through it");
	CHECK(replace(fd, stdev, nested.out_hwpt_id) == 0, "the device moves to it");

	struct pollfd pfd = { .fd = qfd, .events = POLLIN };
	CHECK(poll(&pfd, 1, 0) == 0, "nothing to read before an event");
	char small[16];
	CHECK(read(qfd, small, sizeof(small)) == 0, "an empty queue reads as 0 bytes");
	CHECK(read(qfd, small, 7) == -1 && errno == EINVAL, "less than a header is refused");
	CHECK(trigger(fd, dev) == 0, "TRIGGER_VEVENT");
	CHECK(poll(&pfd, 1, 0) == 1, "the event is readable when the ioctl returns");
	CHECK(read(qfd, small, 8) == -1 && errno == EINVAL, "a header without its event does not fit");
	struct record r[3];
	CHECK(read(qfd, r, sizeof(r)) == sizeof(r[0]), "read one record");
	CHECK(r[0].hdr.flags == 0 && r[0].hdr.sequence == 0 && r[0].virt_id == 0x99,
	      "sequence 0, the device's virtual id");

	/* Three events into a queue of depth 2: the third is lost. */
	for (int i = 0; i < 3; i++)
		CHECK(trigger(fd, dev) == 0, "TRIGGER_VEVENT into a filling queue");
	char buf[64];
	CHECK(read(qfd, buf, 20) == 12, "only whole records are read");
	ssize_t n = read(qfd, buf + 12, sizeof(buf) - 12) + 12;
	CHECK(n == 2 * (ssize_t)sizeof(struct record) + (ssize_t)sizeof(struct vevent_header),
	      "two events and a lost-events header");
	memcpy(r, buf, 2 * sizeof(struct record));
	struct vevent_header lost;
	memcpy(&lost, buf + 2 * sizeof(struct record), sizeof(lost));
	CHECK(r[0].hdr.sequence == 1 && r[1].hdr.sequence == 2 && r[1].virt_id == 0x99, "sequences 1 and 2");
	CHECK(lost.flags == VEVENTQ_FLAG_LOST_EVENTS && lost.sequence == 3, "the lost-events header, sequence 3");

	/* Having read them, the queue has room again. */
	CHECK(trigger(fd, dev) == 0, "TRIGGER_VEVENT after reading");
	CHECK(read(qfd, r, sizeof(r)) == sizeof(r[0]), "read one record");
	CHECK(r[0].hdr.flags == 0 && r[0].hdr.sequence == 4, "no loss, sequence 4");

	/* A child shares the queue's descriptor; the parent's close does not end it. */
	pid_t child = fork();
	if (child == 0) {
		struct record c;
		int ok = trigger(fd, dev) == 0 && read(qfd, &c, sizeof(c)) == sizeof(c) && c.hdr.sequence == 5;
		_exit(ok ? 0 : 1);
	}
	int status = 0;
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a forked child triggers and reads through the shared descriptor");

	CHECK(replace(fd, stdev, ioas) == 0, "back to the IOAS");
	CHECK(trigger(fd, dev) == -1 && errno == ENOENT, "no events once attached elsewhere");
	CHECK(destroy(fd, v.out_viommu_id) == -1 && errno == EBUSY, "the vIOMMU is held by its queue");
	CHECK(destroy(fd, q.out_veventq_id) == -1 && errno == EBUSY, "the open descriptor holds the queue");
	CHECK(close(qfd) == 0, "close the queue's descriptor");
	CHECK(destroy(fd, q.out_veventq_id) == 0, "now the queue can be destroyed");
	CHECK(destroy(fd, nested.out_hwpt_id) == 0 && destroy(fd, vd.out_vdevice_id) == 0 &&
		      destroy(fd, v.out_viommu_id) == 0,
	      "and then the vIOMMU");
	return finish();
}
