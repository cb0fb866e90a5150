/* Times IOMMU_IOAS_MAP and IOMMU_IOAS_UNMAP of one large buffer of
 * anonymous, populated memory into an IOAS with DOMAINS mock domains
 * attached (the selftest's MOCK_DOMAIN), as a VMM maps guest RAM at start.
 * Usage: map_big MIB DOMAINS [huge]; prints "map_ns unmap_ns". With `huge`
 * the buffer is 2 MiB transparent huge pages (MADV_HUGEPAGE).
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "../../../../tests/c/softiommu_abi.h"

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t len = (size_t)(argc > 1 ? atol(argv[1]) : 1024) << 20;
	int domains = argc > 2 ? atoi(argv[2]) : 1;
	int huge = argc > 3 && strcmp(argv[3], "huge") == 0;
	int fd = open("/dev/iommu", O_RDWR);
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		return 1;
	for (int i = 0; i < domains; i++) {
		struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MOCK_DOMAIN, .id = a.out_ioas_id };
		if (ioctl(fd, IOMMU_TEST_CMD, &c))
			return 2;
	}
	/* 2 MiB-aligned, so huge pages line up with the IOVA. */
	char *raw = mmap(NULL, len + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return 3;
	char *buf = (char *)(((unsigned long)raw + (2 << 20) - 1) & ~((2UL << 20) - 1));
	madvise(buf, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(buf, 1, len);
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = a.out_ioas_id, .user_va = (unsigned long)buf, .length = len,
			     .iova = 1UL << 24 };
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = a.out_ioas_id, .iova = 1UL << 24, .length = len };
	long long t0 = now_ns();
	if (ioctl(fd, IOMMU_IOAS_MAP, &m)) {
		perror("IOMMU_IOAS_MAP");
		return 4;
	}
	long long t1 = now_ns();
	if (ioctl(fd, IOMMU_IOAS_UNMAP, &u))
		return 5;
	long long t2 = now_ns();
	printf("%lld %lld\n", t1 - t0, t2 - t1);
	return 0;
}
