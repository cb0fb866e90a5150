/* A short, fixed sequence of calls whose trace (`softiommu run --trace`)
 * the test suite compares with an expected transcript: allocations, a
 * map, failing calls with their errnos, a mock device whose attach moves
 * DMA, and a VFIO device bound and attached through its cdev. On its own
 * it checks each call's result like any other program here.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "vfio_abi.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	int ioas = ioas_alloc(fd);
	CHECK(ioas == 1, "IOAS 1");
	void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)page, .length = PAGE, .iova = 0x1000000 };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0, "map a page at 16 MiB");
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0x200000, .length = PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_UNMAP, &u) == -1 && errno == ENOENT, "unmapping nothing is ENOENT");
	struct mock_dev mock;
	CHECK(mock_domain(fd, ioas, 0, &mock) == 0, "a mock device attached");
	CHECK(destroy(fd, ioas) == -1 && errno == EBUSY, "an IOAS in use is EBUSY");
	CHECK(destroy(fd, mock.stdev) == 0, "the mock device goes");

	int dev = open("/dev/vfio/devices/vfio3", O_RDWR);
	CHECK(dev >= 0, "open the NIC's cdev");
	struct t_bind b = { .argsz = sizeof(b), .iommufd = fd };
	CHECK(ioctl(dev, T_VFIO_DEVICE_BIND_IOMMUFD, &b) == 0 && b.out_devid > 0, "bind it");
	struct t_attach a = { .argsz = sizeof(a), .pt_id = ioas };
	CHECK(ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a) == 0, "attach it to the IOAS");
	struct t_attach bad = { .argsz = sizeof(bad), .pt_id = 99 };
	CHECK(ioctl(dev, T_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &bad) == -1 && errno == ENOENT,
	      "attaching to no object is ENOENT");
	close(dev);
	close(fd);
	return finish();
}
