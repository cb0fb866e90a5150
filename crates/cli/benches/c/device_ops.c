/* Times device-model operations as a user-space driver makes them under
 * softiommu run: from the DMACOUNT store that rings the I/OAT doorbell of a
 * 64-byte copy until CHANSTS reads DONE (stores to the register page are
 * trapped and reach the device), or a whole 1 MiB copy cycle (chain
 * address, rearm, doorbell, wait, suspend). Prints the nanoseconds `iters`
 * operations took.
 * Usage: device_ops doorbell|copy1m ITERS
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct ioas_alloc { uint32_t size, flags, out_ioas_id; };
struct ioas_map { uint32_t size, flags, ioas_id, reserved; uint64_t user_va, length, iova; };
struct bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; };
struct attach { uint32_t argsz, flags, pt_id; };
#define IOAS_ALLOC _IO(';', 0x81)
#define IOAS_MAP _IO(';', 0x85)
#define BIND _IO(';', 118)
#define ATTACH _IO(';', 119)
#define LEN (2 << 20)
#define IOVA 0x1000000ull

static uint64_t now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	long iters = atol(argv[2]);
	uint32_t size = strcmp(argv[1], "copy1m") ? 64 : 1 << 20;
	int iommufd = open("/dev/iommu", O_RDWR);
	int dev = open("/dev/vfio/devices/vfio6", O_RDWR); /* 0000:00:04.0 */
	struct bind b = { .argsz = sizeof(b), .iommufd = iommufd };
	struct ioas_alloc a = { .size = sizeof(a) };
	if (dev < 0 || ioctl(dev, BIND, &b) || ioctl(iommufd, IOAS_ALLOC, &a))
		return 3;
	uint8_t *mem = mmap(NULL, LEN * 2, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(mem, 1, LEN * 2);
	struct ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = a.out_ioas_id,
			      .user_va = (uintptr_t)mem, .length = LEN * 2, .iova = IOVA };
	struct attach at = { .argsz = sizeof(at), .pt_id = a.out_ioas_id };
	if (ioctl(iommufd, IOAS_MAP, &m) || ioctl(dev, ATTACH, &at))
		return 4;
	uint16_t command = 6;
	if (pwrite(dev, &command, 2, (7ull << 40) + 4) != 2)
		return 5;
	volatile uint8_t *bar = mmap(NULL, 16 << 10, PROT_READ | PROT_WRITE, MAP_SHARED, dev, 0);
	if (bar == MAP_FAILED)
		return 6;
	/* A copy descriptor at IOVA, chained to itself. */
	uint64_t desc = IOVA, src = IOVA + LEN, dst = IOVA + LEN + (1 << 20);
	memset(mem, 0, 64);
	memcpy(mem, &size, 4);
	memcpy(mem + 8, &src, 8);
	memcpy(mem + 16, &dst, 8);
	memcpy(mem + 24, &desc, 8);
	bar[0x84] = 0x20; /* reset */
	int doorbell_only = size == 64;
	uint64_t total = 0, start = now();
	for (long i = 0; i < iters; i++) {
		*(volatile uint64_t *)(bar + 0x90) = desc;
		*(volatile uint16_t *)(bar + 0x80) = 1;
		uint64_t rung = now();
		*(volatile uint16_t *)(bar + 0x86) = 1;
		uint64_t sts;
		while (((sts = *(volatile uint64_t *)(bar + 0x88)) & 7) != 1)
			if ((sts & 7) == 3) /* halted: the copy failed */
				return 7;
		total += now() - rung;
		bar[0x84] = 0x04; /* suspend */
	}
	printf("%llu\n", (unsigned long long)(doorbell_only ? total : now() - start));
	return 0;
}
