/* Times IOAS_MAP + IOAS_UNMAP pairs of one 4 KiB page through /dev/iommu.
 * Usage: map_unmap ITERATIONS; prints the elapsed nanoseconds.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "../../../../tests/c/softiommu_abi.h"

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000;
	int fd = open("/dev/iommu", O_RDWR);
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		return 1;
	void *buf = NULL;
	if (posix_memalign(&buf, 4096, 4096))
		return 1;
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = a.out_ioas_id, .user_va = (uintptr_t)buf, .length = 4096, .iova = 0x100000 };
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = a.out_ioas_id, .iova = 0x100000, .length = 4096 };
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		if (ioctl(fd, IOMMU_IOAS_MAP, &m) || ioctl(fd, IOMMU_IOAS_UNMAP, &u))
			return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	return 0;
}
