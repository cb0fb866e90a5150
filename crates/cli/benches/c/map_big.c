/* Times IOMMU_IOAS_MAP and IOMMU_IOAS_UNMAP of one large buffer of
 * anonymous, populated memory into an IOAS with DOMAINS mock domains
 * attached (the selftest's MOCK_DOMAIN), as a VMM maps guest RAM at start.
 * Usage: map_big MIB DOMAINS 4k|huge ROUNDS map|unmap: populates the buffer
 * once (4 KiB pages, or 2 MiB transparent huge pages), maps and unmaps it
 * ROUNDS times, and prints the nanoseconds spent in the phase asked for.
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
	if (argc != 6)
		return 1;
	size_t len = (size_t)atol(argv[1]) << 20;
	int domains = atoi(argv[2]);
	int huge = strcmp(argv[3], "huge") == 0;
	long rounds = atol(argv[4]);
	int unmap_phase = strcmp(argv[5], "unmap") == 0;
	int fd = open("/dev/iommu", O_RDWR);
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	if (fd < 0 || ioctl(fd, IOMMU_IOAS_ALLOC, &a))
		return 2;
	for (int i = 0; i < domains; i++) {
		struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_MOCK_DOMAIN, .id = a.out_ioas_id };
		if (ioctl(fd, IOMMU_TEST_CMD, &c))
			return 3;
	}
	/* 2 MiB-aligned, so huge pages line up with the IOVA. */
	char *raw = mmap(NULL, len + (2 << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED)
		return 4;
	char *buf = (char *)(((unsigned long)raw + (2 << 20) - 1) & ~((2UL << 20) - 1));
	madvise(buf, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(buf, 1, len);
	/* The mock domain's aperture starts at 16 MiB. */
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = a.out_ioas_id, .user_va = (unsigned long)buf, .length = len,
			     .iova = 1UL << 24 };
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = a.out_ioas_id, .iova = 1UL << 24, .length = len };
	long long in_map = 0, in_unmap = 0;
	for (long r = 0; r < rounds; r++) {
		long long t0 = now_ns();
		if (ioctl(fd, IOMMU_IOAS_MAP, &m)) {
			perror("IOMMU_IOAS_MAP");
			return 5;
		}
		long long t1 = now_ns();
		if (ioctl(fd, IOMMU_IOAS_UNMAP, &u)) {
			perror("IOMMU_IOAS_UNMAP");
			return 6;
		}
		in_map += t1 - t0;
		in_unmap += now_ns() - t1;
	}
	printf("%lld\n", unmap_phase ? in_unmap : in_map);
	return 0;
}
