/* The server's memory stays flat under repeated work: each pass opens
 * contexts, maps and unmaps, attaches mock devices, makes accesses and
 * fault queues, feeds malformed ioctls, forks, and closes everything; after
 * a warm-up pass, later passes may not grow the server's resident set by
 * more than 256 KiB (allocator slack), where a leak of a mock device,
 * a context or a side file per pass would show. (The trust issue's fifth
 * finding: RSS grew 8-10 MB per fuzz pass.)
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "server.h"

#define PASSES 6
#define ROUNDS 100

static unsigned seed = 12345;
static unsigned next(void)
{
	seed = seed * 1103515245 + 12345;
	return seed >> 8;
}

static void one_round(char *buf)
{
	struct mock_dev dev;
	int fd = open("/dev/iommu", O_RDWR);
	if (fd < 0)
		return;
	uint32_t ioas = ioas_alloc(fd);
	mock_domain(fd, ioas, 0, &dev);
	for (int i = 0; i < 8; i++) {
		uint64_t iova = MOCK_APERTURE_START + (uint64_t)(next() % 64) * PAGE * 4;
		struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
				     .ioas_id = ioas, .user_va = (uintptr_t)buf, .length = 4 * PAGE, .iova = iova };
		ioctl(fd, IOMMU_IOAS_MAP, &m);
	}
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	c.create_access.flags = ACCESS_NEEDS_PIN_PAGES;
	int afd = ioctl(fd, IOMMU_TEST_CMD, &c) == 0 ? (int)c.create_access.out_access_fd : -1;
	/* Malformed calls: random sizes and ids. */
	for (int i = 0; i < 8; i++) {
		uint32_t junk[32];
		for (int j = 0; j < 32; j++)
			junk[j] = next();
		junk[0] = next() % 128;
		ioctl(fd, IOMMU_TEST_CMD, junk);
		ioctl(fd, IOMMU_HWPT_ALLOC, junk);
		ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, junk);
	}
	if (next() % 4 == 0) {
		pid_t child = fork();
		if (child == 0) {
			ioas_alloc(fd);
			_exit(0);
		}
		waitpid(child, NULL, 0);
	}
	if (afd >= 0)
		close(afd);
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0, .length = UINT64_MAX };
	ioctl(fd, IOMMU_IOAS_UNMAP, &u);
	close(fd);
}

int main(void)
{
	pid_t server = server_pid();
	CHECK(server > 0, "the server is found");
	char *buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	long rss[PASSES];
	for (int p = 0; p < PASSES; p++) {
		for (int r = 0; r < ROUNDS; r++)
			one_round(buf);
		/* Releases finish as the closes return; a moment for stragglers. */
		usleep(50 * 1000);
		rss[p] = server_rss_kib(server);
		printf("# pass %d: server RSS %ld KiB\n", p, rss[p]);
	}
	long growth = rss[PASSES - 1] - rss[1];
	printf("# growth after warm-up: %ld KiB over %d passes\n", growth, PASSES - 2);
	CHECK(rss[1] > 0 && growth < 256, "the server's memory stays flat after warm-up");
	return finish();
}
