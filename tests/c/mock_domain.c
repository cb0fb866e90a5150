/* A mock domain under `softiommu run`: memory mapped by descriptor (a memfd)
 * and the same memfd mapped into the program are one set of pages.
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

static int check_map(int fd, uint32_t hwpt, uint64_t iova, uint64_t len, void *uptr)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MD_CHECK_MAP, .id = hwpt };
	c.check_map.iova = iova;
	c.check_map.length = len;
	c.check_map.uptr = (uintptr_t)uptr;
	return ioctl(fd, IOMMU_TEST_CMD, &c);
}

int main(void)
{
	uint32_t ioas;
	struct mock_dev md;
	int fd = open_with_ioas(&ioas, &md);
	uint32_t hwpt = md.hwpt;

	/* Anonymous memory mapped by address. */
	void *buf = NULL;
	CHECK(posix_memalign(&buf, PAGE, 8 * PAGE) == 0, "buffer");
	memset(buf, 1, 8 * PAGE);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 8 * PAGE,
			     .iova = MOCK_APERTURE_START };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "map the buffer");
	CHECK(check_map(fd, hwpt, MOCK_APERTURE_START, 8 * PAGE, buf) == 0, "MD_CHECK_MAP of the buffer");
	CHECK(check_refs(fd, buf, 8 * PAGE, 1) == 0, "pinned once by the domain");

	/* A memfd mapped by descriptor, checked through its mapping in this process. */
	int mfd = memfd_create("softiommu-mock", 0);
	CHECK(mfd >= 0 && ftruncate(mfd, 16 * PAGE) == 0, "memfd");
	char *view = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	CHECK(view != MAP_FAILED, "map the memfd into this process");
	struct map_file_cmd mf = { .size = sizeof(mf), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
				   .ioas_id = ioas, .fd = mfd, .start = 4 * PAGE, .length = 8 * PAGE,
				   .iova = MOCK_APERTURE_START + 0x100000 };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == 0, "MAP_FILE of the memfd");
	CHECK(check_map(fd, hwpt, MOCK_APERTURE_START + 0x100000, 8 * PAGE, view + 4 * PAGE) == 0,
	      "the domain maps the same pages the process sees");
	CHECK(check_map(fd, hwpt, MOCK_APERTURE_START + 0x100000, 8 * PAGE, view) != 0, "but not other pages");
	CHECK(check_refs(fd, view + 4 * PAGE, 8 * PAGE, 1) == 0, "the memfd pages are pinned once");

	close(fd);
	fd = open("/dev/iommu", O_RDWR);
	CHECK(check_refs(fd, buf, 8 * PAGE, 0) == 0 && check_refs(fd, view + 4 * PAGE, 8 * PAGE, 0) == 0,
	      "closing the context released every pin");
	return finish();
}
