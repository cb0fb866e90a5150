/* A program that stops halfway, for `softiommu inspect --live`: it maps 16
 * pages at 16 MiB into an IOAS with a mock device attached and binds and
 * attaches the NIC (0000:02:00.0) to the same IOAS, prints its session
 * directory and "# paused", and waits until its standard input ends (at once when there is none),
 * then unmaps and checks that it could.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	int ioas = ioas_alloc(fd);
	void *buf = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
			 -1, 0);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 16 * PAGE, .iova = 0x1000000 };
	CHECK(ioas > 0 && ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "16 pages mapped at 16 MiB");
	struct mock_dev mock;
	CHECK(mock_domain(fd, ioas, 0, &mock) == 0, "a mock device attached");
	int dev = open("/dev/vfio/devices/vfio3", O_RDWR);
	struct t_bind b = { .argsz = sizeof(b), .iommufd = fd };
	struct t_attach a = { .argsz = sizeof(a), .pt_id = ioas };
	CHECK(dev >= 0 && ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b) == 0 &&
		      ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a) == 0,
	      "the NIC bound and attached");
	const char *session = getenv("SOFTIOMMU_SESSION");
	printf("# session %s\n", session ? session : "(none)");
	printf("# paused\n");
	fflush(stdout);
	char byte;
	while (read(0, &byte, 1) > 0)
		;
	close(dev);
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0x1000000, .length = 16 * PAGE };
	CHECK(destroy(fd, mock.stdev) == 0 && ioctl(fd, IOMMU_IOAS_UNMAP, &u) == 0, "then unmapped");
	close(fd);
	return finish();
}
