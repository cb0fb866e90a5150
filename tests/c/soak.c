/* The server's memory stays flat under repeated work: each pass opens
 * contexts, maps and unmaps, attaches mock devices, makes accesses and
 * fault queues, feeds malformed ioctls, forks, and closes everything; after
 * warm-up passes, later passes may not grow the server's resident set by
 * more than 256 KiB (allocator slack), where a leak of a mock device,
 * a context or a side file per round would show. (The trust issue's fifth
 * finding: RSS grew 8-10 MB per fuzz pass.)
 *
 * The server's live heap is the same after 3 passes as after 30 (measured
 * with heaptrack); what its resident set gains is the allocator's
 * fragmentation, which settles: about 90 KiB over passes 1-5, then 3-4 KiB
 * a pass. Hence four warm-up passes. A pass ends once the server has as
 * many threads as before it, so that what is measured is the server at
 * rest, not releases still under way.
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

#define WARM_UP 4
#define PASSES 10
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

/* Waits (at most 10 s) until the server has no more than `threads`. */
static void wait_for_rest(pid_t server, long threads)
{
	for (int i = 0; i < 10000 && server_status(server, "Threads") > threads; i++)
		usleep(1000);
}

int main(void)
{
	pid_t server = server_pid();
	CHECK(server > 0, "the server is found");
	/* The server's threads at rest: this process's call channel and one
	 * context of its own, which stays open, so neither comes or goes. */
	int anchor = open("/dev/iommu", O_RDWR);
	CHECK(anchor >= 0 && ioas_alloc(anchor) > 0, "a context of our own");
	long threads = server_status(server, "Threads");
	char *buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	long rss[PASSES];
	for (int p = 0; p < PASSES; p++) {
		for (int r = 0; r < ROUNDS; r++)
			one_round(buf);
		wait_for_rest(server, threads);
		rss[p] = server_rss_kib(server);
		printf("# pass %d: server RSS %ld KiB\n", p, rss[p]);
	}
	long growth = rss[PASSES - 1] - rss[WARM_UP - 1];
	printf("# growth after warm-up: %ld KiB over %d passes\n", growth, PASSES - WARM_UP);
	CHECK(server_status(server, "Threads") <= threads, "the server comes to rest after each pass");
	CHECK(rss[WARM_UP - 1] > 0 && growth < 256, "the server's memory stays flat after warm-up");
	close(anchor);
	return finish();
}
