/* Accesses through /dev/iommu under `softiommu run`: the access is a real
 * descriptor; closing it releases its pins before close() returns.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

int main(void)
{
	uint32_t ioas;
	int fd = open_with_ioas(&ioas, NULL);
	void *buf = NULL;
	CHECK(posix_memalign(&buf, PAGE, 8 * PAGE) == 0, "buffer");
	memset(buf, 0, 8 * PAGE);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 8 * PAGE, .iova = 0x100000 };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "map");

	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	c.create_access.flags = ACCESS_NEEDS_PIN_PAGES;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &c) == 0, "CREATE_ACCESS");
	int afd = c.create_access.out_access_fd;
	struct stat st;
	CHECK(afd > 2 && fstat(afd, &st) == 0, "the access is a real descriptor");
	CHECK((fcntl(afd, F_GETFD) & FD_CLOEXEC) != 0, "and close-on-exec");

	struct test_cmd p = { .size = sizeof(p), .op = TEST_OP_ACCESS_PAGES, .id = afd };
	p.access_pages.iova = 0x101000;
	p.access_pages.length = 2 * PAGE;
	p.access_pages.uptr = (uintptr_t)buf + PAGE;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &p) == 0, "ACCESS_PAGES");
	CHECK(check_refs(fd, (char *)buf + PAGE, 2 * PAGE, 1) == 0, "the pages are pinned once");

	struct test_cmd w = { .size = sizeof(w), .op = TEST_OP_ACCESS_RW, .id = afd };
	char msg[] = "written by a device";
	w.access_rw.iova = 0x100010;
	w.access_rw.length = sizeof(msg);
	w.access_rw.uptr = (uintptr_t)msg;
	w.access_rw.flags = ACCESS_RW_WRITE;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &w) == 0 && !strcmp((char *)buf + 16, msg), "ACCESS_RW writes our memory");

	struct test_cmd bad = { .size = sizeof(bad), .op = TEST_OP_ACCESS_PAGES, .id = 1 };
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &bad) == -1 && errno == EBADFD, "a descriptor that is no access is EBADFD");

	CHECK(close(afd) == 0, "close the access");
	CHECK(check_refs(fd, (char *)buf + PAGE, 2 * PAGE, 0) == 0, "its pins are gone when close returns");
	CHECK(destroy(fd, ioas) == 0, "and the IOAS is free again");
	/* A dma-buf: its descriptor is the ioctl's return value. */
	struct test_cmd g = { .size = sizeof(g), .op = TEST_OP_DMABUF_GET };
	g.dmabuf_get.length = 4 * PAGE;
	int dfd = ioctl(fd, IOMMU_TEST_CMD, &g);
	CHECK(dfd > 2 && (fcntl(dfd, F_GETFD) & FD_CLOEXEC), "DMABUF_GET returns a close-on-exec descriptor");
	struct ioas_alloc_cmd a2 = { .size = sizeof(a2) };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &a2) == 0, "another IOAS");
	struct map_file_cmd mf = { .size = sizeof(mf), .flags = MAP_READABLE | MAP_WRITEABLE, .ioas_id = a2.out_ioas_id,
				   .fd = dfd, .start = 0, .length = 4 * PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == 0, "MAP_FILE of the dma-buf");
	struct test_cmd r = { .size = sizeof(r), .op = TEST_OP_DMABUF_REVOKE };
	r.dmabuf_revoke.dmabuf_fd = dfd;
	r.dmabuf_revoke.revoked = 1;
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &r) == 0, "DMABUF_REVOKE");
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == -1 && errno == ENODEV, "a revoked dma-buf cannot be mapped");
	close(dfd);

	return finish();
}
