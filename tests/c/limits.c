/* The server's limits hold and cost nothing but the one call: run with
 * SOFTIOMMU_MAX_SIDE_FILES=16, SOFTIOMMU_MAX_CONNECTIONS=64,
 * SOFTIOMMU_MAX_CONNECTIONS_PER_PROCESS=40, SOFTIOMMU_HELLO_TIMEOUT_MS=2000,
 * SOFTIOMMU_MAX_OBJECTS_PER_CONTEXT=32 and SOFTIOMMU_MAX_RANGES_PER_CONTEXT=64
 * (the test harness sets them).
 * - The 17th access fails with EMFILE, as a full descriptor table does;
 *   closing one makes room again.
 * - A context holds 32 objects and 64 IOVA ranges; past them a call fails
 *   with ENOMEM (where Linux's memory cgroup would refuse the allocation)
 *   and changes nothing; another context has room of its own.
 * - Connections past the process's share are closed at once, while
 *   another process still connects; a connection that says nothing is
 *   closed after the hello timeout; then a program opens /dev/iommu as
 *   before. (The trust issue's fourth finding.)
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "server.h"

/* Whether the server closed `s` within `ms` milliseconds. */
static int closed_within(int s, int ms)
{
	struct pollfd p = { .fd = s, .events = POLLIN };
	char byte;
	return poll(&p, 1, ms) == 1 && read(s, &byte, 1) == 0;
}

static int new_access(int fd, uint32_t ioas)
{
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	if (ioctl(fd, IOMMU_TEST_CMD, &c))
		return -1;
	return c.create_access.out_access_fd;
}

int main(void)
{
	int max_side = atoi(getenv("SOFTIOMMU_MAX_SIDE_FILES") ? getenv("SOFTIOMMU_MAX_SIDE_FILES") : "0");
	int max_conn = atoi(getenv("SOFTIOMMU_MAX_CONNECTIONS") ? getenv("SOFTIOMMU_MAX_CONNECTIONS") : "0");
	CHECK(max_side == 16 && max_conn == 64, "run with the test's limits");

	uint32_t ioas;
	int fd = open_with_ioas(&ioas, NULL);
	int access[16], made = 0;
	while (made < 16 && (access[made] = new_access(fd, ioas)) >= 0)
		made++;
	CHECK(made == 16, "16 accesses are made");
	CHECK(new_access(fd, ioas) == -1 && errno == EMFILE, "the 17th is EMFILE");
	CHECK(close(access[0]) == 0 && (access[0] = new_access(fd, ioas)) >= 0, "closing one makes room");
	for (int i = 0; i < made; i++)
		close(access[i]);

	/* Objects and ranges of one context. */
	int objects = open("/dev/iommu", O_RDWR);
	int ids[33], held = 0;
	while (held < 33 && (ids[held] = ioas_alloc(objects)) > 0)
		held++;
	CHECK(held == 32 && errno == ENOMEM, "a context holds 32 objects, then ENOMEM");
	CHECK(destroy(objects, ids[5]) == 0 && ioas_alloc(objects) == ids[5], "destroying one makes room");
	void *page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	CHECK(page != MAP_FAILED, "a page");
	struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .user_va = (uintptr_t)page, .length = PAGE };
	int mapped = 0;
	for (int i = 0; i < 65; i++) {
		m.ioas_id = ids[i % 2];
		m.iova = (uint64_t)(i + 1) << 20;
		if (ioctl(objects, IOMMU_IOAS_MAP, &m))
			break;
		mapped++;
	}
	CHECK(mapped == 64 && errno == ENOMEM, "64 ranges over two IOASes, then ENOMEM");
	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ids[0], .iova = 1 << 20, .length = PAGE };
	m.ioas_id = ids[0];
	m.iova = 1 << 20;
	CHECK(ioctl(objects, IOMMU_IOAS_UNMAP, &u) == 0 && ioctl(objects, IOMMU_IOAS_MAP, &m) == 0,
	      "unmapping one makes room");
	CHECK(destroy(objects, ids[1]) == 0 && ioctl(objects, IOMMU_IOAS_MAP, &(struct map_cmd){
		      .size = sizeof(m), .flags = m.flags, .ioas_id = ids[2], .user_va = m.user_va,
		      .length = PAGE, .iova = 1 << 20 }) == 0,
	      "destroying an IOAS gives its ranges back");
	int other = open("/dev/iommu", O_RDWR);
	CHECK(other >= 0 && ioas_alloc(other) == 1, "another context has room of its own");
	close(other);
	close(objects);
	munmap(page, PAGE);

	/* Idle connections: with ours and the context's, fill the limit. */
	int idle[80], n = 0;
	while (n < 80 && (idle[n] = connect_server()) >= 0)
		n++;
	usleep(100 * 1000); /* well inside the hello timeout */
	int refused = 0;
	for (int i = 0; i < n; i++)
		refused += closed_within(idle[i], 0);
	printf("# %d connections, %d refused at once\n", n, refused);
	CHECK(n == 80 && refused > 0 && refused < n, "connections past the process's share are closed at once");
	pid_t child = fork();
	if (child == 0) {
		int other = open("/dev/iommu", O_RDWR);
		_exit(other >= 0 && ioas_alloc(other) == 1 ? 0 : 1);
	}
	int status = 0;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "meanwhile another process opens /dev/iommu");
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int timed_out = 0;
	for (int i = 0; i < n; i++)
		timed_out += closed_within(idle[i], 4000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK(timed_out == n && secs < 4.0, "and silent ones after the hello timeout");
	for (int i = 0; i < n; i++)
		close(idle[i]);
	int again = open("/dev/iommu", O_RDWR);
	CHECK(again >= 0 && ioas_alloc(again) == 1, "then /dev/iommu opens as before");
	close(again);
	CHECK(ioas_alloc(fd) > 0, "and the first context still works");
	close(fd);
	return finish();
}
